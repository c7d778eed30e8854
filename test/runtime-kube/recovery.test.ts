// Kill the weft process while 50 runs are live, start a new one: every run is found with the right
// state, and later transitions are still seen. Then restart the apiserver: no transition is lost.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { parseAppSpec, Runner, type RunState } from '../../src/runtime/index.js';
import type { KubeRuntime } from '../../src/runtime/kube/index.js';
import { KWOK, requireKubeconfig, runtimeFor, testNamespace, waitForStatus } from './helpers.js';

const here = dirname(fileURLToPath(import.meta.url));
const repo = process.env.WEFT_ROOT ?? join(here, '..', '..', '..');
let ns: { name: string; drop: () => Promise<void> };
const runtimes: KubeRuntime[] = [];

before(async () => {
  ns = await testNamespace('weft-recover');
});
after(async () => {
  for (const r of runtimes) await r.close();
  await ns?.drop();
});

test('a restarted weft finds all 50 live runs with the right state and sees later transitions', async () => {
  requireKubeconfig();
  const child = spawn(process.execPath, [join(here, 'tracker-child.js'), ns.name, '45', '5'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const started = new Map<string, string>();
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the child did not report ready in 300 s; stderr: ${stderr}`)), 300_000);
      child.on('exit', (code) => reject(new Error(`the child exited (${code}) before ready: ${stderr}`)));
      createInterface({ input: child.stdout }).on('line', (line) => {
        const e = JSON.parse(line);
        if (e.event === 'started') started.set(e.runId, e.app);
        if (e.event === 'ready') {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  } finally {
    child.kill('SIGKILL');
  }
  assert.equal(started.size, 50);

  const runtime = await runtimeFor(ns.name);
  runtimes.push(runtime);
  const found = await runtime.list();
  assert.deepEqual(new Set(found.map((s) => s.runId)), new Set(started.keys()), 'every run found, none duplicated, none extra');
  assert.equal(found.length, 50);
  for (const s of found) {
    assert.equal(s.app, started.get(s.runId));
    if (s.app === 'svc') assert.equal(s.state, 'RUNNING', `${s.runId}: ${s.message}`);
    else assert.ok(s.state === 'RUNNING' || s.state === 'COMPLETED', `${s.runId} is ${s.state}`);
  }

  // Later transitions: the batch runs complete, stopped services end KILLED, a scaled one shows its new instances.
  const services = found.filter((s) => s.app === 'svc');
  const jobs = found.filter((s) => s.app === 'job');
  await Promise.all(jobs.map((s) => waitForStatus(runtime, s.runId, (x) => x.state === 'COMPLETED', 180_000, 'COMPLETED')));
  await runtime.scale(services[0].runId, 'web', 3);
  await waitForStatus(runtime, services[0].runId, (x) => x.runnables[0].running === 3, 180_000, '3 running');
  const victims = services.slice(1, 6);
  await Promise.all(victims.map((s) => runtime.kill(s.runId)));
  await Promise.all(victims.map((s) => waitForStatus(runtime, s.runId, (x) => x.state === 'KILLED', 180_000, 'KILLED')));
});

test('restarting the apiserver (the watches drop) loses no transition', async () => {
  const runtime = await runtimeFor(ns.name);
  runtimes.push(runtime);
  const runner = new Runner(runtime);
  const job = parseAppSpec({
    name: 'across',
    runnables: [{ name: 'main', kind: 'batch', image: 'registry.example/job:1', kubernetes: { podAnnotations: { [KWOK.completeDelay]: '6s' } } }],
  });
  const controllers = await Promise.all([1, 2, 3].map(() => runner.prepare(job).start()));
  const seen = new Map<string, RunState[]>(controllers.map((c) => [c.runId, [c.state]]));
  for (const c of controllers) {
    c.onChange((s) => {
      const list = seen.get(s.runId)!;
      if (list[list.length - 1] !== s.state) list.push(s.state);
    });
  }
  await Promise.all(controllers.map((c) => c.onRunning()));
  const restart = await promisify(execFile)('bash', [join(repo, 'scripts', 'k8s-testenv'), 'restart-apiserver'], { timeout: 120_000 }).catch((error) => {
    throw new Error(`scripts/k8s-testenv restart-apiserver failed: ${error.stderr ?? error.message}`);
  });
  void restart;
  const finals = await Promise.all(controllers.map((c) => c.awaitTerminated(300_000)));
  for (const f of finals) assert.equal(f.state, 'COMPLETED');
  for (const [runId, states] of seen) {
    assert.deepEqual(states.slice(-2), ['RUNNING', 'COMPLETED'], `${runId} saw ${states.join(' -> ')}`);
  }
  // And the tracker still follows new runs after the restart.
  const c = await runner.prepare(job).start();
  assert.equal((await c.awaitTerminated(180_000)).state, 'COMPLETED');
});
