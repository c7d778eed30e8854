// Benchmarks of the Kubernetes runtime against the test control plane (kwok nodes).
//
//   node --expose-gc dist/bench/kube-runtime.js [--runs 20] [--track 1000] [--podded 250] [--namespace weft-bench]
//
// 1. time from submit (`weft run`, i.e. prepare().start()) to RUNNING, for weft and for the
//    peer `kubectl apply -f` + `kubectl rollout status` on the same Deployment shape;
// 2. pod status change -> weft state change: the bench writes a container termination into a
//    running batch pod's status (as a kubelet would) and times until weft reports FAILED;
// 3. tracking N concurrent runs (--podded of them with a pod, the rest services at 0 instances):
//    every submission's result is checked (REJECTED or failed submissions are listed with their
//    reason); then a FRESH process (bench/kube-track-fresh.ts, which did not create the runs)
//    tracks the namespace and reports its first sync, requests, watches and whole-process memory;
//    every submitted run must be found by it, RUNNING. Exits 1 when a run is missing or wrong.
// --runs 0 skips 1 and 2.
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { isTerminal, newRunId, parseAppSpec, Runner, type RunStatus } from '../src/runtime/index.js';
import { createKubeRuntime, type KubeRuntime } from '../src/runtime/kube/index.js';
import { countFlag, flag } from './args.js';

const run = promisify(execFile);
const RUNS = countFlag('runs', 20);
const TRACK = countFlag('track', 1000);
const PODDED = Math.min(TRACK, Number(flag('podded', '250'))); // the nodes' pod capacity bounds this (docs/kubernetes-testenv.md)
const CONCURRENCY = countFlag('concurrency', 8);
const STEADY_MS = Number(flag('steady', '60')) * 1000;
const RUNNING_TIMEOUT_MS = Number(flag('running-timeout', '1800')) * 1000;
const NS = flag('namespace', `weft-bench-${process.pid}`);
const KUBECTL = process.env.KUBECTL ?? 'kubectl';

if (!process.env.KUBECONFIG) throw new Error('KUBECONFIG is not set: eval "$(scripts/k8s-testenv up | tail -1)" first');

function stats(xs: number[]): { median: number; p99: number; n: number } {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
  return { median: at(0.5), p99: at(0.99), n: s.length };
}
const fmt = (x: number) => `${x.toFixed(1)} ms`;

function waitState(runtime: KubeRuntime, runId: string, pred: (s: RunStatus) => boolean): Promise<number> {
  return new Promise((resolve) => {
    const off = runtime.watch((s) => {
      if (s.runId === runId && pred(s)) {
        off();
        resolve(performance.now());
      }
    });
    void runtime.status(runId).then((s) => {
      if (s && pred(s)) {
        off();
        resolve(performance.now());
      }
    });
  });
}

const kc = new KubeConfig();
kc.loadFromDefault();
const core = kc.makeApiClient(CoreV1Api);
await core.createNamespace({ body: { metadata: { name: NS } } }).catch(() => undefined);
const dir = await mkdtemp(join(tmpdir(), 'weft-bench-'));
const runtime = await createKubeRuntime({ runtime: 'kubernetes', namespace: NS });
// Counts the ids drawn: more ids than submissions means some id was found taken and retried.
let idsDrawn = 0;
const runner = new Runner(runtime, { newRunId: (app) => (idsDrawn++, newRunId(app)) });
await runtime.list();

try {
  if (RUNS > 0) {
    // 1. submit -> RUNNING
    const svc = parseAppSpec({ name: 'bench', runnables: [{ name: 'web', kind: 'service', image: 'registry.example/web:1', instances: 1 }] });
    const weftTimes: number[] = [];
    const kubectlTimes: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t0 = performance.now();
      const c = await runner.prepare(svc).start();
      await c.onRunning();
      weftTimes.push(performance.now() - t0);
      await runtime.kill(c.runId);

      const name = `peer-${i}`;
      const file = join(dir, `${name}.yaml`);
      await writeFile(
        file,
        JSON.stringify({
          apiVersion: 'apps/v1',
          kind: 'Deployment',
          metadata: { name, namespace: NS },
          spec: { replicas: 1, selector: { matchLabels: { peer: name } }, template: { metadata: { labels: { peer: name } }, spec: { containers: [{ name: 'main', image: 'registry.example/web:1' }] } } },
        }),
      );
      const p0 = performance.now();
      await run(KUBECTL, ['apply', '-f', file]);
      await run(KUBECTL, ['rollout', 'status', `deployment/${name}`, '-n', NS, '--timeout=60s']);
      kubectlTimes.push(performance.now() - p0);
      await run(KUBECTL, ['delete', 'deployment', name, '-n', NS, '--wait=false']);
    }
    const w = stats(weftTimes);
    const k = stats(kubectlTimes);
    console.log(`submit -> RUNNING (n=${w.n}): weft median ${fmt(w.median)} p99 ${fmt(w.p99)}; kubectl apply+rollout status median ${fmt(k.median)} p99 ${fmt(k.p99)}; ratio ${(w.median / k.median).toFixed(2)}`);

    // 2. pod status change -> weft state change
    const job = parseAppSpec({
      name: 'lat',
      runnables: [{ name: 'main', kind: 'batch', image: 'registry.example/job:1', kubernetes: { podAnnotations: { 'pod-complete.stage.kwok.x-k8s.io/delay': '600s' } } }],
    });
    const fromSend: number[] = [];
    const fromAck: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const c = await runner.prepare(job).start();
      await c.onRunning();
      const pod = runtime.tracker.objects(c.runId)!.pods[0];
      const failed = waitState(runtime, c.runId, (s) => s.state === 'FAILED');
      const body = {
        status: {
          phase: 'Failed',
          containerStatuses: [{ name: 'main', image: 'registry.example/job:1', imageID: '', ready: false, restartCount: 0, state: { terminated: { exitCode: 9, reason: 'Error', startedAt: new Date(), finishedAt: new Date() } } }],
        },
      };
      const t0 = performance.now();
      await core.patchNamespacedPodStatus({ name: pod.metadata!.name!, namespace: NS, body }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
      const t1 = performance.now();
      const te = await failed;
      fromSend.push(te - t0);
      fromAck.push(te - t1);
      await runtime.kill(c.runId);
    }
    const a = stats(fromSend);
    const b = stats(fromAck);
    console.log(`pod status write -> weft FAILED (n=${a.n}): from send median ${fmt(a.median)} p99 ${fmt(a.p99)}; from the write's response median ${fmt(b.median)} p99 ${fmt(b.p99)}`);
  }

  // 3. tracking N concurrent runs
  // A long start timeout: with thousands of Deployments queued, the controller-manager (20 QPS per
  // controller) can take longer than the default 5 minutes to create the pods; this measures tracking, not that.
  const idle = parseAppSpec({ name: 'many', startTimeout: '1h', runnables: [{ name: 'web', kind: 'service', image: 'registry.example/web:1', instances: 0 }] });
  const withPod = parseAppSpec({ name: 'many', startTimeout: '1h', runnables: [{ name: 'web', kind: 'service', image: 'registry.example/web:1', instances: 1 }] });
  const c0 = performance.now();
  const drawnBefore = idsDrawn;
  // Every submission's result, not just its id: a REJECTED run must not go unnoticed.
  const submitted: Array<{ runId?: string; state: string; message?: string }> = [];
  const queue = Array.from({ length: TRACK }, (_, i) => i);
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
        try {
          const c = await runner.prepare(i < PODDED ? withPod : idle).start();
          submitted.push({ runId: c.runId, state: c.state, message: c.status.message });
          c.release();
        } catch (error) {
          submitted.push({ state: 'ERROR', message: (error as Error).message });
        }
        if (submitted.length % 1000 === 0) console.log(`  submitted ${submitted.length}/${TRACK} (${((performance.now() - c0) / 1000).toFixed(0)} s)`);
      }
    }),
  );
  const createSeconds = (performance.now() - c0) / 1000;
  const accepted = submitted.filter((x) => x.state === 'PENDING');
  const refused = submitted.filter((x) => x.state !== 'PENDING');
  const byState = (xs: Array<{ state: string }>) => xs.reduce<Record<string, number>>((acc, x) => ((acc[x.state] = (acc[x.state] ?? 0) + 1), acc), {});
  console.log(`submitted ${TRACK} runs (${PODDED} with a pod, ${CONCURRENCY} in flight) in ${createSeconds.toFixed(1)} s: ${JSON.stringify(byState(submitted))}; distinct ids ${new Set(accepted.map((x) => x.runId)).size}; ids found taken and retried ${idsDrawn - drawnBefore - TRACK}`);
  for (const x of refused.slice(0, 20)) console.log(`  NOT ACCEPTED ${x.runId ?? '(no id)'}: ${x.state}: ${x.message}`);

  // Wait until the cluster runs them all (pods of the podded runs scheduled and running), as seen by the creating process.
  const ids = new Set(accepted.map((x) => x.runId!));
  const w0 = performance.now();
  for (;;) {
    const states = (await runtime.list()).filter((st) => ids.has(st.runId));
    const running = states.filter((st) => st.state === 'RUNNING').length;
    if (running === ids.size) break;
    if (states.length === ids.size && states.every((st) => st.state === 'RUNNING' || isTerminal(st.state))) {
      console.log(`  ${ids.size - running} runs ended instead of running (creating process's view): ${JSON.stringify(byState(states))}`);
      break;
    }
    if (performance.now() - w0 > RUNNING_TIMEOUT_MS) {
      console.log(`  only ${running}/${ids.size} RUNNING after ${RUNNING_TIMEOUT_MS / 1000} s (creating process's view): ${JSON.stringify(byState(states))}`);
      break;
    }
    console.log(`  ${running}/${ids.size} RUNNING (${((performance.now() - w0) / 1000).toFixed(0)} s): ${JSON.stringify(byState(states))}`);
    await new Promise((r) => setTimeout(r, 10_000));
  }
  console.log(`waited ${((performance.now() - w0) / 1000).toFixed(0)} s after the last submission for the runs to be RUNNING`);

  // The fresh tracker, in a process of its own.
  const resultFile = join(dir, 'fresh.json');
  const child = join(dirname(fileURLToPath(import.meta.url)), 'kube-track-fresh.js');
  await new Promise<void>((resolve, reject) => {
    const p = spawn(process.execPath, ['--expose-gc', child, NS, resultFile, String(STEADY_MS)], { stdio: ['ignore', 'inherit', 'inherit'] });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`the fresh tracker exited with ${code}`))));
  });
  const fresh = JSON.parse(await readFile(resultFile, 'utf8')) as {
    syncMs: number;
    syncRequests: { total: number; byKind: Record<string, number> };
    watches: number;
    memory: Record<string, number>;
    steady: { seconds: number; requests: number; perSecond: number };
    runs: Array<{ runId: string; app: string; state: string; message?: string }>;
  };
  const foundById = new Map(fresh.runs.map((r) => [r.runId, r]));
  const missing = [...ids].filter((id) => !foundById.has(id));
  const wrong = [...ids].flatMap((id) => {
    const r = foundById.get(id);
    return r && r.state !== 'RUNNING' ? [r] : [];
  });
  const found = ids.size - missing.length;
  console.log(
    `fresh process tracking ${found}/${TRACK} submitted runs (${fresh.runs.length} runs in the namespace): first sync ${fresh.syncMs} ms with ${fresh.syncRequests.total} requests (${JSON.stringify(fresh.syncRequests.byKind)}), ${fresh.watches} watches; ` +
      `memory ${JSON.stringify(fresh.memory)}; steady state ${fresh.steady.perSecond.toFixed(3)} requests/s over ${fresh.steady.seconds} s`,
  );
  console.log(`check: ${found} found, ${missing.length} missing, ${wrong.length} not RUNNING, ${refused.length} not accepted at submission (${JSON.stringify(byState(refused))})`);
  for (const id of missing.slice(0, 20)) console.log(`  MISSING ${id}`);
  for (const r of wrong.slice(0, 20)) console.log(`  WRONG STATE ${r.runId}: ${r.state}: ${r.message}`);
  if (missing.length || wrong.length || refused.length) process.exitCode = 1;
} finally {
  await runtime.close();
  await core.deleteNamespace({ name: NS }).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
}
