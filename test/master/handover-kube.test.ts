// A master SIGKILLed in the middle of handing a run to Kubernetes leaves the run's root
// ConfigMap and none (or some) of its children. The next master completes that submission
// (the runtime's resumable submit: the root records a digest of the request) instead of
// recording a run that would never start and fail at its start deadline.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { AppsV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { openStore, startMaster, type RunningMaster } from '../../src/master/index.js';
import { parseAppSpec } from '../../src/runtime/index.js';
import type { KubeRuntime } from '../../src/runtime/kube/index.js';
import { runtimeFor, testNamespace } from '../runtime-kube/helpers.js';
import { tempDir } from '../support/temp.js';
import { waitFor } from './helpers.js';

let ns: { name: string; drop: () => Promise<void> };
let runtime: KubeRuntime;
let dir: string;
let master: RunningMaster | undefined;

before(async () => {
  ns = await testNamespace('weft-handover');
  runtime = await runtimeFor(ns.name);
  dir = await tempDir('weft-handover-kube-');
});
after(async () => {
  await master?.close();
  await runtime?.close();
  await ns?.drop();
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

test('a run whose master died after creating its root is completed by the next master: every object once, the run RUNNING', { timeout: 120_000 }, async () => {
  const kc = new KubeConfig();
  kc.loadFromDefault();
  const core = kc.makeApiClient(CoreV1Api);
  const apps = kc.makeApiClient(AppsV1Api);
  const storeUrl = `sqlite:${path.join(dir, 'master.db')}`;
  const handoverMs = 500;

  // What the dead master did: stored the run (admitted, not launched), created its root, and died.
  const spec = parseAppSpec({ name: 'cut', runnables: [{ name: 'web', kind: 'service', image: 'registry.example/web:1', ports: [{ name: 'http', port: 8080 }] }] }, 'test');
  const store = await openStore(storeUrl);
  const { run } = await store
    .createRun({ id: 'cut-1m8n00000000000a', namespace: 'crash', app: 'cut', spec, runtime: 'kubernetes', createdBy: 'test' }, { handoverMs })
    .finally(() => store.close());
  const { rendered } = await runtime.render({ runId: run.id, spec, files: [], resumable: true });
  const root = await core.createNamespacedConfigMap({ namespace: ns.name, body: rendered.root });
  await new Promise((r) => setTimeout(r, handoverMs + 100)); // its hand-over time ran out

  master = await startMaster({ addr: '127.0.0.1:0', store: storeUrl, runtime, adminTokenFile: path.join(dir, 'admin-token'), reconcileIntervalMs: 60_000, handoverTimeoutMs: handoverMs });
  const running = await waitFor('the run to be RUNNING in the store', async () => {
    const r = await master!.store.getRun(run.id);
    return r?.state === 'RUNNING' ? r : undefined;
  }, 60_000);
  assert.ok(running.launchedAt !== undefined, 'recorded as launched');
  const deployments = await apps.listNamespacedDeployment({ namespace: ns.name, labelSelector: `weft.io/run-id=${run.id}` });
  assert.equal(deployments.items.length, 1, 'one Deployment');
  assert.deepEqual(deployments.items[0]!.metadata!.ownerReferences!.map((o) => o.uid), [root.metadata!.uid], 'owned by the root the dead master created');
  const services = await core.listNamespacedService({ namespace: ns.name, labelSelector: `weft.io/run-id=${run.id}` });
  assert.equal(services.items.length, 1, 'one Service');
  const metrics = await master.metrics.registry.metrics();
  assert.match(metrics, /weft_master_reconciler_actions_total\{action="handover_taken_over"\} 1$/m);
  const states = (await master.store.history(run.id)).map((e) => e.to);
  assert.deepEqual(states.filter((s) => s === 'FAILED'), [], 'never FAILED');
  await runtime.kill(run.id);
});
