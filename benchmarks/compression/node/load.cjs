// MQTT.js (npm mqtt 5.16.0) in Node over ws with its defaults (it offers
// permessage-deflate and compresses messages of 1 KiB and more), for
// e2e_node.go. CommonJS, so that NODE_PATH finds the packages installed in
// interop/node_modules. Reads a plan, one line of stdin:
//
//   {"url": "ws://127.0.0.1:PORT/mqtt", "publishers": N, "messages": N,
//    "window": N, "backlog": N, "series": ["<base64>", ...], "idSize": 16,
//    "timeoutMs": N}
//
// Publishers send messages messages each at QoS 1, at most window in
// flight and pausing while backlog messages sent are not delivered yet
// (see Load in e2e.go). Message seq of publisher pub carries
// series[(seq * publishers + pub) % series.length] with its first idSize
// bytes replaced by the publisher and sequence number in hexadecimal; one
// subscriber checks the rest byte for byte against that message of the
// series. Prints one line {"sent", "received", "duplicates", "corrupt",
// "elapsedMs", "cpuUs" (the process's, from the first publish),
// "extensions" (each connection's Sec-WebSocket-Extensions answer, with
// its parameters: ws's own `extensions` property names the extensions
// only)} once every message arrived, deliveries stalled for 2 s, or
// timeoutMs passed; then waits for its standard input to close
// before disconnecting, so that the broker can be read with every
// connection still open.
'use strict';
const mqtt = require('mqtt');
const WebSocket = require('ws');

const stallMs = 2000;

async function main() {
  const input = stdinLines();
  const plan = JSON.parse(await input.firstLine);
  const series = plan.series.map((m) => Buffer.from(m, 'base64'));
  const idSize = plan.idSize;
  const message = (pub, seq) => series[(seq * plan.publishers + pub) % series.length];
  const topic = 'bench/compression';
  const deadline = Date.now() + plan.timeoutMs;
  const extensions = [];
  const clients = [];
  const connect = async (id) => {
    const c = await mqtt.connectAsync(plan.url, {
      protocolVersion: 4,
      clientId: id,
      clean: true,
      keepalive: 60,
      reconnectPeriod: 0,
      connectTimeout: 10000,
      createWebsocket: (url, protocols) => {
        const s = new WebSocket(url, protocols);
        const i = extensions.push('') - 1;
        s.on('upgrade', (res) => { extensions[i] = res.headers['sec-websocket-extensions'] || ''; });
        return s;
      },
    }, false);
    clients.push(c);
    return c;
  };

  const seen = new Uint8Array(plan.publishers * plan.messages);
  let received = 0, duplicates = 0, corrupt = 0, last = 0;
  let onProgress = () => {};
  let waiters = [];
  const wake = () => { const w = waiters; waiters = []; w.forEach((f) => f()); };
  const deadlineTimer = setTimeout(wake, plan.timeoutMs);
  const sub = await connect('sub');
  sub.on('message', (t, p) => {
    const now = performance.now();
    const pub = parseInt(p.subarray(0, 8).toString('latin1'), 16);
    const seq = parseInt(p.subarray(8, idSize).toString('latin1'), 16);
    if (t !== topic || p.length < idSize || !(pub < plan.publishers) || !(seq < plan.messages) || !p.subarray(idSize).equals(message(pub, seq).subarray(idSize))) {
      corrupt++;
    } else if (seen[pub * plan.messages + seq]) {
      duplicates++;
    } else {
      seen[pub * plan.messages + seq] = 1;
      received++;
      last = now;
    }
    onProgress();
    wake();
  });
  await sub.subscribeAsync(topic, { qos: 1 });
  const pubs = [];
  for (let i = 0; i < plan.publishers; i++) pubs.push(await connect(`pub${i}`));

  const start = performance.now();
  const cpu0 = process.cpuUsage();
  let sent = 0;
  let failed = '';
  await Promise.all(pubs.map(async (c, i) => {
    const inflight = new Set();
    for (let seq = 0; seq < plan.messages && Date.now() < deadline && !failed; seq++) {
      while (sent - (received + duplicates + corrupt) >= plan.backlog && Date.now() < deadline) {
        await new Promise((resolve) => waiters.push(resolve));
      }
      if (Date.now() >= deadline) break;
      const p = Buffer.from(message(i, seq));
      p.write(hex8(i) + hex8(seq), 0, 'latin1');
      const done = c.publishAsync(topic, p, { qos: 1 }).catch((err) => { failed = String(err && err.message || err); });
      const entry = done.then(() => inflight.delete(entry));
      inflight.add(entry);
      sent++;
      if (inflight.size >= plan.window) await Promise.race(inflight);
    }
    await Promise.all(inflight);
  }));

  await new Promise((resolve) => {
    let stall;
    const check = () => {
      if (received >= sent || Date.now() >= deadline) {
        clearTimeout(stall);
        onProgress = () => {};
        resolve();
        return;
      }
      clearTimeout(stall);
      stall = setTimeout(() => { onProgress = () => {}; resolve(); }, Math.min(stallMs, Math.max(0, deadline - Date.now())));
    };
    onProgress = check;
    check();
  });

  clearTimeout(deadlineTimer);
  const cpu = process.cpuUsage(cpu0);
  const result = {
    sent, received, duplicates, corrupt,
    elapsedMs: last > 0 ? last - start : 0,
    cpuUs: cpu.user + cpu.system,
    extensions,
    error: failed,
  };
  process.stdout.write(JSON.stringify(result) + '\n');
  await input.end; // until the caller is done with the broker
  await Promise.all(clients.map(end));
  process.exit(0);
}

function hex8(n) {
  return n.toString(16).padStart(8, '0');
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

// stdinLines returns the first line of standard input (a plan of a few
// MiB: the chunks are joined once, when its end has come), and the end of
// the input.
function stdinLines() {
  const chunks = [];
  let line = null;
  let gotLine, ended;
  const firstLine = new Promise((resolve) => { gotLine = resolve; });
  const end = new Promise((resolve) => { ended = resolve; });
  const done = () => {
    if (line === null) line = Buffer.concat(chunks).toString('utf8');
    gotLine(line);
  };
  process.stdin.on('data', (c) => {
    if (line !== null) return;
    const i = c.indexOf(0x0a);
    if (i < 0) {
      chunks.push(c);
      return;
    }
    chunks.push(c.subarray(0, i));
    done();
  });
  process.stdin.on('end', () => { done(); ended(); });
  process.stdin.on('error', () => { done(); ended(); });
  return { firstLine, end };
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ error: String(err && err.stack || err) }) + '\n');
  process.exit(1);
});
