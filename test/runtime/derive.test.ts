import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { V1ConfigMap, V1Job, V1Pod } from '@kubernetes/client-node';
import { parseAppSpecYaml } from '../../src/runtime/index.js';
import { deriveRun, renderRun } from '../../src/runtime/kube/index.js';
import { slimJob, slimPod, slimRoot, slimWorkload } from '../../src/runtime/kube/tracker.js';

const spec = parseAppSpecYaml(`
name: demo
startTimeout: 60s
runnables:
  - { name: main, kind: batch, image: r/demo:1, instances: 1, resources: { memory: 256Mi } }
`);
const created = Date.parse('2026-01-01T00:00:00Z');
const rendered = renderRun({ runId: 'demo-1', spec, files: [] }, { namespace: 'ns', now: created });
const root: V1ConfigMap = { ...rendered.root, metadata: { ...rendered.root.metadata, uid: 'u' } };
const job: V1Job = rendered.jobs[0];

function pod(status: V1Pod['status'], extra: Partial<V1Pod['spec']> = {}): V1Pod {
  return {
    metadata: { name: 'demo-1-main-0-abc', labels: { 'weft.io/run-id': 'demo-1', 'weft.io/runnable': 'main' }, annotations: { 'batch.kubernetes.io/job-completion-index': '0' } },
    spec: { containers: [{ name: 'main' }], ...extra },
    status,
  };
}
const at = created + 1000;

test('no pods yet: PENDING', () => {
  const s = deriveRun('demo-1', { root, jobs: [job], deployments: [], statefulSets: [], pods: [] }, at);
  assert.equal(s.state, 'PENDING');
  assert.equal(s.runnables[0].desired, 1);
});

test('scheduled, container creating: STARTING; running main container: RUNNING', () => {
  const creating = pod({ phase: 'Pending', containerStatuses: [{ name: 'main', image: 'r/demo:1', imageID: '', ready: false, restartCount: 0, state: { waiting: { reason: 'ContainerCreating' } } }] }, { nodeName: 'n1' });
  assert.equal(deriveRun('demo-1', { root, jobs: [job], deployments: [], statefulSets: [], pods: [creating] }, at).state, 'STARTING');
  const running = pod({ phase: 'Running', containerStatuses: [{ name: 'main', image: 'r/demo:1', imageID: '', ready: true, restartCount: 0, state: { running: { startedAt: new Date(at) } } }] }, { nodeName: 'n1' });
  const s = deriveRun('demo-1', { root, jobs: [job], deployments: [], statefulSets: [], pods: [running] }, at);
  assert.equal(s.state, 'RUNNING');
  assert.equal(s.runnables[0].instances[0].id, '0');
  assert.equal(s.runnables[0].instances[0].host, 'n1');
});

test('a sidecar keeps the pod Running, but the main container decides', () => {
  const p = pod({
    phase: 'Running',
    containerStatuses: [
      { name: 'sidecar', image: 's', imageID: '', ready: true, restartCount: 0, state: { running: {} } },
      { name: 'main', image: 'r/demo:1', imageID: '', ready: false, restartCount: 0, state: { waiting: { reason: 'ContainerCreating' } } },
    ],
  }, { nodeName: 'n1' });
  assert.equal(deriveRun('demo-1', { root, jobs: [job], deployments: [], statefulSets: [], pods: [p] }, at).state, 'STARTING');
});

test('OOMKilled says so, with the limit and what to do', () => {
  const p = pod({ phase: 'Failed', containerStatuses: [{ name: 'main', image: 'r', imageID: '', ready: false, restartCount: 0, state: { terminated: { exitCode: 137, reason: 'OOMKilled' } } }] });
  const s = deriveRun('demo-1', { root, jobs: [job], deployments: [], statefulSets: [], pods: [p] }, at);
  assert.equal(s.state, 'FAILED');
  assert.equal(s.exitCode, 137);
  assert.equal(s.reason, 'OOMKilled');
  assert.match(s.message!, /OOMKilled \(exit code 137\).*256Mi.*raise resources\.memory/);
});

test('a failing container reports reason, exit code and message', () => {
  const p = pod({ phase: 'Failed', containerStatuses: [{ name: 'main', image: 'r', imageID: '', ready: false, restartCount: 0, state: { terminated: { exitCode: 3, reason: 'Error', message: 'no input file' } } }] });
  const s = deriveRun('demo-1', { root, jobs: [job], deployments: [], statefulSets: [], pods: [p] }, at);
  assert.equal(s.state, 'FAILED');
  assert.equal(s.exitCode, 3);
  assert.match(s.message!, /main\/0 failed: exit code 3 \(Error\): no input file/);
});

test('image pull errors fail fast', () => {
  const p = pod({ phase: 'Pending', containerStatuses: [{ name: 'main', image: 'r/nope:1', imageID: '', ready: false, restartCount: 0, state: { waiting: { reason: 'ImagePullBackOff', message: 'Back-off pulling image "r/nope:1"' } } }] }, { nodeName: 'n' });
  const s = deriveRun('demo-1', { root, jobs: [job], deployments: [], statefulSets: [], pods: [p] }, at);
  assert.equal(s.state, 'FAILED');
  assert.equal(s.reason, 'ImagePullBackOff');
  assert.equal(s.decidedByWeft, true);
  assert.match(s.message!, /cannot pull image r\/nope:1: ImagePullBackOff/);
});

test('unschedulable: PENDING with the scheduler message, FAILED at the start deadline', () => {
  const p = pod({ phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/3 nodes are available: 3 Insufficient cpu.' }] });
  const objects = { root, jobs: [job], deployments: [], statefulSets: [], pods: [p] };
  const before = deriveRun('demo-1', objects, at);
  assert.equal(before.state, 'PENDING');
  assert.match(before.message!, /Insufficient cpu/);
  assert.equal(before.deadline, created + 60_000);
  const after = deriveRun('demo-1', objects, created + 61_000);
  assert.equal(after.state, 'FAILED');
  assert.equal(after.reason, 'Unschedulable');
  assert.match(after.message!, /start deadline.*0\/3 nodes are available: 3 Insufficient cpu/);
});

test('crash loop explains the last termination', () => {
  const p = pod({ phase: 'Running', containerStatuses: [{ name: 'main', image: 'r', imageID: '', ready: false, restartCount: 4, state: { waiting: { reason: 'CrashLoopBackOff' } }, lastState: { terminated: { exitCode: 2, reason: 'Error', message: 'bad config' } } }] }, { nodeName: 'n' });
  const s = deriveRun('demo-1', { root, jobs: [job], deployments: [], statefulSets: [], pods: [p] }, at);
  assert.equal(s.state, 'STARTING');
  assert.match(s.message!, /CrashLoopBackOff: .*exit code 2 \(Error\): bad config/);
});

test('complete Job: COMPLETED; suspended Job: SUSPENDED; recorded verdict wins; stop requested: STOPPING', () => {
  const done: V1Job = { ...job, status: { conditions: [{ type: 'Complete', status: 'True' }] } };
  assert.equal(deriveRun('demo-1', { root, jobs: [done], deployments: [], statefulSets: [], pods: [] }, at).state, 'COMPLETED');
  const suspended: V1Job = { ...job, spec: { ...job.spec!, suspend: true } };
  assert.equal(deriveRun('demo-1', { root, jobs: [suspended], deployments: [], statefulSets: [], pods: [] }, at).state, 'SUSPENDED');
  const recorded: V1ConfigMap = { ...root, metadata: { ...root.metadata, annotations: { ...root.metadata!.annotations, 'weft.io/state': 'FAILED', 'weft.io/message': 'm', 'weft.io/exit-code': '4' } } };
  const r = deriveRun('demo-1', { root: recorded, jobs: [], deployments: [], statefulSets: [], pods: [] }, at);
  assert.deepEqual([r.state, r.message, r.exitCode], ['FAILED', 'm', 4]);
  const stopping: V1ConfigMap = { ...root, metadata: { ...root.metadata, deletionTimestamp: new Date(at) } };
  assert.equal(deriveRun('demo-1', { root: stopping, jobs: [job], deployments: [], statefulSets: [], pods: [] }, at).state, 'STOPPING');
});

test('with a readiness probe, a running main container that is not ready is STARTING (NotReady), then RUNNING once ready', () => {
  const probe: NonNullable<V1Pod['spec']>['containers'][number]['readinessProbe'] = { tcpSocket: { port: 'http' } };
  const status = (ready: boolean): V1Pod['status'] => ({ phase: 'Running', containerStatuses: [{ name: 'main', image: 'r/demo:1', imageID: '', ready, restartCount: 0, state: { running: { startedAt: new Date(at) } } }] });
  const notReady = pod(status(false), { nodeName: 'n1', containers: [{ name: 'main', readinessProbe: probe }] });
  const s = deriveRun('demo-1', { root, jobs: [job], deployments: [], statefulSets: [], pods: [notReady] }, at);
  assert.equal(s.state, 'STARTING');
  assert.equal(s.runnables[0].instances[0].reason, 'NotReady');
  // The tracker's slim copy keeps the fact that a probe exists.
  assert.equal(deriveRun('demo-1', { root, jobs: [job], deployments: [], statefulSets: [], pods: [slimPod(notReady)] }, at).state, 'STARTING');
  const ready = pod(status(true), { nodeName: 'n1', containers: [{ name: 'main', readinessProbe: probe }] });
  assert.equal(deriveRun('demo-1', { root, jobs: [job], deployments: [], statefulSets: [], pods: [ready] }, at).state, 'RUNNING');
  // Without a probe, readiness is not waited for.
  const noProbe = pod(status(false), { nodeName: 'n1' });
  assert.equal(deriveRun('demo-1', { root, jobs: [job], deployments: [], statefulSets: [], pods: [noProbe] }, at).state, 'RUNNING');
});

test("the tracker's slim copies (no managedFields, pod specs, templates or files) derive exactly what the full objects do", () => {
  const multi = parseAppSpecYaml(`
name: multi
startTimeout: 60s
runnables:
  - { name: job, kind: batch, image: r/job:1, instances: 2 }
  - { name: web, kind: service, image: r/web:1, instances: 2 }
  - { name: db, kind: stateful, image: r/db:1, instances: 1, storage: { size: 1Gi } }
`);
  const run = renderRun({ runId: 'multi-1', spec: multi, files: [{ name: 'big.bin', data: Buffer.alloc(4096, 1) }] }, { namespace: 'ns', now: created });
  const managedFields = [{ manager: 'kube-controller-manager', operation: 'Update', fieldsType: 'FieldsV1', fieldsV1: { 'f:status': { '.': {} } } }];
  const withMeta = <T extends { metadata?: object }>(o: T, extra: object = {}): T => ({ ...o, metadata: { ...o.metadata, uid: 'uid-x', resourceVersion: '7', managedFields, ...extra } });
  const fullRoot = withMeta(run.root);
  const labelsOf = (runnable: string, extra: Record<string, string> = {}) => ({ 'weft.io/run-id': 'multi-1', 'weft.io/runnable': runnable, ...extra });
  const podOf = (name: string, runnable: string, status: V1Pod['status'], extra: Partial<V1Pod> = {}): V1Pod => ({
    metadata: { name, labels: labelsOf(runnable), annotations: { 'batch.kubernetes.io/job-completion-index': name.endsWith('1') ? '1' : '0' }, managedFields },
    spec: { nodeName: 'n1', containers: [{ name: 'main', image: `r/${runnable}:1`, env: [{ name: 'A', value: 'x'.repeat(500) }] }], volumes: [{ name: 'podinfo' }] },
    status,
    ...extra,
  });
  const running = (image: string): V1Pod['status'] => ({ phase: 'Running', podIP: '10.0.0.1', conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: new Date(at) }], containerStatuses: [{ name: 'main', image, imageID: '', ready: true, restartCount: 0, state: { running: { startedAt: new Date(at) } } }] });
  const cases: Array<{ what: string; root: V1ConfigMap; jobs: V1Job[]; pods: V1Pod[]; replicas?: number }> = [
    { what: 'all running', root: fullRoot, jobs: run.jobs.map((j) => withMeta(j)), pods: [podOf('j-0', 'job', running('r/job:1')), podOf('j-1', 'job', running('r/job:1')), podOf('w-a', 'web', running('r/web:1')), podOf('w-b', 'web', running('r/web:1')), podOf('db-0', 'db', running('r/db:1'))] },
    { what: 'image pull (image only in the pod spec)', root: fullRoot, jobs: run.jobs, pods: [podOf('w-a', 'web', { phase: 'Pending', containerStatuses: [{ name: 'main', image: undefined as unknown as string, imageID: '', ready: false, restartCount: 0, state: { waiting: { reason: 'ImagePullBackOff', message: 'back-off' } } }] })] },
    { what: 'unschedulable', root: fullRoot, jobs: run.jobs, pods: [podOf('w-a', 'web', { phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/3 nodes are available' }] }, { spec: { containers: [{ name: 'main' }] } })] },
    { what: 'a failed Job', root: fullRoot, jobs: [{ ...withMeta(run.jobs[0]), status: { conditions: [{ type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded', message: 'too many', lastTransitionTime: new Date(at) }] } }], pods: [] },
    { what: 'suspended, scaled', root: fullRoot, jobs: [{ ...run.jobs[0], spec: { ...run.jobs[0].spec!, suspend: true, parallelism: 5 } }], pods: [], replicas: 3 },
    { what: 'stopping, a pod being deleted', root: withMeta(run.root, { annotations: { ...run.root.metadata!.annotations, 'weft.io/stop-requested': 'now' } }), jobs: run.jobs, pods: [podOf('w-a', 'web', running('r/web:1'), { metadata: { name: 'w-a', labels: labelsOf('web'), deletionTimestamp: new Date(at) } })] },
    { what: 'a recorded verdict', root: withMeta(run.root, { annotations: { 'weft.io/state': 'FAILED', 'weft.io/message': 'm', 'weft.io/exit-code': '3' } }), jobs: run.jobs, pods: [] },
  ];
  for (const c of cases) {
    const deployments = run.deployments.map((d) => withMeta({ ...d, spec: { ...d.spec!, replicas: c.replicas ?? d.spec!.replicas } }));
    const statefulSets = run.statefulSets.map((s) => withMeta(s));
    const full = { root: c.root, jobs: c.jobs, deployments, statefulSets, pods: c.pods };
    const slim = { root: slimRoot(c.root), jobs: c.jobs.map(slimJob), deployments: deployments.map(slimWorkload), statefulSets: statefulSets.map(slimWorkload), pods: c.pods.map(slimPod) };
    for (const now of [at, created + 120_000]) assert.deepEqual(deriveRun('multi-1', slim, now), deriveRun('multi-1', full, now), `${c.what} at +${now - created} ms`);
    const text = JSON.stringify(slim);
    assert.ok(!text.includes('managedFields') && !text.includes('binaryData') && !text.includes('"template"') && !text.includes('"volumes"'), `${c.what}: the slim copies drop the heavy parts`);
  }
});
