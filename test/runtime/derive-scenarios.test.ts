// The run-state rules (src/runtime/derive), each scenario told once and played
// against both backends' observations: Kubernetes objects through deriveRun,
// and the local backend's instance files and pids through instanceVerdict and
// runObservation. Both must reach the same state, reason and exit code
// (docs/run-state.md). A last group checks rules on the shared core alone.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { V1ConfigMap, V1ContainerStatus, V1Job, V1Pod } from '@kubernetes/client-node';
import { parseAppSpecYaml, type RunState } from '../../src/runtime/index.js';
import { deriveRunState, type RunObservation } from '../../src/runtime/derive/index.js';
import { deriveRun, renderRun } from '../../src/runtime/kube/index.js';
import { instanceVerdict, runObservation, type ObservedInstance, type RunRecord } from '../../src/runtime/local/index.js';

/** One instance, as a user would describe it. */
type Phase =
  | { phase: 'pending' }
  | { phase: 'starting' }
  | { phase: 'running' }
  | { phase: 'exited'; code: number }
  | { phase: 'crash-looping'; code: number };

interface Scenario {
  what: string;
  kind: 'batch' | 'service';
  desired: number;
  instances: Phase[];
  /** The run was seen RUNNING before. */
  reachedRunning?: boolean;
  /** Observed after the start deadline. */
  late?: boolean;
  /** A stop was asked for; `gone`: nothing of the run is left. */
  stop?: 'asked' | 'gone';
  suspended?: boolean;
  recorded?: { state: RunState; message: string; exitCode?: number };
  expect: { state: RunState; reason?: string; exitCode?: number; message?: RegExp };
}

const scenarios: Scenario[] = [
  { what: 'no instance yet', kind: 'batch', desired: 1, instances: [], expect: { state: 'PENDING', message: /waiting for instances to be created/ } },
  { what: 'an instance not placed yet', kind: 'service', desired: 1, instances: [{ phase: 'pending' }], expect: { state: 'PENDING' } },
  { what: 'an instance starting', kind: 'service', desired: 1, instances: [{ phase: 'starting' }], expect: { state: 'STARTING' } },
  { what: 'all instances running', kind: 'service', desired: 2, instances: [{ phase: 'running' }, { phase: 'running' }], expect: { state: 'RUNNING' } },
  { what: 'one of two instances running', kind: 'service', desired: 2, instances: [{ phase: 'running' }, { phase: 'starting' }], expect: { state: 'STARTING' } },
  { what: 'a batch: one done, one running', kind: 'batch', desired: 2, instances: [{ phase: 'exited', code: 0 }, { phase: 'running' }], expect: { state: 'RUNNING' } },
  {
    what: 'every instance exited 0',
    kind: 'batch',
    desired: 2,
    instances: [{ phase: 'exited', code: 0 }, { phase: 'exited', code: 0 }],
    expect: { state: 'COMPLETED', exitCode: 0, message: /every instance exited with code 0/ },
  },
  {
    what: 'a batch instance exits 3',
    kind: 'batch',
    desired: 2,
    instances: [{ phase: 'running' }, { phase: 'exited', code: 3 }],
    expect: { state: 'FAILED', reason: 'Error', exitCode: 3, message: /^instance main\/1 failed: .*3/ },
  },
  {
    what: 'a service crash-looping before it ever ran',
    kind: 'service',
    desired: 1,
    instances: [{ phase: 'crash-looping', code: 4 }],
    expect: { state: 'STARTING', reason: 'CrashLoopBackOff', message: /^instance main\/\S*0: .*4/ },
  },
  {
    what: 'a crash-looping service at its start deadline',
    kind: 'service',
    desired: 1,
    late: true,
    instances: [{ phase: 'crash-looping', code: 4 }],
    expect: { state: 'FAILED', reason: 'CrashLoopBackOff', exitCode: 4, message: /did not start before its start deadline .*instance main\/\S*0/ },
  },
  {
    what: 'nothing started by the start deadline',
    kind: 'service',
    desired: 1,
    late: true,
    instances: [],
    expect: { state: 'FAILED', reason: 'StartTimeout', message: /did not start before its start deadline/ },
  },
  {
    what: 'a service that ran, now crash-looping',
    kind: 'service',
    desired: 2,
    reachedRunning: true,
    instances: [{ phase: 'running' }, { phase: 'crash-looping', code: 4 }],
    expect: { state: 'RUNNING', reason: 'CrashLoopBackOff', message: /^instance main\/\S*1: .*4/ },
  },
  {
    what: 'a service that ran, crash-looping after its start deadline, stays RUNNING',
    kind: 'service',
    desired: 1,
    reachedRunning: true,
    late: true,
    instances: [{ phase: 'crash-looping', code: 4 }],
    expect: { state: 'RUNNING', reason: 'CrashLoopBackOff' },
  },
  { what: 'a stop asked, an instance still running', kind: 'service', desired: 1, stop: 'asked', instances: [{ phase: 'running' }], expect: { state: 'STOPPING', reason: 'Stopped' } },
  { what: 'a stop asked, nothing left', kind: 'service', desired: 1, stop: 'gone', instances: [], expect: { state: 'KILLED', reason: 'Stopped' } },
  { what: 'a suspended batch', kind: 'batch', desired: 1, suspended: true, instances: [], expect: { state: 'SUSPENDED', reason: 'Suspended' } },
  {
    what: 'a recorded verdict wins over what runs',
    kind: 'service',
    desired: 1,
    recorded: { state: 'FAILED', message: 'recorded', exitCode: 9 },
    instances: [{ phase: 'running' }],
    expect: { state: 'FAILED', exitCode: 9, message: /^recorded$/ },
  },
];

const created = Date.parse('2026-01-01T00:00:00Z');
const startTimeoutMs = 60_000;
const timeOf = (s: Scenario) => created + (s.late ? startTimeoutMs + 1_000 : 1_000);

function specOf(s: Scenario) {
  return parseAppSpecYaml(`
name: demo
startTimeout: 60s
runnables:
  - { name: main, kind: ${s.kind}, image: r/demo:1, instances: ${s.desired} }
`);
}

// ---------------------------------------------------------------------------
// Kubernetes: the objects the API server would hold in each scenario. A service's
// instance id there is its pod's name (a Deployment has no index), hence `main/\S*1`.

function kubePod(p: Phase, index: number): V1Pod {
  const meta = {
    name: `demo-1-main-${index}`,
    labels: { 'weft.io/run-id': 'demo-1', 'weft.io/runnable': 'main' },
    annotations: { 'batch.kubernetes.io/job-completion-index': String(index) },
  };
  const status = (state: V1ContainerStatus, phase: string): V1Pod['status'] => ({ phase, containerStatuses: [state] });
  const container = { name: 'main', image: 'r/demo:1', imageID: '', ready: true, restartCount: 0 };
  const spec = { containers: [{ name: 'main' }], nodeName: 'n1' };
  switch (p.phase) {
    case 'pending':
      return { metadata: meta, spec: { containers: [{ name: 'main' }] }, status: { phase: 'Pending' } };
    case 'starting':
      return { metadata: meta, spec, status: status({ ...container, ready: false, state: { waiting: { reason: 'ContainerCreating' } } }, 'Pending') };
    case 'running':
      return { metadata: meta, spec, status: status({ ...container, state: { running: { startedAt: new Date(created) } } }, 'Running') };
    case 'exited':
      return { metadata: meta, spec, status: status({ ...container, ready: false, state: { terminated: { exitCode: p.code, reason: p.code === 0 ? 'Completed' : 'Error' } } }, p.code === 0 ? 'Succeeded' : 'Failed') };
    case 'crash-looping':
      return {
        metadata: meta,
        spec,
        status: status({ ...container, ready: false, restartCount: 2, state: { waiting: { reason: 'CrashLoopBackOff' } }, lastState: { terminated: { exitCode: p.code, reason: 'Error' } } }, 'Running'),
      };
  }
}

function kubeVerdict(s: Scenario) {
  const rendered = renderRun({ runId: 'demo-1', spec: specOf(s), files: [] }, { namespace: 'ns', now: created });
  const annotations: Record<string, string> = { ...rendered.root.metadata!.annotations };
  if (s.stop) annotations['weft.io/stop-requested'] = new Date(created).toISOString();
  if (s.recorded) {
    annotations['weft.io/state'] = s.recorded.state;
    annotations['weft.io/message'] = s.recorded.message;
    if (s.recorded.exitCode !== undefined) annotations['weft.io/exit-code'] = String(s.recorded.exitCode);
  }
  const root: V1ConfigMap | undefined = s.stop === 'gone' ? undefined : { ...rendered.root, metadata: { ...rendered.root.metadata, annotations } };
  const pods = s.instances.map((p, i) => kubePod(p, i));
  // The Job controller's verdict: Complete once every index exited 0.
  const allDone = s.instances.length >= s.desired && s.instances.every((p) => p.phase === 'exited' && p.code === 0);
  const jobs: V1Job[] = rendered.jobs.map((j) => ({
    ...j,
    spec: { ...j.spec!, suspend: s.suspended ? true : j.spec!.suspend },
    status: allDone ? { conditions: [{ type: 'Complete', status: 'True' }] } : {},
  }));
  return deriveRun('demo-1', { root, jobs, deployments: rendered.deployments, statefulSets: [], pods }, timeOf(s), { reachedRunning: s.reachedRunning });
}

// ---------------------------------------------------------------------------
// Local: the record and what each instance's files and supervisor say.

function localVerdict(s: Scenario) {
  const spec = specOf(s);
  const now = timeOf(s);
  const stopping = s.stop !== undefined;
  const observed: ObservedInstance[] = s.instances.map((p, i) => {
    const record = { id: String(i), supervisorPid: p.phase === 'pending' ? undefined : 1000 + i };
    const alive = p.phase === 'starting' || p.phase === 'running' || p.phase === 'crash-looping';
    const verdict = instanceVerdict({
      kind: s.kind,
      record,
      alive,
      exitCode: p.phase === 'exited' || p.phase === 'crash-looping' ? p.code : undefined,
      childStarted: p.phase === 'running',
      restarts: p.phase === 'crash-looping' ? 2 : 0,
      runStopping: stopping,
      now,
      lastLogLine: () => '',
    });
    return { runnable: 'main', record, status: { id: String(i), ...verdict } };
  });
  const record: Pick<RunRecord, 'spec' | 'runnables' | 'final' | 'stopRequested' | 'suspended' | 'startDeadline' | 'reachedRunning'> = {
    spec,
    runnables: { main: { desired: s.desired, instances: [], nextId: s.instances.length, image: { reference: 'r/demo:1', digest: '', rootfs: '' } } },
    final: s.recorded ? { ...s.recorded, finishedAt: new Date(now).toISOString() } : undefined,
    stopRequested: stopping ? { at: new Date(created).toISOString(), kind: 'stop', gracePeriodMs: 10_000 } : undefined,
    // A suspended local batch is frozen, not gone: its instance is still there.
    suspended: s.suspended,
    startDeadline: created + startTimeoutMs,
    reachedRunning: s.reachedRunning,
  };
  if (s.suspended && observed.length === 0) {
    const frozen = { id: '0', supervisorPid: 1000 };
    observed.push({ runnable: 'main', record: frozen, status: { id: '0', ...instanceVerdict({ kind: s.kind, record: frozen, alive: true, childStarted: true, restarts: 0, runStopping: false, now, lastLogLine: () => '' }) } });
  }
  return deriveRunState(runObservation(record, observed), now);
}

for (const [backend, verdictOf] of [
  ['kubernetes', kubeVerdict],
  ['local', localVerdict],
] as const) {
  describe(`run state from ${backend} observations`, () => {
    for (const s of scenarios) {
      test(`${s.what}: ${s.expect.state}`, () => {
        const v = verdictOf(s);
        assert.equal(v.state, s.expect.state, `${v.state}: ${v.message}`);
        if (s.expect.reason !== undefined) assert.equal(v.reason, s.expect.reason, v.message);
        if (s.expect.exitCode !== undefined) assert.equal(v.exitCode, s.expect.exitCode);
        if (s.expect.message) assert.match(v.message ?? '', s.expect.message);
      });
    }
  });
}

describe('run state rules on the shared core', () => {
  const running = { id: '0', state: 'RUNNING' as const };
  const base = (extra: Partial<RunObservation['runnables'][number]> = {}): RunObservation => ({ runnables: [{ name: 'web', kind: 'service', desired: 1, instances: [running], ...extra }] });

  test('a failed long-running instance fails the run unless the backend replaces it', () => {
    const failed = { id: '1', state: 'FAILED' as const, reason: 'Lost', message: 'gone' };
    const kept = deriveRunState(base({ instances: [running, failed], replacesFailed: true }), 0);
    assert.deepEqual([kept.state, kept.reason, kept.message], ['RUNNING', 'Lost', 'instance web/1: gone']);
    const ended = deriveRunState(base({ instances: [running, failed], replacesFailed: false }), 0);
    assert.deepEqual([ended.state, ended.reason, ended.message], ['FAILED', 'Lost', 'instance web/1 failed: gone']);
  });

  test('a waiting reason that never fixes itself fails the run at once, decided by weft', () => {
    const v = deriveRunState(base({ instances: [{ id: '0', state: 'STARTING', reason: 'ErrImagePull', message: 'no such image' }] }), 0);
    assert.deepEqual([v.state, v.reason, v.decidedByWeft], ['FAILED', 'ErrImagePull', true]);
  });

  test("a runnable's own failure (a failed Job) fails the run with its words", () => {
    const v = deriveRunState(base({ kind: 'batch', instances: [], failure: { reason: 'DeadlineExceeded', message: 'job x failed: too slow' } }), 0);
    assert.deepEqual([v.state, v.reason, v.message], ['FAILED', 'DeadlineExceeded', 'job x failed: too slow']);
  });

  test("a batch is complete by the backend's verdict when it gives one, else when every wanted instance exited 0", () => {
    assert.equal(deriveRunState(base({ kind: 'batch', instances: [], complete: true }), 0).state, 'COMPLETED');
    assert.equal(deriveRunState(base({ kind: 'batch', instances: [{ id: '0', state: 'COMPLETED' }], complete: false }), 0).state, 'RUNNING');
    assert.equal(deriveRunState(base({ kind: 'batch', desired: 2, instances: [{ id: '0', state: 'COMPLETED' }] }), 0).state, 'STARTING');
    assert.equal(deriveRunState(base({ kind: 'service', instances: [{ id: '0', state: 'COMPLETED' }] }), 0).state, 'STARTING', 'a service never completes');
  });

  test('a runnable scaled to 0 counts as satisfied; a run without runnables never runs', () => {
    assert.equal(deriveRunState(base({ desired: 0, instances: [] }), 0).state, 'RUNNING');
    assert.equal(deriveRunState({ runnables: [] }, 0).state, 'PENDING');
  });

  test('a recorded REJECTED wins; a recorded live state does not', () => {
    assert.equal(deriveRunState({ ...base(), recorded: { state: 'REJECTED', message: 'bad spec' } }, 0).state, 'REJECTED');
    assert.equal(deriveRunState({ ...base(), recorded: { state: 'STARTING' } }, 0).state, 'RUNNING');
  });

  test('a kill says so; the start deadline only matters before RUNNING', () => {
    const killed = deriveRunState({ ...base({ instances: [] }), stop: { kind: 'kill', remaining: 0, ended: true } }, 0);
    assert.deepEqual([killed.state, killed.reason, killed.message], ['KILLED', 'Killed', 'killed on request']);
    const stopping = deriveRunState({ ...base(), stop: { remaining: 0, ended: false } }, 0);
    assert.deepEqual([stopping.state, stopping.message], ['STOPPING', 'stopping']);
    assert.equal(deriveRunState({ ...base(), startDeadline: 10 }, 20).state, 'RUNNING');
  });
});
