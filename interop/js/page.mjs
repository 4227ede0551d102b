// The browser side of browser.mjs: window.run sends payloads from one
// client of a library to another, window.probe opens a bare WebSocket.
import { payload } from './payload.mjs';

let seq = 0;

// run connects a subscriber and a publisher with c.lib ("paho" or
// "mqttjs") at MQTT protocol level c.version to c.url, and sends each of
// c.payloads from one to the other at c.qos. It reports the subprotocols
// the server chose and what the subscriber received.
window.run = (c) => withTimeout(c.timeoutMs, async () => {
  const connect = c.lib === 'paho' ? paho : mqttjs;
  const first = window.sockets.length;
  const sub = await connect(c, 'sub');
  const pub = await connect(c, 'pub');
  try {
    const granted = await sub.subscribe(c.topic, c.qos);
    const messages = [];
    for (const p of c.payloads) {
      const got = sub.next();
      await pub.publish(c.topic, payload(p.size, p.seed), c.qos);
      const m = await got;
      messages.push({ topic: m.topic, qos: m.qos, retain: m.retain, len: m.bytes.length, sha256: await sha256(m.bytes) });
    }
    return { subprotocols: window.sockets.slice(first).map((s) => s.protocol), granted, messages };
  } finally {
    sub.end();
    pub.end();
  }
});

// probe opens a WebSocket offering "mqtt" and reports whether it opened.
window.probe = (url) => new Promise((resolve) => {
  const s = new WebSocket(url, ['mqtt']);
  const timer = setTimeout(() => { s.close(); resolve({ opened: false, error: 'no answer' }); }, 10000);
  s.onopen = () => { clearTimeout(timer); resolve({ opened: true, protocol: s.protocol }); s.close(); };
  s.onclose = (e) => { clearTimeout(timer); resolve({ opened: false, code: e.code }); };
});

function id(role) {
  return `web-${role}-${++seq}-${Math.random().toString(16).slice(2, 8)}`;
}

// mqttjs is a client of MQTT.js's browser bundle (window.mqtt).
async function mqttjs(c, role) {
  const client = mqtt.connect(c.url, {
    protocolVersion: c.version,
    protocolId: c.version === 3 ? 'MQIsdp' : 'MQTT',
    clientId: id(role),
    clean: true,
    keepalive: 60,
    reconnectPeriod: 0,
    connectTimeout: 10000,
  });
  await new Promise((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
    client.once('close', () => reject(new Error(`${role}: closed before CONNACK`)));
  });
  const q = queue();
  client.on('message', (topic, p, packet) => q.push({ topic, qos: packet.qos, retain: packet.retain, bytes: p }));
  return {
    subscribe: async (topic, qos) => (await client.subscribeAsync(topic, { qos }))[0].qos,
    publish: (topic, bytes, qos) => client.publishAsync(topic, bytes, { qos }),
    next: q.next,
    end: () => client.end(true),
  };
}

// paho is a client of the Eclipse Paho JavaScript client (window.Paho).
async function paho(c, role) {
  const u = new URL(c.url);
  const client = new Paho.Client(u.hostname, Number(u.port), u.pathname, id(role));
  const q = queue();
  client.onMessageArrived = (m) => q.push({ topic: m.destinationName, qos: m.qos, retain: m.retained, bytes: new Uint8Array(m.payloadBytes) });
  await new Promise((resolve, reject) => client.connect({
    mqttVersion: c.version,
    mqttVersionExplicit: true,
    cleanSession: true,
    keepAliveInterval: 60,
    timeout: 10,
    onSuccess: resolve,
    onFailure: (e) => reject(new Error(`${role}: connect: ${e.errorCode} ${e.errorMessage}`)),
  }));
  return {
    subscribe: (topic, qos) => new Promise((resolve, reject) => client.subscribe(topic, {
      qos,
      timeout: 10,
      onSuccess: (r) => resolve(typeof r.grantedQos === 'number' ? r.grantedQos : r.grantedQos[0]),
      onFailure: (e) => reject(new Error(`subscribe: ${e.errorCode} ${e.errorMessage}`)),
    })),
    publish: (topic, bytes, qos) => new Promise((resolve) => {
      client.onMessageDelivered = resolve;
      const m = new Paho.Message(bytes);
      m.destinationName = topic;
      m.qos = qos;
      client.send(m);
    }),
    next: q.next,
    end: () => { if (client.isConnected()) client.disconnect(); },
  };
}

// queue hands arriving messages to next(), in order.
function queue() {
  const items = [];
  const waiting = [];
  return {
    push: (m) => (waiting.length ? waiting.shift()(m) : items.push(m)),
    next: () => (items.length ? Promise.resolve(items.shift()) : new Promise((resolve) => waiting.push(resolve))),
  };
}

async function sha256(bytes) {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
}

function withTimeout(ms, f) {
  let timer;
  return Promise.race([
    f().finally(() => clearTimeout(timer)),
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`not done within ${ms} ms`)), ms); }),
  ]);
}
