import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { V1ConfigMap, V1Job, V1Pod } from '@kubernetes/client-node';
import { parseAppSpecYaml } from '../../src/runtime/index.js';
import { deriveRun, renderRun } from '../../src/runtime/kube/index.js';

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
  const ready = pod(status(true), { nodeName: 'n1', containers: [{ name: 'main', readinessProbe: probe }] });
  assert.equal(deriveRun('demo-1', { root, jobs: [job], deployments: [], statefulSets: [], pods: [ready] }, at).state, 'RUNNING');
  // Without a probe, readiness is not waited for.
  const noProbe = pod(status(false), { nodeName: 'n1' });
  assert.equal(deriveRun('demo-1', { root, jobs: [job], deployments: [], statefulSets: [], pods: [noProbe] }, at).state, 'RUNNING');
});
