// Run ids on the real control plane: a submission that meets a taken id (forced by a repeating
// random source) retries with a new id and never adopts, changes or deletes the other run's objects;
// a resumable submission (the master's) completes its own earlier attempt that was cut short.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { AppsV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { createRunIdGenerator, parseAppSpec, RunIdTakenError, Runner, type RunIdGenerator } from '../../src/runtime/index.js';
import type { KubeRuntime } from '../../src/runtime/kube/index.js';
import { ownerReferenceTo } from '../../src/runtime/kube/render.js';
import { runtimeFor, testNamespace, waitForStatus } from './helpers.js';

let ns: { name: string; drop: () => Promise<void> };
let runtime: KubeRuntime;
let core: CoreV1Api;
let apps: AppsV1Api;

before(async () => {
  ns = await testNamespace('weft-runid');
  runtime = await runtimeFor(ns.name);
  const kc = new KubeConfig();
  kc.loadFromDefault();
  core = kc.makeApiClient(CoreV1Api);
  apps = kc.makeApiClient(AppsV1Api);
});
after(async () => {
  await runtime?.close();
  await ns?.drop();
});

/** Ids from a stopped clock and a random source whose first `repeats` draws are the same bytes. */
function repeatingIds(repeats: number, seed: number): { next: RunIdGenerator; made: string[] } {
  let draw = 0;
  const made: string[] = [];
  const generate = createRunIdGenerator({
    now: () => 1_764_000_000_000 + seed,
    randomBytes: () => (draw++ < repeats ? Uint8Array.of(seed, 1, 2, 3, 4) : Uint8Array.of(seed, 9, 9, 9, draw)),
  });
  return {
    next: (app) => {
      const id = generate(app);
      made.push(id);
      return id;
    },
    made,
  };
}

const service = (env: string) =>
  parseAppSpec({ name: 'dup', runnables: [{ name: 'web', kind: 'service', image: 'registry.example/web:1', env: { RUN: env }, ports: [{ name: 'http', port: 8080 }] }] });

test('the second submission with a repeated id gets a new id; both runs exist, each with its own objects', { timeout: 120_000 }, async () => {
  const ids = repeatingIds(2, 1);
  const runner = new Runner(runtime, { newRunId: ids.next });
  const first = await runner.prepare(service('first')).start();
  const second = await runner.prepare(service('second')).start();
  // Accepted (the controller may already have caught up with later states).
  assert.notEqual(first.state, 'REJECTED', first.status.message);
  assert.notEqual(second.state, 'REJECTED', second.status.message);
  assert.deepEqual(ids.made, [first.runId, first.runId, second.runId], 'the second submission met the first id, then drew a new one');
  assert.notEqual(second.runId, first.runId);

  for (const [c, env] of [
    [first, 'first'],
    [second, 'second'],
  ] as const) {
    const root = await core.readNamespacedConfigMap({ name: c.runId, namespace: ns.name });
    assert.equal(JSON.parse(root.data!['spec.json']).runnables[0].env.RUN, env, `root ${c.runId} holds its own spec`);
    const deployment = await apps.readNamespacedDeployment({ name: `${c.runId}-web`, namespace: ns.name });
    assert.deepEqual(
      deployment.metadata!.ownerReferences!.map((o) => o.uid),
      [root.metadata!.uid],
      `Deployment ${c.runId}-web is owned by its own root only`,
    );
    assert.equal(deployment.spec!.template.spec!.containers[0].env!.find((e) => e.name === 'RUN')!.value, env);
    const svc = await core.readNamespacedService({ name: `${c.runId}-web`, namespace: ns.name });
    assert.deepEqual(svc.metadata!.ownerReferences!.map((o) => o.uid), [root.metadata!.uid]);
    await waitForStatus(runtime, c.runId, (s) => s.state === 'RUNNING', 60_000, 'RUNNING');
  }
  const listed = (await runtime.list({ app: 'dup' })).map((s) => s.runId);
  assert.ok(listed.includes(first.runId) && listed.includes(second.runId), `both runs are tracked: ${listed.join(', ')}`);
  await runtime.kill(first.runId);
  await runtime.kill(second.runId);
});

test("an object left by an earlier run with the id is not adopted: the submission retries, the leftover stays as it was", { timeout: 120_000 }, async () => {
  const ids = repeatingIds(1, 2);
  const takenId = createRunIdGenerator({ now: () => 1_764_000_000_002, randomBytes: () => Uint8Array.of(2, 1, 2, 3, 4) })('dup');
  // What a run deleted in the background can leave for a while: its Deployment, without a root.
  const leftover = await apps.createNamespacedDeployment({
    namespace: ns.name,
    body: {
      metadata: { name: `${takenId}-web`, labels: { 'weft.io/test': 'leftover' } },
      spec: {
        replicas: 0,
        selector: { matchLabels: { leftover: takenId } },
        template: { metadata: { labels: { leftover: takenId } }, spec: { containers: [{ name: 'main', image: 'registry.example/old:1' }] } },
      },
    },
  });
  const runner = new Runner(runtime, { newRunId: ids.next });
  const c = await runner.prepare(service('third')).start();
  assert.equal(ids.made[0], takenId, 'the first id drawn was the taken one');
  assert.notEqual(c.runId, takenId);
  assert.notEqual(c.state, 'REJECTED', c.status.message);

  const after = await apps.readNamespacedDeployment({ name: `${takenId}-web`, namespace: ns.name });
  assert.equal(after.metadata!.uid, leftover.metadata!.uid, 'the leftover was not replaced');
  assert.equal(after.metadata!.ownerReferences, undefined, 'nor adopted by the refused attempt');
  assert.equal(after.spec!.template.spec!.containers[0].image, 'registry.example/old:1');
  // The refused attempt's own root is deleted (foreground deletion may take a moment).
  const deadline = Date.now() + 30_000;
  for (;;) {
    const gone = await core.readNamespacedConfigMap({ name: takenId, namespace: ns.name }).then(() => false, () => true);
    if (gone) break;
    assert.ok(Date.now() < deadline, `the refused attempt's root ${takenId} is still there`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const deployment = await apps.readNamespacedDeployment({ name: `${c.runId}-web`, namespace: ns.name });
  assert.equal(deployment.spec!.template.spec!.containers[0].env!.find((e) => e.name === 'RUN')!.value, 'third');
  await waitForStatus(runtime, c.runId, (s) => s.state === 'RUNNING', 60_000, 'RUNNING');
  await runtime.kill(c.runId);
});

test('a resumable submission cut short after its root (its submitter died) is completed by the next attempt, once; another request with the id is refused', { timeout: 120_000 }, async () => {
  const runId = createRunIdGenerator({ now: () => 1_764_000_000_003, randomBytes: () => Uint8Array.of(3, 1, 2, 3, 4) })('dup');
  const request = { runId, spec: service('resumed'), files: [], resumable: true };
  // What a master SIGKILLed in the middle of submit leaves: the root and the first of the children (the Service).
  const { rendered } = await runtime.render(request);
  assert.ok(rendered.services.length === 1 && rendered.deployments.length === 1, 'a service renders a Service and a Deployment');
  const root = await core.createNamespacedConfigMap({ namespace: ns.name, body: rendered.root });
  const service0 = await core.createNamespacedService({ namespace: ns.name, body: { ...rendered.services[0]!, metadata: { ...rendered.services[0]!.metadata, ownerReferences: [ownerReferenceTo(root)] } } });
  await assert.rejects(apps.readNamespacedDeployment({ name: `${runId}-web`, namespace: ns.name }), 'no Deployment yet: the submission was cut short before it');

  // Not resumable (a CLI submission): the id is taken, nothing changes.
  await assert.rejects(runtime.submit({ ...request, resumable: false }), RunIdTakenError);
  // Resumable, but another request (another spec) with the same id: refused too.
  await assert.rejects(runtime.submit({ ...request, spec: service('someone else') }), RunIdTakenError);
  await assert.rejects(apps.readNamespacedDeployment({ name: `${runId}-web`, namespace: ns.name }), 'the refused attempts created nothing');

  // The same request again (the next master's hand-over): completed, with the first attempt's root and Service.
  const status = await runtime.submit(request);
  assert.equal(status.state, 'PENDING', status.message);
  const rootAfter = await core.readNamespacedConfigMap({ name: runId, namespace: ns.name });
  assert.equal(rootAfter.metadata!.uid, root.metadata!.uid, 'the root of the first attempt is kept');
  assert.equal(status.createdAt, root.metadata!.annotations!['weft.io/created'], 'the run keeps its creation time');
  const svc = await core.readNamespacedService({ name: `${runId}-web`, namespace: ns.name });
  assert.equal(svc.metadata!.uid, service0.metadata!.uid, 'the Service the first attempt created is kept');
  const deployment = await apps.readNamespacedDeployment({ name: `${runId}-web`, namespace: ns.name });
  assert.deepEqual(deployment.metadata!.ownerReferences!.map((o) => o.uid), [root.metadata!.uid], 'the Deployment is owned by that root');
  assert.equal(deployment.spec!.template.spec!.containers[0].env!.find((e) => e.name === 'RUN')!.value, 'resumed');
  await waitForStatus(runtime, runId, (s) => s.state === 'RUNNING', 60_000, 'RUNNING');

  // Once more (a leader finding it whole): nothing is created twice, the run keeps going.
  const again = await runtime.submit(request);
  assert.notEqual(again.state, 'REJECTED', again.message);
  const deployments = await apps.listNamespacedDeployment({ namespace: ns.name, labelSelector: `weft.io/run-id=${runId}` });
  assert.deepEqual(deployments.items.map((d) => d.metadata!.uid), [deployment.metadata!.uid], 'one Deployment, the same one');
  assert.equal((await runtime.status(runId))?.state, 'RUNNING');
  await runtime.kill(runId);
});
