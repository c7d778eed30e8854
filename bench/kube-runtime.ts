// Benchmarks of the Kubernetes runtime against the test control plane (kwok nodes).
//
//   node dist/bench/kube-runtime.js [--runs 20] [--track 1000] [--namespace weft-bench]
//
// 1. time from submit (`weft run`, i.e. prepare().start()) to RUNNING, for weft and for the
//    peer `kubectl apply -f` + `kubectl rollout status` on the same Deployment shape;
// 2. pod status change -> weft state change: the bench writes a container termination into a
//    running batch pod's status (as a kubelet would) and times until weft reports FAILED;
// 3. tracking N concurrent runs: memory of a fresh tracker and its API requests per second,
//    at start-up (the lists) and in steady state.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { parseAppSpec, Runner, type RunStatus } from '../src/runtime/index.js';
import { createKubeRuntime, type KubeRuntime } from '../src/runtime/kube/index.js';

const run = promisify(execFile);
const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const RUNS = Number(arg('runs', '20'));
const TRACK = Number(arg('track', '1000'));
const NS = arg('namespace', `weft-bench-${process.pid}`);
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
const runner = new Runner(runtime);
await runtime.list();

try {
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

  // 3. tracking N concurrent runs
  const idle = parseAppSpec({ name: 'many', runnables: [{ name: 'web', kind: 'service', image: 'registry.example/web:1', instances: 0 }] });
  const withPod = parseAppSpec({ name: 'many', runnables: [{ name: 'web', kind: 'service', image: 'registry.example/web:1', instances: 1 }] });
  const podded = Math.min(TRACK, 250); // kwok nodes hold 110 pods each; the rest run with 0 instances
  const c0 = performance.now();
  const ids: string[] = [];
  const queue = Array.from({ length: TRACK }, (_, i) => i);
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let i = queue.shift(); i !== undefined; i = queue.shift()) ids.push((await runner.prepare(i < podded ? withPod : idle).start()).runId);
    }),
  );
  console.log(`created ${TRACK} runs (${podded} with a pod) in ${((performance.now() - c0) / 1000).toFixed(1)} s`);
  await new Promise((r) => setTimeout(r, 10_000));
  if (global.gc) global.gc();
  const before = process.memoryUsage();
  const fresh = await createKubeRuntime({ runtime: 'kubernetes', namespace: NS });
  const s0 = performance.now();
  const found = await fresh.list();
  const syncMs = performance.now() - s0;
  if (global.gc) global.gc();
  const afterSync = process.memoryUsage();
  const reqStart = fresh.requests.total;
  const steadyMs = 60_000;
  await new Promise((r) => setTimeout(r, steadyMs));
  const steadyReq = fresh.requests.total - reqStart;
  console.log(
    `tracking ${found.filter((s) => s.app === 'many').length} runs: first sync ${syncMs.toFixed(0)} ms with ${reqStart} requests (${JSON.stringify(fresh.requests.byKind)}); ` +
      `heap +${((afterSync.heapUsed - before.heapUsed) / 2 ** 20).toFixed(1)} MiB, rss +${((afterSync.rss - before.rss) / 2 ** 20).toFixed(1)} MiB (rss ${(afterSync.rss / 2 ** 20).toFixed(0)} MiB); ` +
      `steady state ${(steadyReq / (steadyMs / 1000)).toFixed(3)} requests/s over ${steadyMs / 1000} s; events handled ${JSON.stringify(fresh.tracker.eventCounts)}`,
  );
  await fresh.close();
} finally {
  await runtime.close();
  await core.deleteNamespace({ name: NS }).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
}
