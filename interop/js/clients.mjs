// MQTT.js (npm mqtt) in Node over WebSocket, for the Go tests of this
// directory (node_test.go). Reads a plan on stdin:
//
//   {"url": "ws://127.0.0.1:PORT/mqtt", "concurrency": 8, "cases": [
//     {"name": "...", "kind": "transfer" | "retained" | "will" | "digest",
//      "version": 3 | 4 | 5, "qos": 0 | 1 | 2, "size": N, "seed": N, "timeoutMs": N}]}
//
// and prints {"results": [{"name": ..., "error": ..., ...}]} on stdout. It
// asserts nothing: it reports what each client saw, and the Go test judges.
import { createHash } from 'node:crypto';
import mqtt from 'mqtt';
import WebSocket from 'ws';
import { payload } from './payload.mjs';

const plan = JSON.parse(await readStdin());
let seq = 0;
const results = [];
const queue = [...plan.cases];
await Promise.all(Array.from({ length: plan.concurrency || 4 }, async () => {
  for (let c = queue.shift(); c; c = queue.shift()) {
    results.push(await runCase(c));
  }
}));
process.stdout.write(JSON.stringify({ results }) + '\n', () => process.exit(0));

async function runCase(c) {
  const started = Date.now();
  const clients = [];
  const connect = async (role, extra = {}) => {
    // At most 23 characters: MQTT 3.1 servers may refuse longer ids.
    const cl = { id: `${role}-${(++seq).toString(36)}-${Math.random().toString(16).slice(2, 8)}` };
    cl.client = await mqtt.connectAsync(plan.url, {
      protocolVersion: c.version,
      protocolId: c.version === 3 ? 'MQIsdp' : 'MQTT',
      clientId: cl.id,
      clean: true,
      keepalive: 60,
      reconnectPeriod: 0,
      connectTimeout: 10000,
      // The socket is kept to read the subprotocol, and to cut it.
      createWebsocket: (url, protocols) => (cl.socket = new WebSocket(url, protocols)),
      ...extra,
    }, false);
    clients.push(cl);
    return cl;
  };
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not done within ${c.timeoutMs} ms`)), c.timeoutMs);
  });
  try {
    const run = { transfer, retained, will, digest }[c.kind];
    if (!run) throw new Error(`unknown kind ${c.kind}`);
    const r = await Promise.race([run(c, connect), timeout]);
    return { name: c.name, ms: Date.now() - started, ...r };
  } catch (err) {
    return { name: c.name, error: String(err && err.message || err) };
  } finally {
    clearTimeout(timer);
    await Promise.all(clients.map((cl) => end(cl.client)));
  }
}

// digest: the SHA-256 of the case's payload, to check that Go computes the
// same bytes.
async function digest(c) {
  return { sha256: sha256(payload(c.size, c.seed)) };
}

// transfer: a subscriber gets what a publisher sends, at the case's QoS.
async function transfer(c, connect) {
  const topic = `interop/${c.name}`;
  const sub = await connect('sub');
  const pub = await connect('pub');
  const granted = await sub.client.subscribeAsync(topic, { qos: c.qos });
  const got = nextMessage(sub.client, topic);
  await pub.client.publishAsync(topic, Buffer.from(payload(c.size, c.seed)), { qos: c.qos });
  return {
    subprotocols: [sub.socket.protocol, pub.socket.protocol],
    granted: granted[0].qos,
    message: describe(await got),
  };
}

// retained: a client that subscribes after a retained publish gets it with
// the retain flag; once cleared (empty retained payload), a newcomer gets
// only what is published after it subscribed.
async function retained(c, connect) {
  const topic = `interop/${c.name}`;
  const pub = await connect('pub');
  await pub.client.publishAsync(topic, Buffer.from(payload(c.size, c.seed)), { qos: c.qos, retain: true });
  const late = await connect('late');
  const got = nextMessage(late.client, topic);
  await late.client.subscribeAsync(topic, { qos: c.qos });
  const message = describe(await got);

  await pub.client.publishAsync(topic, Buffer.alloc(0), { qos: c.qos, retain: true });
  const after = await connect('after');
  const first = nextMessage(after.client, topic);
  await after.client.subscribeAsync(topic, { qos: c.qos });
  await pub.client.publishAsync(topic, Buffer.from('marker'), { qos: c.qos });
  return { message, afterClear: describe(await first) };
}

// will: a client whose TCP connection is cut (no DISCONNECT, no close
// frame) has its last will published.
async function will(c, connect) {
  const topic = `interop/${c.name}`;
  const watcher = await connect('watch');
  await watcher.client.subscribeAsync(topic, { qos: c.qos });
  const victim = await connect('victim', {
    will: { topic, payload: Buffer.from(payload(c.size, c.seed)), qos: c.qos, retain: false },
  });
  const got = nextMessage(watcher.client, topic);
  victim.socket.terminate(); // destroys the TCP socket at once
  return { message: describe(await got) };
}

function nextMessage(client, topic) {
  return new Promise((resolve) => {
    const on = (t, p, packet) => {
      if (t !== topic) return;
      client.off('message', on);
      resolve({ topic: t, payload: p, packet });
    };
    client.on('message', on);
  });
}

function describe({ topic, payload: p, packet }) {
  return {
    topic,
    qos: packet.qos,
    retain: packet.retain,
    len: p.length,
    sha256: sha256(p),
    text: p.length <= 16 ? p.toString('latin1') : '',
  };
}

function sha256(b) {
  return createHash('sha256').update(b).digest('hex');
}

async function end(client) {
  let timer;
  await Promise.race([
    client.endAsync(false).catch(() => {}),
    new Promise((resolve) => { timer = setTimeout(resolve, 3000); }),
  ]);
  clearTimeout(timer);
  client.end(true);
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}
