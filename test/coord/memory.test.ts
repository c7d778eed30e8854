// The coordination scenarios on the memory backend (one process): crashes and
// partitions are simulated by the backend's fault injection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCandidate, type CandidateEvent, type RunningCandidate } from '../support/coord-candidate.js';
import { createCoordination, MemoryCluster, StaleTokenError, type LeaseTimings, type MemoryCoordination } from '../../src/coord/index.js';
import { checkSafety, isElected, Timeline } from './harness.js';
import { locks, type BackendUnderTest } from './scenarios.js';

const timings: LeaseTimings = { leaseDurationMs: 1500, renewDeadlineMs: 1000, retryPeriodMs: 250 };
const patience = 3 * timings.leaseDurationMs + 5000;
type Elected = Extract<CandidateEvent, { ev: 'elected' }>;

async function startCandidates(cluster: MemoryCluster, ids: string[], timeline: Timeline, name = 'e', logName = 'log'): Promise<Map<string, RunningCandidate>> {
  const running = new Map<string, RunningCandidate>();
  for (const id of ids) {
    running.set(id, await runCandidate({ election: { backend: 'memory', cluster }, log: { backend: 'memory', cluster }, name, id, logName, actionIntervalMs: 50, timings }, (e) => timeline.push(e)));
  }
  return running;
}

function crash(c: RunningCandidate): void {
  (c.election as MemoryCoordination).simulateCrash();
  (c.log as MemoryCoordination).simulateCrash();
}

test('memory: three candidates, the leader crashes twice: another leads, never two at once', async (t) => {
  const cluster = new MemoryCluster();
  const timeline = new Timeline();
  const running = await startCandidates(cluster, ['c1', 'c2', 'c3'], timeline);
  try {
    let leader: Elected = await timeline.waitFor(isElected, patience, 'a leader');
    for (let k = 0; k < 2; k++) {
      await timeline.waitFor((e): e is CandidateEvent => e.ev === 'append' && e.ok && e.id === leader.id, patience, 'the leader to act');
      const from = timeline.events.length;
      crash(running.get(leader.id)!);
      const killedAt = timeline.mark('killed', leader.id);
      const next = await timeline.waitFor((e): e is Elected => isElected(e) && e.id !== leader.id, patience, 'a new leader', from);
      t.diagnostic(`${next.id} leads ${next.at - killedAt} ms after ${leader.id} crashed`);
      assert.ok(next.token > leader.token);
      leader = next;
    }
    await timeline.waitFor((e): e is CandidateEvent => e.ev === 'append' && e.ok && e.id === leader.id, patience, 'the last leader to act');
    const log = cluster.readLog('log');
    assert.equal(new Set(log.map((e) => e.writer)).size, 3);
    assert.deepEqual(checkSafety(log, timeline.events), [], timeline.events.filter((e) => e.ev !== 'append').map((e) => JSON.stringify(e)).join('\n'));
  } finally {
    for (const c of running.values()) await c.stop().catch(() => undefined);
  }
});

test('memory: a partitioned leader steps down before another leads; resign hands over at once', async (t) => {
  const cluster = new MemoryCluster();
  const timeline = new Timeline();
  const running = await startCandidates(cluster, ['a'], timeline);
  try {
    const first = await timeline.waitFor(isElected, patience, 'a to lead');
    for (const [id, c] of await startCandidates(cluster, ['b', 'c'], timeline)) running.set(id, c);
    const from = timeline.events.length;
    (running.get('a')!.election as MemoryCoordination).setPartitioned(true);
    const cutAt = timeline.mark('cut', 'a');
    const down = await timeline.waitFor((e): e is Extract<CandidateEvent, { ev: 'stepdown' }> => e.ev === 'stepdown' && e.id === 'a', patience, 'a to step down', from);
    const next = await timeline.waitFor((e): e is Elected => isElected(e) && e.id !== 'a', patience, 'a new leader', from);
    t.diagnostic(`a stepped down ${down.at - cutAt} ms after the cut; ${next.id} led after ${next.at - cutAt} ms`);
    assert.ok(down.at <= next.at);
    assert.ok(next.token > first.token);
    (running.get('a')!.election as MemoryCoordination).setPartitioned(false);
    timeline.mark('healed', 'a');
    // A clean resign hands over without waiting for the lease to expire.
    const from2 = timeline.events.length;
    await running.get(next.id)!.stop();
    running.delete(next.id);
    timeline.mark('killed', next.id);
    const third = await timeline.waitFor((e): e is Elected => isElected(e) && e.id !== next.id, patience, 'a leader after resign', from2);
    assert.ok(third.token > next.token);
    await timeline.waitFor((e): e is CandidateEvent => e.ev === 'append' && e.ok && e.id === third.id, patience, 'the third leader to act');
    assert.deepEqual(checkSafety(cluster.readLog('log'), timeline.events), []);
  } finally {
    for (const c of running.values()) await c.stop().catch(() => undefined);
  }
});

test('memory: discovery sees instances come and go', async () => {
  const cluster = new MemoryCluster();
  const a = await createCoordination({ backend: 'memory', cluster, timings });
  const b = await createCoordination({ backend: 'memory', cluster, timings });
  const watcher = await createCoordination({ backend: 'memory', cluster, timings });
  try {
    const seen = await watcher.discovery.discover('svc');
    const changes: number[] = [];
    seen.watch((l) => changes.push(l.length));
    const x = await a.discovery.announce('svc', { host: '10.0.0.1', port: 80, payload: 'x' });
    await b.discovery.announce('svc', { host: '10.0.0.2', port: 81 });
    await seen.waitFor((l) => l.length === 2, patience);
    assert.deepEqual([...seen].map((i) => i.host).sort(), ['10.0.0.1', '10.0.0.2']);
    await x.cancel();
    await seen.waitFor((l) => l.length === 1, patience);
    b.simulateCrash(); // its announcement expires after the lease duration
    await seen.waitFor((l) => l.length === 0, patience);
    assert.deepEqual(changes, [1, 2, 1, 0]);
    await assert.rejects(a.discovery.announce('svc', { host: '', port: 1 }), /needs a host/);
    await assert.rejects(a.discovery.announce('svc', { host: 'h', port: 70000 }), /port between 1 and 65535/);
    await assert.rejects(a.discovery.announce('Bad_Name', { host: 'h', port: 1 }), /invalid service name/);
  } finally {
    await Promise.all([a.close(), b.close(), watcher.close()]);
  }
});

test('memory: lock mutual exclusion with increasing fencing tokens', async () => {
  const cluster = new MemoryCluster();
  const b: BackendUnderTest = { options: () => ({ backend: 'memory', cluster, timings }), target: { host: '', port: 0 }, timings };
  await locks(b);
});

test('memory: a lock lost to a partition is reported, and the fenced log rejects its stale token', async () => {
  const cluster = new MemoryCluster();
  const a = await createCoordination({ backend: 'memory', cluster, timings });
  const b = await createCoordination({ backend: 'memory', cluster, timings });
  try {
    let lost = '';
    const la = await a.locks.acquire('l', { onLost: (r) => (lost = r) });
    a.setPartitioned(true);
    const lb = await b.locks.acquire('l', { timeoutMs: patience });
    assert.match(lost, /renewDeadline/);
    assert.equal(la.held, false);
    assert.ok(lb.token > la.token);
    const log = b.fencedLog('guarded');
    await log.append(lb.token, 'b');
    await assert.rejects(log.append(la.token, 'a'), StaleTokenError);
    assert.deepEqual((await log.read()).map((e) => e.writer), ['b']);
    await lb.release();
  } finally {
    a.setPartitioned(false);
    await Promise.all([a.close(), b.close()]);
  }
});

test('safety checker flags overlapping leaders and stale writes', () => {
  const tl = new Timeline();
  tl.push({ ev: 'elected', id: 'x', token: 1, at: 1 });
  tl.push({ ev: 'elected', id: 'y', token: 2, at: 2 });
  tl.push({ ev: 'append', id: 'x', token: 1, ok: false, error: 'stale', at: 3 });
  const problems = checkSafety(
    [{ token: 1, writer: 'x', at: 1 }, { token: 2, writer: 'y', at: 2 }, { token: 1, writer: 'x', at: 3 }],
    tl.events,
  );
  assert.equal(problems.length, 4, problems.join('\n'));
});

test('timings are validated', async () => {
  await assert.rejects(createCoordination({ backend: 'memory', timings: { leaseDurationMs: 1000, renewDeadlineMs: 1000 } }), /must be less than leaseDurationMs/);
  await assert.rejects(createCoordination({ backend: 'memory', timings: { retryPeriodMs: -1 } }), /positive number/);
  await assert.rejects(createCoordination({ backend: 'nope' } as never), /unknown coordination backend/);
});
