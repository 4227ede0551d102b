// Headless Chromium (Debian's, never a downloaded one) driven by
// playwright-core, for browser_test.go. Reads a plan on stdin:
//
//   {"executablePath": "/usr/bin/chromium", "userDataDir": "...",
//    "pageServer": "http://127.0.0.1:PORT", "timeoutMs": N,
//    "targets": [{"name": "...", "origin": "http://127.0.0.1:PORT", "url": "ws://...",
//                 "clients": [{"name", "lib", "version", "qos", "topic", "payloads": [{"size", "seed"}]}],
//                 "demo": {"url": "http://...", "texts": ["...", "..."]} | null}]}
//
// The test page (page.html, from the Go test's page server) is placed at
// each target's origin, as an app serving its own page would; a page from
// the page server's own origin probes cross-origin connections. Prints
// {"targets": [...]} with what each client saw.
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

const plan = JSON.parse(await readStdin());
mkdirSync(plan.userDataDir, { recursive: true });
const context = await chromium.launchPersistentContext(plan.userDataDir, {
  executablePath: plan.executablePath,
  headless: true,
  // The test page is fulfilled by playwright, not loaded from 127.0.0.1:
  // Chromium's Local Network Access checks would block its connections to
  // loopback unless allowed, as a user does when asked.
  permissions: ['local-network-access'],
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run',
  ],
});
context.setDefaultTimeout(plan.timeoutMs);
const origins = new Set(plan.targets.map((t) => t.origin));
await context.route((u) => origins.has(u.origin) && u.pathname.startsWith('/interop/'), async (route) => {
  const u = new URL(route.request().url());
  await route.fulfill({ response: await route.fetch({ url: plan.pageServer + u.pathname }) });
});

const results = { targets: [] };
for (const t of plan.targets) {
  const r = { name: t.name };
  // One tab per client, side by side.
  r.clients = await Promise.all((t.clients ?? []).map((c) => inPage(`${t.origin}/interop/page.html`, async (page) => ({
    name: c.name,
    ...await page.evaluate((c) => window.run(c), { ...c, url: t.url, timeoutMs: plan.timeoutMs }),
  })).catch((err) => ({ name: c.name, error: String(err.message || err) }))));
  r.crossOrigin = await inPage(`${plan.pageServer}/interop/page.html`, (page) => page.evaluate((url) => window.probe(url), t.url))
    .catch((err) => ({ error: String(err.message || err) }));
  if (t.demo) {
    r.demo = await demo(t.demo).catch((err) => ({ error: String(err.message || err) }));
  }
  results.targets.push(r);
}
await context.close();
process.stdout.write(JSON.stringify(results) + '\n', () => process.exit(0));

// inPage opens url in a new tab, waits for page.mjs, runs f and closes the tab.
async function inPage(url, f) {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(err.message));
  try {
    await page.goto(url);
    await page.waitForFunction(() => typeof window.run === 'function');
    return await f(page);
  } catch (err) {
    throw new Error(`${err.message}${errors.length ? `; page errors: ${errors.join('; ')}` : ''}`);
  } finally {
    await page.close();
  }
}

// demo uses the embedded example's own page in two tabs, as a person would:
// each types a text and presses Publish, and both tabs must show it, from
// the right client.
async function demo({ url, texts }) {
  const tabs = [await context.newPage(), await context.newPage()];
  try {
    await Promise.all(tabs.map((p) => p.goto(url)));
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
      exchanges: [await say(tabs[0], tabs[1], texts[0]), await say(tabs[1], tabs[0], texts[1])],
    };
  } finally {
    await Promise.all(tabs.map((p) => p.close()));
  }
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}
