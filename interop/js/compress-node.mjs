// MQTT.js (npm mqtt) in Node over ws with permessage-deflate, for
// compress_test.go. Reads a plan on stdin:
//
//   {"url": "ws://127.0.0.1:PORT/mqtt", "concurrency": 8, "cases": [
//     {"name": "...", "version": 3 | 4 | 5, "qos": 0 | 1 | 2, "size": N,
//      "seed": N, "kind": "random" | "text", "deflate": "off" | "default" | "always",
//      "count": N, "timeoutMs": N}]}
//
// "default" is ws's own default (it offers permessage-deflate and
// compresses messages of 1 KiB and more), "always" compresses every
// message, "off" offers nothing. Prints {"results": [{"name", "error",
// "extensions": [sub, pub], "message": {...}}]}: the Sec-WebSocket-Extensions
// each client's socket negotiated, and what the subscriber received. A case
// with a count above 1 publishes that many messages, with seeds seed,
// seed+1, …, on one pair of connections, and reports them all in
// "messages" (the server may then refer to the ones before in each).
import { createHash } from 'node:crypto';
import mqtt from 'mqtt';
import WebSocket from 'ws';
import { payload, text } from './compress-payload.mjs';

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

function wsOptions(mode) {
  switch (mode) {
    case 'off': return { perMessageDeflate: false };
    case 'always': return { perMessageDeflate: { threshold: 0 } };
    default: return {};
  }
}

async function runCase(c) {
  const clients = [];
  const connect = async (role) => {
    const cl = { id: `z${role}-${(++seq).toString(36)}-${Math.random().toString(16).slice(2, 6)}` };
    cl.client = await mqtt.connectAsync(plan.url, {
      protocolVersion: c.version,
      protocolId: c.version === 3 ? 'MQIsdp' : 'MQTT',
      clientId: cl.id,
      clean: true,
      keepalive: 60,
      reconnectPeriod: 0,
      connectTimeout: 10000,
      createWebsocket: (url, protocols) => (cl.socket = new WebSocket(url, protocols, wsOptions(c.deflate))),
    }, false);
    clients.push(cl);
    return cl;
  };
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not done within ${c.timeoutMs} ms`)), c.timeoutMs);
  });
  try {
    const r = await Promise.race([transfer(c, connect), timeout]);
    return { name: c.name, ...r };
  } catch (err) {
    return { name: c.name, error: String(err && err.message || err) };
  } finally {
    clearTimeout(timer);
    await Promise.all(clients.map((cl) => end(cl.client)));
  }
}

async function transfer(c, connect) {
  const topic = `interop/deflate/${c.name}`;
  const sub = await connect('sub');
  const pub = await connect('pub');
  await sub.client.subscribeAsync(topic, { qos: c.qos });
  const count = c.count || 1;
  const messages = [];
  const got = new Promise((resolve) => {
    sub.client.on('message', (t, p, packet) => {
      if (t !== topic) return;
      messages.push({ topic: t, qos: packet.qos, retain: packet.retain, len: p.length, sha256: sha256(p) });
      if (messages.length === count) resolve();
    });
  });
  for (let i = 0; i < count; i++) {
    const seed = (c.seed + i) >>> 0;
    const bytes = c.kind === 'text' ? text(c.size, seed) : payload(c.size, seed);
    await pub.client.publishAsync(topic, Buffer.from(bytes), { qos: c.qos });
  }
  await got;
  return { extensions: [sub.socket.extensions, pub.socket.extensions], message: messages[0], messages };
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
