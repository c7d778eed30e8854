// The dashboard's first load: what the browser downloads (HTML, scripts,
// styles; raw and as sent, gzip) and how soon it shows something, in headless
// Chromium against a real master (local runtime, SQLite, 1,000 stored runs).
// Each load is in a fresh browser context (empty cache):
//   sign-in page   first contentful paint of the page without a token
//   runs page      first contentful paint, and the first run row rendered (signed in; list + counts + watch from the master)
//
//   node dist/bench/dashboard-first-load.js [--runs 9]
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { startMaster } from '../src/master/index.js';
import { newRunId } from '../src/runtime/index.js';
import { createLocalRuntime } from '../src/runtime/local/index.js';
import { launchChromium } from '../test/dashboard/browser.js';
import { repoRoot } from '../test/twill/fixtures/probe-image.js';
import { median } from './stats.js';
import { countFlag } from './args.js';

const RUNS = countFlag('runs', 9);

const work = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-bench-dashboard-'));
const runtime = await createLocalRuntime({ stateDir: path.join(work, 'local'), mode: 'host' });
const master = await startMaster({ addr: '127.0.0.1:0', store: `sqlite:${path.join(work, 'master.db')}`, runtime, adminTokenFile: path.join(work, 'admin-token'), reconcileIntervalMs: 600_000 });
const token = (await fs.readFile(path.join(work, 'admin-token'), 'utf8')).trim();
const browser = await launchChromium();
try {
  const now = Date.now();
  for (let i = 0; i < 1000; i++) {
    const { run } = await master.store.createRun({ id: newRunId('bench'), namespace: 'bench', app: 'bench', spec: { name: 'bench' }, runtime: 'local', createdBy: 'bench', createdAt: now - (1000 - i) * 1000 });
    await master.store.transition(run.id, i % 7 ? 'COMPLETED' : 'FAILED');
  }

  // The bytes of the first load, from the built files (raw, and gzip as the master sends them).
  const dir = path.join(repoRoot, 'dist', 'dashboard');
  const html = await fs.readFile(path.join(dir, 'index.html'), 'utf8');
  const assets = [...html.matchAll(/(?:src|href)="\/(assets\/[^"]+)"/g)].map((m) => m[1]);
  const files = ['index.html', ...assets];
  const sizes = await Promise.all(
    files.map(async (f) => {
      const body = await fs.readFile(path.join(dir, f));
      const sent = await fetch(`${master.url}/${f === 'index.html' ? '' : f}`, { headers: { 'accept-encoding': 'gzip' } });
      const wire = Number(sent.headers.get('content-length'));
      await sent.arrayBuffer();
      return { file: f, raw: body.length, gzip: gzipSync(body, { level: 9 }).length, sent: wire };
    }),
  );

  // The floor on this machine: a one-line static HTML page from a bare Node server, loaded the same way.
  const { createServer } = await import('node:http');
  const peer = createServer((_, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>hello</title><p id="token">hello</p>'));
  await new Promise<void>((r) => peer.listen(0, '127.0.0.1', r));
  const peerUrl = `http://127.0.0.1:${(peer.address() as { port: number }).port}/`;

  const measure = async (signedIn: boolean, url = `${master.url}/#/ns/bench/runs`) => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    // The first run row's time, seen by the page itself (no round trip to the test).
    await context.addInitScript(`
      ${signedIn ? `sessionStorage.setItem('weft-token', ${JSON.stringify(token)});` : ''}
      new MutationObserver((_, obs) => {
        if (document.querySelector('tr[data-run-id]') || document.querySelector('#token')) { window.__ready = performance.now(); obs.disconnect(); }
      }).observe(document, { childList: true, subtree: true });
    `);
    const page = await context.newPage();
    await page.goto(url);
    // Function predicates: string ones would need eval, which the page's CSP forbids.
    await page.waitForFunction(() => (globalThis as { __ready?: number }).__ready !== undefined, undefined, { timeout: 30_000 });
    await page.waitForFunction(() => performance.getEntriesByName('first-contentful-paint').length > 0, undefined, { timeout: 30_000 });
    const m = (await page.evaluate(`(() => {
      const nav = performance.getEntriesByType('navigation')[0];
      const res = performance.getEntriesByType('resource').filter((r) => /\\/assets\\//.test(r.name));
      return {
        fcp: performance.getEntriesByName('first-contentful-paint')[0].startTime,
        ready: window.__ready,
        transferred: nav.transferSize + res.reduce((a, r) => a + r.transferSize, 0),
      };
    })()`)) as { fcp: number; ready: number; transferred: number };
    await context.close();
    return m;
  };
  await measure(true); // warm the master's file cache and SQLite pages once
  const signIn: Array<{ fcp: number; ready: number; transferred: number }> = [];
  const runs: Array<{ fcp: number; ready: number; transferred: number }> = [];
  const floor: Array<{ fcp: number; ready: number; transferred: number }> = [];
  for (let i = 0; i < RUNS; i++) {
    floor.push(await measure(false, peerUrl));
    signIn.push(await measure(false));
    runs.push(await measure(true));
  }
  peer.close();
  const round = (n: number) => Math.round(n);
  const result = {
    runs: RUNS,
    files: sizes,
    total: { raw: sizes.reduce((a, s) => a + s.raw, 0), gzip: sizes.reduce((a, s) => a + s.gzip, 0), sent: sizes.reduce((a, s) => a + s.sent, 0) },
    transferredMedian: median(runs.map((r) => r.transferred)),
    staticPageFcpMs: round(median(floor.map((r) => r.fcp))),
    signInFcpMs: round(median(signIn.map((r) => r.fcp))),
    signInFormMs: round(median(signIn.map((r) => r.ready))),
    runsFcpMs: round(median(runs.map((r) => r.fcp))),
    firstRowMs: round(median(runs.map((r) => r.ready))),
    firstRowMaxMs: round(Math.max(...runs.map((r) => r.ready))),
  };
  console.log('file                              raw B   gzip B   sent B');
  for (const s of sizes) console.log(`${s.file.padEnd(32)} ${String(s.raw).padStart(7)} ${String(s.gzip).padStart(8)} ${String(s.sent).padStart(8)}`);
  console.log(`${'total'.padEnd(32)} ${String(result.total.raw).padStart(7)} ${String(result.total.gzip).padStart(8)} ${String(result.total.sent).padStart(8)}`);
  console.log(`bytes over the wire (Chromium transferSize, with headers), median: ${result.transferredMedian}`);
  console.log(`first contentful paint, a static one-line HTML page from a bare Node server (the floor here; median of ${RUNS}): ${result.staticPageFcpMs} ms`);
  console.log(`first contentful paint, sign-in page (median of ${RUNS}): ${result.signInFcpMs} ms`);
  console.log(`sign-in form rendered (median of ${RUNS}): ${result.signInFormMs} ms`);
  console.log(`first contentful paint, runs page (median of ${RUNS}): ${result.runsFcpMs} ms`);
  console.log(`first run row rendered (median of ${RUNS}, max ${result.firstRowMaxMs}): ${result.firstRowMs} ms`);
  await fs.mkdir(path.join(repoRoot, 'bench', 'results'), { recursive: true });
  await fs.writeFile(path.join(repoRoot, 'bench', 'results', 'dashboard-first-load.json'), `${JSON.stringify(result, null, 2)}\n`);
} finally {
  await browser.close();
  await master.close();
  await runtime.close();
  await fs.rm(work, { recursive: true, force: true });
}
