// The master's store at scale (issue 9): with up to 100,000 stored runs in each store (SQLite and
// PostgreSQL, inserted directly through the Store API), the latency of listing runs through the
// HTTP API (limit=50, filtered and not; the first page, one from the middle and the last one, through
// continue tokens), submissions per second through the API, and the master
// process's RSS as the store grows. The reference is the Kubernetes API server: as many suspended
// Jobs as the test environment holds, listed with limit=50 (filtered by label) and with
// `kubectl get jobs --chunk-size=50`; the master pages through the same number of runs.
//
// Usage: node dist/bench/master-store.js [--runs 100000] [--checkpoints 0,25000,50000,100000]
//          [--stores sqlite,postgres] [--requests 300] [--submissions 2000] [--clients 8] [--jobs 5000]
// Needs WEFT_TEST_POSTGRES_URL for postgres and KUBECONFIG for the reference (--jobs 0 skips it);
// scripts/test.d/45-postgres-up.sh and 50-k8s-up.sh provide both.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { BatchV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { openStore, type Store } from '../src/master/index.js';
import { encodeContinue } from '../src/master/store/sql-store.js';
import type { RunState } from '../src/runtime/index.js';
import { postgresTarget, sqliteTarget, type StoreTarget } from '../test/master/stores.js';
import { toolBinary } from '../test/support/tools.js';
import { median } from './stats.js';

const execFileAsync = promisify(execFile);
const weftMain = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', 'src', 'cli', 'main.js');

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '100000' },
    checkpoints: { type: 'string', default: '0,25000,50000,100000' },
    stores: { type: 'string', default: 'sqlite,postgres' },
    requests: { type: 'string', default: '300' },
    submissions: { type: 'string', default: '2000' },
    clients: { type: 'string', default: '8' },
    jobs: { type: 'string', default: '5000' },
    reference: { type: 'string', default: '5000' },
  },
});
const RUNS = Number(values.runs);
const CHECKPOINTS = values.checkpoints!.split(',').map(Number).filter((n) => n <= RUNS);
const REQUESTS = Number(values.requests);
const SUBMISSIONS = Number(values.submissions);
const CLIENTS = Number(values.clients);
const JOBS = Number(values.jobs);
const REFERENCE = Number(values.reference);
const APPS = 20;
const NS = 'bench';

const p99 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(xs.length * 0.99) - 1)];
const ms = (x: number) => x.toFixed(1);
const STATES: RunState[] = ['COMPLETED', 'COMPLETED', 'COMPLETED', 'COMPLETED', 'COMPLETED', 'COMPLETED', 'FAILED', 'FAILED', 'KILLED', 'COMPLETED'];

interface Master {
  child: ChildProcess;
  url: string;
  token: string;
}

async function startMaster(location: string, work: string): Promise<Master> {
  const tokenFile = path.join(work, 'admin-token');
  const child = spawn(
    process.execPath,
    [weftMain, 'master', '--addr', '127.0.0.1:0', '--store', location, '--runtime', 'local', '--admin-token-file', tokenFile, '--reconcile-interval', '3600', '--admission-limit', '1'],
    { env: { ...process.env, XDG_STATE_HOME: path.join(work, 'state'), WEFT_LOCAL_MODE: 'host' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d));
  child.stderr!.on('data', (d: Buffer) => (stderr += d));
  const deadline = Date.now() + 60_000;
  for (;;) {
    const url = /^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(stdout)?.[1];
    if (url) return { child, url, token: (await fs.readFile(tokenFile, 'utf8')).trim() };
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`weft master did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function get(m: Master, p: string): Promise<{ items: Array<{ id: string }>; continue?: string }> {
  // A kept-alive connection the server closed while idle (its keep-alive timeout passed during an insert) is retried once.
  const res = await fetch(`${m.url}${p}`, { headers: { authorization: `Bearer ${m.token}` } }).catch((error: Error) => {
    if (m.child.exitCode !== null) throw new Error(`the master exited (${m.child.exitCode}): ${error.message}`);
    return fetch(`${m.url}${p}`, { headers: { authorization: `Bearer ${m.token}` } });
  });
  if (res.status !== 200) throw new Error(`GET ${p}: ${res.status} ${await res.text()}`);
  return (await res.json()) as { items: Array<{ id: string }>; continue?: string };
}

async function timed(n: number, fn: (i: number) => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn(i);
    out.push(performance.now() - t);
  }
  return out;
}

/** Inserts runs [from, to) of namespace `ns` straight into the store, 1000 per transaction (terminal states, so the reconciler leaves them). */
async function insert(store: Store, ns: string, from: number, to: number): Promise<void> {
  const base = Date.UTC(2026, 0, 1);
  for (let start = from; start < to; start += 1000) {
    const batch = [];
    for (let i = start; i < Math.min(to, start + 1000); i++) {
      batch.push({
        id: `${ns}-${String(i).padStart(7, '0')}`,
        namespace: ns,
        app: `app-${i % APPS}`,
        spec: { name: `app-${i % APPS}`, runnables: [{ name: 'main', kind: 'batch', image: 'example/app:1', args: ['--n', String(i)] }] },
        runtime: 'local',
        createdBy: 'bench',
        state: STATES[i % STATES.length],
        createdAt: base + i * 1000,
      });
    }
    await store.importRuns(batch);
  }
}

async function pageAll(m: Master, ns: string): Promise<number> {
  let cont: string | undefined;
  let n = 0;
  do {
    const page = await get(m, `/api/v1/namespaces/${ns}/runs?limit=50${cont ? `&continue=${encodeURIComponent(cont)}` : ''}`);
    n += page.items.length;
    cont = page.continue;
  } while (cont);
  return n;
}

async function benchStore(kind: 'sqlite' | 'postgres'): Promise<void> {
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-bench-master-'));
  const target: StoreTarget = kind === 'sqlite' ? await sqliteTarget() : await postgresTarget();
  const store = await openStore(target.location);
  const master = await startMaster(target.location, work);
  try {
    console.log(`\n## ${kind}: ${RUNS} runs in namespace ${NS} (${APPS} apps; 20% FAILED or KILLED), ${REQUESTS} sequential requests per list`);
    console.log(
      '| stored runs | insert s (this step) | list limit=50 median ms | p99 ms | filtered (app+state) median ms | p99 ms | middle page median ms | p99 ms | last page median ms | filtered middle page median ms | master RSS MiB |',
    );
    console.log('|---|---|---|---|---|---|---|---|---|---|---|');
    let stored = 0;
    for (const cp of CHECKPOINTS) {
      const t0 = performance.now();
      await insert(store, NS, stored, cp);
      const insertS = (performance.now() - t0) / 1000;
      stored = cp;
      const plain = await timed(REQUESTS, () => get(master, `/api/v1/namespaces/${NS}/runs?limit=50`));
      const filtered = await timed(REQUESTS, (i) => get(master, `/api/v1/namespaces/${NS}/runs?limit=50&app=app-${i % APPS}&state=FAILED`));
      // Pages far down: the continue token the previous page would carry (keyset paging: as cheap as the first page).
      const tokenAt = (i: number) => encodeContinue({ createdAt: Date.UTC(2026, 0, 1) + i * 1000, id: `${NS}-${String(i).padStart(7, '0')}` });
      const page = (i: number, query = '') => timed(REQUESTS, () => get(master, `/api/v1/namespaces/${NS}/runs?limit=50${query}&continue=${tokenAt(i)}`));
      const middle = cp > 0 ? await page(Math.floor(cp / 2)) : [NaN];
      const last = cp > 0 ? await page(Math.min(50, cp - 1)) : [NaN]; // the last page: the 50 oldest runs
      // Runs of app-6 are FAILED (i % 20 = 6): the one nearest the middle.
      const filteredMiddle = cp > 0 ? await page(Math.floor(cp / 40) * 20 + 6, '&app=app-6&state=FAILED') : [NaN];
      console.log(
        `| ${cp} | ${insertS.toFixed(1)} | ${ms(median(plain))} | ${ms(p99(plain))} | ${ms(median(filtered))} | ${ms(p99(filtered))} | ${ms(median(middle))} | ${ms(p99(middle))} | ${ms(median(last))} | ${ms(median(filteredMiddle))} | ${rssMiB(master.child.pid!).toFixed(0)} |`,
      );
    }
    // Submissions per second through the API: a namespace whose one slot is taken, so each submission is
    // validated, authorised, decided (idempotency, admission) and stored as a queued run under the namespace
    // lock, with its audit record, without the runtime starting processes.
    await store.createRun({ id: 'sub-blocker', namespace: 'sub', app: 'blocker', spec: {}, runtime: 'local', createdBy: 'bench', state: 'RUNNING' });
    const body = JSON.stringify({ spec: { name: 'sub', runnables: [{ name: 'main', kind: 'batch', image: 'example/app:1' }] }, queue: true });
    let next = 0;
    const codes = new Map<number, number>();
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        for (let i = next++; i < SUBMISSIONS; i = next++) {
          const res = await fetch(`${master.url}/api/v1/namespaces/sub/runs`, { method: 'POST', headers: { authorization: `Bearer ${master.token}`, 'content-type': 'application/json', 'idempotency-key': `s-${i}` }, body });
          await res.arrayBuffer();
          codes.set(res.status, (codes.get(res.status) ?? 0) + 1);
        }
      }),
    );
    const secs = (performance.now() - t0) / 1000;
    console.log(`\nsubmissions: ${SUBMISSIONS} from ${CLIENTS} concurrent clients in ${secs.toFixed(2)} s = ${(SUBMISSIONS / secs).toFixed(0)}/s (answers: ${[...codes].map(([c, n]) => `${n}x${c}`).join(', ')}); master RSS after: ${rssMiB(master.child.pid!).toFixed(0)} MiB`);
    if (REFERENCE > 0) {
      await insert(store, 'ref', 0, REFERENCE);
      const full = await timed(5, async () => {
        const n = await pageAll(master, 'ref');
        if (n !== REFERENCE) throw new Error(`paged ${n} runs, expected ${REFERENCE}`);
      });
      console.log(`paging all ${REFERENCE} runs of a namespace at limit=50 (${REFERENCE / 50} requests): median ${ms(median(full))} ms of 5`);
    }
  } finally {
    master.child.kill('SIGTERM');
    await new Promise((r) => master.child.once('exit', r));
    await store.close();
    await target.drop();
    await fs.rm(work, { recursive: true, force: true });
  }
}

async function benchKube(): Promise<void> {
  const kubeconfig = process.env.KUBECONFIG;
  if (!kubeconfig) throw new Error('KUBECONFIG is not set: start the test control plane (scripts/k8s-testenv up) or pass --jobs 0');
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  const batch = kc.makeApiClient(BatchV1Api);
  const namespace = `bench-jobs-${process.pid}`;
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  const kubectlBin = toolBinary('kubernetes', 'bin/kubectl', 'scripts/k8s/build.sh');
  try {
    // Suspended Jobs: stored objects with no pods, like finished runs.
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let i = next++; i < JOBS; i = next++) {
          await batch.createNamespacedJob({
            namespace,
            body: {
              metadata: { name: `job-${i}`, labels: { app: `app-${i % APPS}`, state: STATES[i % STATES.length] } },
              spec: { suspend: true, template: { spec: { restartPolicy: 'Never', containers: [{ name: 'main', image: 'example/app:1', args: ['--n', String(i)] }] } } },
            },
          });
        }
      }),
    );
    console.log(`\n## Kubernetes API server reference: ${JOBS} suspended Jobs created in ${((performance.now() - t0) / 1000).toFixed(1)} s (16 clients)`);
    const first = await timed(REQUESTS, () => batch.listNamespacedJob({ namespace, limit: 50 }));
    const filtered = await timed(REQUESTS, (i) => batch.listNamespacedJob({ namespace, limit: 50, labelSelector: `app=app-${i % APPS},state=FAILED` }));
    console.log(`list limit=50: median ${ms(median(first))} ms, p99 ${ms(p99(first))} ms; filtered by label (app+state): median ${ms(median(filtered))} ms, p99 ${ms(p99(filtered))} ms (${REQUESTS} requests each)`);
    const full = await timed(5, async () => {
      const { stdout } = await execFileAsync(kubectlBin, ['--kubeconfig', kubeconfig, '-n', namespace, 'get', 'jobs', '--chunk-size=50', '-o', 'name'], { maxBuffer: 64 << 20 });
      const n = stdout.split('\n').filter(Boolean).length;
      if (n !== JOBS) throw new Error(`kubectl listed ${n} jobs, expected ${JOBS}`);
    });
    console.log(`kubectl get jobs --chunk-size=50 -o name (${JOBS} Jobs, ${JOBS / 50} requests): median ${ms(median(full))} ms of 5`);
  } finally {
    await core.deleteNamespace({ name: namespace }).catch(() => undefined);
  }
}

for (const kind of values.stores!.split(',').filter(Boolean)) await benchStore(kind as 'sqlite' | 'postgres');
if (JOBS > 0) await benchKube();
