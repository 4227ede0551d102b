// Headless Chromium (Debian's) over https and wss, for wss_test.go: the
// embedded example's own page in two tabs, and Paho in one tab talking to
// MQTT.js in another, while DevTools (CDP) records how each WebSocket was
// opened and Chromium writes its net-log. Reads a plan on stdin:
//
//   {"executablePath", "userDataDir", "pageServer", "timeoutMs",
//    "spki": "base64 SHA-256 of the certificate's public key", "netLog": "FILE",
//    "targets": [{"name", "origin": "https://127.0.0.1:PORT", "url": "wss://...",
//                 "texts": ["...", "..."], "topic", "qos", "payloads": [{"size", "seed"}]}]}
//
// The certificate is trusted by its key (--ignore-certificate-errors-spki-list),
// not by ignoring every error. Prints {"targets": [...]} with, per target,
// the demo exchange, the Paho ↔ MQTT.js exchange, every WebSocket handshake
// as CDP reported it, and the protocol of every page response; the Go test
// reads the net-log itself once Chromium has exited.
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

const plan = JSON.parse(await readStdin());
mkdirSync(plan.userDataDir, { recursive: true });
const context = await chromium.launchPersistentContext(plan.userDataDir, {
  executablePath: plan.executablePath,
  headless: true,
  permissions: ['local-network-access'],
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run',
    `--ignore-certificate-errors-spki-list=${plan.spki}`,
    `--log-net-log=${plan.netLog}`,
  ],
});
context.setDefaultTimeout(plan.timeoutMs);
// The test page (page.html and the client bundles) is placed at each
// target's origin, fulfilled from the Go test's page server; every other
// request goes to the example.
const origins = new Set(plan.targets.map((t) => t.origin));
await context.route((u) => origins.has(u.origin) && u.pathname.startsWith('/interop/'), async (route) => {
  const u = new URL(route.request().url());
  await route.fulfill({ response: await route.fetch({ url: plan.pageServer + u.pathname }) });
});

const results = { targets: [] };
for (const t of plan.targets) {
  const seen = { sockets: [], pages: [] };
  const r = { name: t.name };
  r.demo = await demo(t, seen).catch((err) => ({ error: String(err.message || err) }));
  r.cross = await cross(t, seen).catch((err) => ({ error: String(err.message || err) }));
  r.sockets = seen.sockets;
  r.pages = seen.pages;
  results.targets.push(r);
}
await context.close(); // Chromium writes the end of its net-log as it exits
process.stdout.write(JSON.stringify(results) + '\n', () => process.exit(0));

// newTab opens a tab whose WebSocket handshakes and page responses CDP
// reports into seen, before it loads anything.
async function newTab(seen, label) {
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  const created = new Map();
  cdp.on('Network.webSocketCreated', (e) => created.set(e.requestId, e.url));
  cdp.on('Network.webSocketHandshakeResponseReceived', (e) => seen.sockets.push({
    tab: label,
    url: created.get(e.requestId) ?? '',
    status: e.response.status,
    headers: e.response.headers,
  }));
  cdp.on('Network.responseReceived', (e) => seen.pages.push({
    tab: label,
    url: e.response.url,
    status: e.response.status,
    protocol: e.response.protocol ?? '',
  }));
  await cdp.send('Network.enable');
  const errors = [];
  page.on('pageerror', (err) => errors.push(err.message));
  page.errors = errors;
  return page;
}

// demo uses the example's own page in two tabs, as a person would: each
// types a text and presses Publish, and both tabs must show it.
async function demo(t, seen) {
  const tabs = [await newTab(seen, 'demo-1'), await newTab(seen, 'demo-2')];
  try {
    await Promise.all(tabs.map((p) => p.goto(`${t.origin}/`)));
    const ids = [];
    for (const p of tabs) {
      await p.waitForSelector('#status.connected');
      ids.push(/ as (\S+)$/.exec(await p.textContent('#status'))?.[1] ?? '');
    }
    const say = async (from, to, text) => {
      await from.fill('#text', text);
      await from.click('#send');
      const shown = async (p) => {
        const li = p.locator('#messages li.msg', { hasText: text });
        await li.waitFor();
        return {
          from: await li.getAttribute('data-from'),
          mine: (await li.getAttribute('class')).split(' ').includes('mine'),
          text: await li.locator('.text').textContent(),
        };
      };
      return { sender: await shown(from), receiver: await shown(to), inputCleared: (await from.inputValue('#text')) === '' };
    };
    return {
      ids,
      exchanges: [await say(tabs[0], tabs[1], t.texts[0]), await say(tabs[1], tabs[0], t.texts[1])],
    };
  } catch (err) {
    const errors = tabs.flatMap((p) => p.errors);
    throw new Error(`${err.message}${errors.length ? `; page errors: ${errors.join('; ')}` : ''}`);
  } finally {
    await Promise.all(tabs.map((p) => p.close()));
  }
}

// cross connects Paho (MQTT 3.1.1) in one tab and MQTT.js (MQTT 5) in
// another, each subscribed to its own topic under t.topic: each sends
// t.payloads to the other, one at a time.
async function cross(t, seen) {
  const tabs = { paho: await newTab(seen, 'paho'), mqttjs: await newTab(seen, 'mqttjs') };
  try {
    for (const [lib, p] of Object.entries(tabs)) {
      await p.goto(`${t.origin}/interop/page.html`);
      await p.waitForFunction(() => typeof window.Paho === 'object' && typeof window.mqtt === 'object');
      // A request to the example itself (the page came from the route):
      // the tab's WebSocket finds the HTTP/2 connection it made, if any.
      const health = await p.evaluate(async () => (await fetch('/healthz', { cache: 'no-store' })).status);
      if (health !== 200) throw new Error(`${lib}: GET /healthz: ${health}`);
      await p.evaluate(connectClient, { lib, url: t.url, inbox: `${t.topic}/${lib}`, qos: t.qos, timeoutMs: plan.timeoutMs });
    }
    const send = async (from, to) => {
      const out = [];
      for (const pl of t.payloads) {
        const got = tabs[to].evaluate(() => window.client.next());
        await tabs[from].evaluate((m) => window.client.publish(m), { topic: `${t.topic}/${to}`, qos: t.qos, ...pl });
        out.push(await got);
      }
      return out;
    };
    const pahoToMqttjs = await send('paho', 'mqttjs');
    const mqttjsToPaho = await send('mqttjs', 'paho');
    const subprotocols = {};
    for (const [lib, p] of Object.entries(tabs)) {
      subprotocols[lib] = await p.evaluate(() => window.sockets.map((s) => s.protocol));
      await p.evaluate(() => window.client.end());
    }
    return { pahoToMqttjs, mqttjsToPaho, subprotocols };
  } catch (err) {
    const errors = Object.values(tabs).flatMap((p) => p.errors);
    throw new Error(`${err.message}${errors.length ? `; page errors: ${errors.join('; ')}` : ''}`);
  } finally {
    await Promise.all(Object.values(tabs).map((p) => p.close()));
  }
}

// connectClient runs in a tab of page.html: it connects a client of c.lib
// to c.url, subscribes to c.inbox and sets window.client, whose publish
// sends a payload of payload.mjs and whose next resolves to the next
// message received, described by its topic, QoS, length and SHA-256.
async function connectClient(c) {
  const { payload } = await import('/interop/payload.mjs');
  const id = `${c.lib}-${Math.random().toString(16).slice(2, 8)}`;
  const items = [];
  const waiting = [];
  const sha256 = async (b) => Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', b)), (x) => x.toString(16).padStart(2, '0')).join('');
  // Described in arrival order: the digests may end out of order.
  let described = Promise.resolve();
  const received = (topic, qos, bytes) => {
    described = described.then(async () => {
      const m = { topic, qos, len: bytes.length, sha256: await sha256(bytes) };
      if (waiting.length) waiting.shift()(m);
      else items.push(m);
    });
  };
  const withTimeout = (what, p) => {
    let timer;
    return Promise.race([
      p.finally(() => clearTimeout(timer)),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${c.lib}: ${what}: not done within ${c.timeoutMs} ms`)), c.timeoutMs); }),
    ]);
  };
  const next = () => withTimeout('next message', items.length ? Promise.resolve(items.shift()) : new Promise((resolve) => waiting.push(resolve)));
  if (c.lib === 'paho') {
    const client = new Paho.Client(c.url, id);
    client.onMessageArrived = (m) => received(m.destinationName, m.qos, new Uint8Array(m.payloadBytes));
    await withTimeout('connect', new Promise((resolve, reject) => client.connect({
      mqttVersion: 4,
      mqttVersionExplicit: true,
      cleanSession: true,
      keepAliveInterval: 60,
      timeout: 10,
      onSuccess: resolve,
      onFailure: (e) => reject(new Error(`paho: connect: ${e.errorCode} ${e.errorMessage}`)),
    })));
    await withTimeout('subscribe', new Promise((resolve, reject) => client.subscribe(c.inbox, {
      qos: c.qos,
      timeout: 10,
      onSuccess: resolve,
      onFailure: (e) => reject(new Error(`paho: subscribe: ${e.errorCode} ${e.errorMessage}`)),
    })));
    window.client = {
      publish: (m) => withTimeout('publish', new Promise((resolve) => {
        client.onMessageDelivered = () => resolve();
        const msg = new Paho.Message(payload(m.size, m.seed));
        msg.destinationName = m.topic;
        msg.qos = m.qos;
        client.send(msg);
      })),
      next,
      end: () => { if (client.isConnected()) client.disconnect(); },
    };
    return;
  }
  const client = mqtt.connect(c.url, { protocolVersion: 5, clientId: id, clean: true, keepalive: 60, reconnectPeriod: 0, connectTimeout: 10000 });
  await withTimeout('connect', new Promise((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  }));
  client.on('message', (topic, p, packet) => received(topic, packet.qos, new Uint8Array(p)));
  await withTimeout('subscribe', client.subscribeAsync(c.inbox, { qos: c.qos }));
  window.client = {
    publish: (m) => withTimeout('publish', client.publishAsync(m.topic, payload(m.size, m.seed), { qos: m.qos })),
    next,
    end: () => client.end(true),
  };
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}
