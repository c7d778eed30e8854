// Batch and service runs on the real control plane (kwok nodes): states, failures explained, scaling, stop.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { AppsV1Api, BatchV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { parseAppSpec, Runner, type RunState } from '../../src/runtime/index.js';
import type { KubeRuntime } from '../../src/runtime/kube/index.js';
import { KWOK, runtimeFor, testNamespace, waitForStatus } from './helpers.js';

let ns: { name: string; drop: () => Promise<void> };
let runtime: KubeRuntime;
let runner: Runner;

before(async () => {
  ns = await testNamespace('weft-life');
  runtime = await runtimeFor(ns.name);
  runner = new Runner(runtime);
});
after(async () => {
  await runtime?.close();
  await ns?.drop();
});

function batch(name: string, extra: Record<string, unknown> = {}, appExtra: Record<string, unknown> = {}) {
  return parseAppSpec({ name, startTimeout: '2m', ...appExtra, runnables: [{ name: 'main', kind: 'batch', image: 'registry.example/demo:1', ...extra }] });
}

test('a batch run goes PENDING, STARTING, RUNNING, COMPLETED', async () => {
  const spec = batch('ok', { kubernetes: { podAnnotations: { [KWOK.readyDelay]: '2s', [KWOK.completeDelay]: '2s' } } });
  const c = await runner.prepare(spec).start();
  const seen: RunState[] = [c.state];
  c.onChange((s) => {
    if (seen[seen.length - 1] !== s.state) seen.push(s.state);
  });
  const final = await c.awaitTerminated(150_000);
  assert.equal(final.state, 'COMPLETED');
  assert.deepEqual(seen, ['PENDING', 'STARTING', 'RUNNING', 'COMPLETED']);
  assert.equal(final.runnables[0].instances[0].state, 'COMPLETED');
  assert.equal(final.runnables[0].instances[0].id, '0');
});

test('a failing batch run ends FAILED with the reason and exit code', async () => {
  const spec = batch('fails', {
    kubernetes: {
      podLabels: { [KWOK.failed]: 'true' },
      podAnnotations: { [`${KWOK.failed}/exit-code`]: '3', [`${KWOK.failed}/reason`]: 'Error', [`${KWOK.failed}/message`]: 'input file missing' },
    },
  });
  const c = await runner.prepare(spec).start();
  const final = await c.awaitTerminated(150_000);
  assert.equal(final.state, 'FAILED');
  assert.equal(final.exitCode, 3);
  assert.equal(final.reason, 'Error');
  assert.match(final.message!, /main\/0 failed: exit code 3 \(Error\): input file missing/);
});

test('an OOMKilled batch run says so', async () => {
  const spec = batch('oom', {
    resources: { memory: '128Mi' },
    kubernetes: { podLabels: { [KWOK.failed]: 'true' }, podAnnotations: { [`${KWOK.failed}/exit-code`]: '137', [`${KWOK.failed}/reason`]: 'OOMKilled' } },
  });
  const final = await (await runner.prepare(spec).start()).awaitTerminated(150_000);
  assert.equal(final.state, 'FAILED');
  assert.equal(final.reason, 'OOMKilled');
  assert.equal(final.exitCode, 137);
  assert.match(final.message!, /OOMKilled \(exit code 137\).*128Mi/);
});

test('an unschedulable run fails at its start deadline with the scheduler\'s message', async () => {
  const spec = batch('huge', { resources: { cpu: '64', memory: '1Gi' } }, { startTimeout: '4s' });
  const c = await runner.prepare(spec).start();
  const pending = await waitForStatus(runtime, c.runId, (s) => /Insufficient cpu/.test(s.message ?? ''), 120_000, 'scheduler message');
  assert.equal(pending.state, 'PENDING');
  const final = await c.awaitTerminated(150_000);
  assert.equal(final.state, 'FAILED');
  assert.equal(final.reason, 'Unschedulable');
  assert.match(final.message!, /start deadline.*Insufficient cpu/);
  // weft removed the Job that could never start, and kept the verdict on the root.
  const kc = new KubeConfig();
  kc.loadFromDefault();
  const batchApi = kc.makeApiClient(BatchV1Api);
  let live: unknown[] = [];
  for (let i = 0; i < 40; i++) {
    const jobs = await batchApi.listNamespacedJob({ namespace: ns.name, labelSelector: `weft.io/run-id=${c.runId}` });
    live = jobs.items.filter((j) => !j.metadata?.deletionTimestamp);
    if (live.length === 0) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.equal(live.length, 0, 'the unschedulable Job is deleted');
  assert.equal((await runtime.status(c.runId))?.state, 'FAILED');
});

test('an image that cannot be pulled fails fast with that reason', async () => {
  const spec = batch('nopull', {
    image: 'registry.example/missing:404',
    kubernetes: { podLabels: { [KWOK.imagePull]: 'true' } },
  }, { startTimeout: '5m' });
  const started = Date.now();
  const final = await (await runner.prepare(spec).start()).awaitTerminated(150_000);
  assert.equal(final.state, 'FAILED');
  assert.ok(final.reason === 'ErrImagePull' || final.reason === 'ImagePullBackOff', `reason ${final.reason}`);
  assert.match(final.message!, /cannot pull image registry\.example\/missing:404/);
  assert.ok(Date.now() - started < 5 * 60_000, 'failed before the 5 minute start deadline');
});

test('a service with 3 instances runs, scales to 5 and back to 1, and stop removes every object', async () => {
  const spec = parseAppSpec({
    name: 'web',
    runnables: [{ name: 'api', kind: 'service', image: 'registry.example/web:1', instances: 3, ports: [{ name: 'http', port: 8080 }] }],
  });
  const c = await runner.prepare(spec).start();
  const running = await c.onRunning();
  assert.equal(running.state, 'RUNNING');
  const countRunning = (n: number) => (s: { runnables: Array<{ running: number; instances: unknown[] }> }) => s.runnables[0].running === n && s.runnables[0].instances.length === n;
  await waitForStatus(runtime, c.runId, countRunning(3), 120_000, '3 running');
  const endpoints = await c.discoverService('http');
  assert.equal(endpoints.length, 3);
  assert.ok(endpoints.every((e) => e.port === 8080 && e.host.length > 0));

  await c.changeInstances('api', 5);
  const five = await waitForStatus(runtime, c.runId, countRunning(5), 120_000, '5 running');
  assert.equal(five.runnables[0].desired, 5);
  await c.changeInstances('api', 1);
  const one = await waitForStatus(runtime, c.runId, countRunning(1), 120_000, '1 running');
  assert.equal(one.runnables[0].desired, 1);
  assert.equal(one.state, 'RUNNING');

  const report = await c.getResourceReport();
  assert.equal(report.instances.length, 1);
  assert.ok(report.instances[0].host?.startsWith('kwok-node-'));

  await c.sendCommand('reload', { payload: 'now' });
  const kc = new KubeConfig();
  kc.loadFromDefault();
  const core = kc.makeApiClient(CoreV1Api);
  const pods = await core.listNamespacedPod({ namespace: ns.name, labelSelector: `weft.io/run-id=${c.runId}` });
  const live = pods.items.filter((p) => !p.metadata?.deletionTimestamp);
  assert.ok(live.length >= 1);
  const command = Object.entries(live[0].metadata!.annotations ?? {}).find(([k]) => k.startsWith('weft.io/command-'));
  assert.ok(command, 'the command is an annotation on the pod (seen by the program through the downward API file)');
  assert.equal(JSON.parse(command[1]).command, 'reload');

  const states: RunState[] = [c.state];
  c.onChange((s) => {
    if (states[states.length - 1] !== s.state) states.push(s.state);
  });
  await c.terminate();
  const final = await c.awaitTerminated(150_000);
  assert.equal(final.state, 'KILLED');
  assert.deepEqual(states, ['RUNNING', 'STOPPING', 'KILLED']);

  // Nothing of the run is left, of any kind.
  const sel = { namespace: ns.name, labelSelector: `weft.io/run-id=${c.runId}` };
  const apps = kc.makeApiClient(AppsV1Api);
  const batchApi = kc.makeApiClient(BatchV1Api);
  const deadline = Date.now() + 30_000;
  let left: string[] = [];
  do {
    const lists = await Promise.all([
      core.listNamespacedConfigMap(sel),
      core.listNamespacedService(sel),
      core.listNamespacedPod(sel),
      core.listNamespacedPersistentVolumeClaim(sel),
      apps.listNamespacedDeployment(sel),
      apps.listNamespacedReplicaSet(sel),
      apps.listNamespacedStatefulSet(sel),
      batchApi.listNamespacedJob(sel),
    ]);
    left = lists.flatMap((l) => l.items.map((i) => `${i.kind ?? ''}${i.metadata?.name}`));
    if (left.length === 0) break;
    await new Promise((r) => setTimeout(r, 500));
  } while (Date.now() < deadline);
  assert.deepEqual(left, [], 'every object of the run is gone');
});

test('kill stops at once; suspend and resume a batch run; bad requests say what to do', async () => {
  const spec = batch('susp', { instances: 2, kubernetes: { podAnnotations: { [KWOK.completeDelay]: '600s' } } });
  const c = await runner.prepare(spec).start();
  await c.onRunning();
  await c.suspend();
  await waitForStatus(runtime, c.runId, (s) => s.state === 'SUSPENDED', 120_000, 'SUSPENDED');
  await c.resume();
  await waitForStatus(runtime, c.runId, (s) => s.state === 'RUNNING' && s.runnables[0].running === 2, 120_000, 'RUNNING after resume');
  await assert.rejects(c.changeInstances('nope', 2), /has no runnable "nope".*main/);
  await assert.rejects(c.restartInstances('main'), /not supported.*backoffLimit 0/);
  await c.kill();
  const final = await c.awaitTerminated(30_000);
  assert.equal(final.state, 'KILLED');
  await assert.rejects(runtime.stop(c.runId), /no run .* in namespace/);
});

test('a build: section without a registry target is refused before anything is created', async () => {
  const spec = parseAppSpec({ name: 'built', runnables: [{ name: 'main', kind: 'batch', build: { jar: 'app.jar' } }] });
  await assert.rejects(runner.prepare(spec).start(), /needs target: docker:\/\/<registry>\/<repository>:<tag>/);
  assert.equal((await runtime.list({ app: 'built' })).length, 0);
});
