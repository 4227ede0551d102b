// Headless Chromium with permessage-deflate, for compress_test.go: like
// browser.mjs, the test page is placed at the target's origin, and Paho and
// MQTT.js send each other payloads through window.run (page.mjs); then the
// page reports the Sec-WebSocket-Extensions every socket negotiated, as the
// browser saw it. A last tab sends compressible text with MQTT.js. Reads a
// plan on stdin:
//
//   {"executablePath", "userDataDir", "pageServer", "timeoutMs", "origin", "url",
//    "clients": [{"name", "lib", "version", "qos", "topic", "payloads": [{"size", "seed"}]}],
//    "text": {"topic", "qos", "seed", "sizes": [N]}}
//
// Prints {"clients": [{..., "extensions": [...]}], "text": {"extensions", "messages"}}.
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
  ],
});
context.setDefaultTimeout(plan.timeoutMs);
await context.route((u) => u.origin === plan.origin && u.pathname.startsWith('/interop/'), async (route) => {
  const u = new URL(route.request().url());
  await route.fulfill({ response: await route.fetch({ url: plan.pageServer + u.pathname }) });
});

const page = `${plan.origin}/interop/page.html`;
const out = {};
out.clients = await Promise.all(plan.clients.map((c) => inPage(page, async (p) => {
  const r = await p.evaluate((c) => window.run(c), { ...c, url: plan.url, timeoutMs: plan.timeoutMs });
  return { name: c.name, ...r, extensions: await p.evaluate(() => window.sockets.map((s) => s.extensions)) };
}).catch((err) => ({ name: c.name, error: String(err.message || err) }))));
out.text = await inPage(page, (p) => p.evaluate(textTransfer, { ...plan.text, url: plan.url, timeoutMs: plan.timeoutMs }))
  .catch((err) => ({ error: String(err.message || err) }));
await context.close();
process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(0));

// textTransfer runs in the page: MQTT.js sends t.sizes bytes of text() to
// itself, one message each, and reports what came back.
async function textTransfer(t) {
  const text = (size, seed) => {
    const b = new Uint8Array(size);
    let x = (seed ^ 0x9e3779b9) | 0 || 1;
    for (let i = 0; i < size; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      b[i] = 0x61 + (x & 3);
    }
    return b;
  };
  const hex = async (bytes) => Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)), (b) => b.toString(16).padStart(2, '0')).join('');
  const client = mqtt.connect(t.url, { protocolVersion: 4, clientId: `text-${Math.random().toString(16).slice(2, 8)}`, reconnectPeriod: 0, connectTimeout: 10000 });
  await new Promise((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  const pending = [];
  client.on('message', (topic, p) => pending.shift()?.(p));
  await client.subscribeAsync(t.topic, { qos: t.qos });
  const messages = [];
  for (const size of t.sizes) {
    const got = new Promise((resolve) => pending.push(resolve));
    await client.publishAsync(t.topic, text(size, t.seed), { qos: t.qos });
    const p = await got;
    messages.push({ len: p.length, sha256: await hex(p) });
  }
  client.end(true);
  return { extensions: window.sockets.map((s) => s.extensions), messages };
}

async function inPage(url, f) {
  const p = await context.newPage();
  const errors = [];
  p.on('pageerror', (err) => errors.push(err.message));
  try {
    await p.goto(url);
    await p.waitForFunction(() => typeof window.run === 'function');
    return await f(p);
  } catch (err) {
    throw new Error(`${err.message}${errors.length ? `; page errors: ${errors.join('; ')}` : ''}`);
  } finally {
    await p.close();
  }
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}
