// Runs through the master on the real local runtime (host processes, the probe
// program): start, list, history, overrides, logs archive with cursors across
// deletion and restart, admission, stop/kill/scale/command, watch resumption,
// and reconciliation (lost runs, adopted runs, runs stuck STOPPING).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { canTransition, createRunner, isTerminal, parseAppSpec, RUN_STATES, type RunState } from '../../src/runtime/index.js';
import { buildProbeImage, type ProbeImage } from '../twill/fixtures/probe-image.js';
import { call, pagedLogs, startTestMaster, waitFor, type TestMaster } from './helpers.js';
import { isValidRunId } from '../../src/runtime/runid.js';
import { serverSentEvents } from '../../src/master/client.js';

interface SseEvent {
  id: number;
  data: { runId: string; from?: RunState; to: RunState };
}

/** Reads server-sent events until `until` holds or `max` events arrived, then disconnects. */
async function readEvents(url: string, token: string, headers: Record<string, string>, until: (events: SseEvent[]) => boolean): Promise<SseEvent[]> {
  const abort = new AbortController();
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}`, ...headers }, signal: abort.signal });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
  const events: SseEvent[] = [];
  const timer = setTimeout(() => abort.abort(), 60_000);
  try {
    for await (const event of serverSentEvents<SseEvent['data']>(res.body as unknown as AsyncIterable<Uint8Array>)) {
      events.push({ id: Number(event.id), data: event.data });
      if (until(events)) break;
    }
  } catch (error) {
    if (!abort.signal.aborted) throw error;
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
  return events;
}

describe('runs through the master on the local runtime', () => {
  let probe: ProbeImage;
  let t: TestMaster;
  let token: string;
  const base = () => t.master.url;
  const spec = (name: string, args: string[], kind: 'batch' | 'service' = 'batch', extra: Record<string, unknown> = {}) => ({
    name,
    stopTimeout: '10s',
    runnables: [{ name: 'main', kind, image: probe.reference, args, ...extra }],
  });
  const start = async (ns: string, body: unknown, headers: Record<string, string> = {}) => {
    const r = await call(base(), 'POST', `/api/v1/namespaces/${ns}/runs`, { token, body, headers });
    assert.ok(r.status === 201 || r.status === 200, r.text);
    return r.json.id as string;
  };
  const getRun = async (ns: string, id: string) => {
    const r = await call(base(), 'GET', `/api/v1/namespaces/${ns}/runs/${id}`, { token });
    assert.equal(r.status, 200, r.text);
    return r.json;
  };
  const waitState = (ns: string, id: string, wanted: (s: RunState) => boolean, what: string) =>
    waitFor(`run ${id} ${what}`, async () => {
      const run = await getRun(ns, id);
      return wanted(run.state) ? run : undefined;
    }, 90_000);
  const allLogs = (ns: string, id: string, limit: number, format: 'text' | 'json' = 'json') => pagedLogs(base(), token, ns, id, limit, format);

  before(async () => {
    probe = await buildProbeImage();
    t = await startTestMaster({ extra: { admissionLimit: 3, stuckStoppingSlackMs: 0 } });
    token = t.adminToken;
  });
  after(async () => {
    await t?.close();
    await probe?.remove();
  });

  test('a start returns a run id; the run is listed RUNNING, ends COMPLETED, and its record holds every valid transition with timestamps', { timeout: 180_000 }, async (ctx) => {
    const submitted = Date.now();
    const id = await start('team-a', { spec: spec('hello', ['ticks', '30']) });
    assert.ok(isValidRunId(id) && id.startsWith('hello-'), `a run id of app hello: ${id}`);
    await waitFor('the run listed as RUNNING', async () => {
      const list = await call(base(), 'GET', '/api/v1/namespaces/team-a/runs?state=RUNNING', { token });
      return list.json.items.some((r: { id: string }) => r.id === id) ? true : undefined;
    });
    ctx.diagnostic(`listed RUNNING ${Date.now() - submitted} ms after the start request`);
    const done = await waitState('team-a', id, isTerminal, 'ends');
    assert.equal(done.state, 'COMPLETED', JSON.stringify(done));
    const history = done.history as Array<{ id: number; from?: RunState; to: RunState; at: string }>;
    assert.equal(history[0].to, 'PENDING');
    assert.ok(history.some((h) => h.to === 'RUNNING'));
    assert.equal(history.at(-1)!.to, 'COMPLETED');
    for (let i = 1; i < history.length; i++) {
      assert.equal(history[i].from, history[i - 1].to);
      assert.ok(canTransition(history[i - 1].to, history[i].to), `${history[i - 1].to} -> ${history[i].to}`);
      assert.ok(Date.parse(history[i].at) >= Date.parse(history[i - 1].at));
    }
    assert.ok(RUN_STATES.includes(done.status.state));
    assert.ok(Date.parse(done.finishedAt) >= Date.parse(done.createdAt));
  });

  test('a stored app starts with overrides (env, args); a retried submission with the same Idempotency-Key is the same run', { timeout: 180_000 }, async () => {
    const put = await call(base(), 'PUT', '/api/v1/namespaces/team-a/apps/greeter', { token, body: { spec: spec('greeter', ['batch']) } });
    assert.equal(put.status, 201, put.text);
    const body = { app: 'greeter', overrides: { env: { GREETING: 'bonjour' }, args: ['extra'] } };
    const id = await start('team-a', body, { 'idempotency-key': 'greet-1' });
    const again = await call(base(), 'POST', '/api/v1/namespaces/team-a/runs', { token, body, headers: { 'idempotency-key': 'greet-1' } });
    assert.equal(again.status, 200);
    assert.equal(again.json.id, id);
    const done = await waitState('team-a', id, isTerminal, 'ends');
    assert.equal(done.state, 'COMPLETED');
    assert.equal(done.appVersion, 1);
    await waitFor('archived output', async () => ((await allLogs('team-a', id, 100)).some((l) => l.includes('greeting=bonjour') && l.includes('args=batch,extra')) ? true : undefined));
    assert.equal((await call(base(), 'GET', '/api/v1/namespaces/team-a/runs?app=greeter', { token })).json.items.length, 1, 'one run for two submissions');
  });

  test('10,000 log lines page back exactly once each, also after the run was deleted from the runtime and after a master restart', { timeout: 240_000 }, async () => {
    const id = await start('team-logs', { spec: spec('printer', ['lines', '10000']) });
    const done = await waitState('team-logs', id, isTerminal, 'ends');
    assert.equal(done.state, 'COMPLETED');
    const expected = Array.from({ length: 10_000 }, (_, i) => `line ${i + 1}`);
    const numbered = (lines: string[]) => lines.filter((l) => /^line \d+$/.test(l));
    await waitFor('the whole output archived', async () => ((await allLogs('team-logs', id, 1000)).includes('batch done') ? true : undefined));
    assert.deepEqual(numbered(await allLogs('team-logs', id, 777)), expected);
    // Followed: streams everything and ends because the run ended.
    const followed = await call(base(), 'GET', `/api/v1/namespaces/team-logs/runs/${id}/logs?follow=true`, { token });
    assert.deepEqual(numbered(followed.text.split('\n')), expected);
    // The run's objects are deleted from the runtime (like a pod deleted); the archive still serves it.
    await t.runtime.remove(id);
    assert.equal(await t.runtime.status(id), undefined);
    assert.deepEqual(numbered(await allLogs('team-logs', id, 1000)), expected);
    await t.restart();
    assert.deepEqual(numbered(await allLogs('team-logs', id, 2500)), expected, 'after a master restart');
    assert.equal((await getRun('team-logs', id)).state, 'COMPLETED', 'a finished run whose objects are gone stays as it ended');
  });

  test('with the admission limit at 3, the 4th start gets 409 and a REJECTED record', { timeout: 180_000 }, async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push(await start('team-adm', { spec: spec(`busy${i}`, ['stubborn']) }));
    for (const id of ids) await waitState('team-adm', id, (s) => s === 'RUNNING', 'runs');
    const fourth = await call(base(), 'POST', '/api/v1/namespaces/team-adm/runs', { token, body: { spec: spec('busy3', ['stubborn']) } });
    assert.equal(fourth.status, 409, fourth.text);
    assert.equal(fourth.json.error.code, 'admission_rejected');
    assert.match(fourth.json.error.message, /limit is 3/);
    const rejected = await call(base(), 'GET', '/api/v1/namespaces/team-adm/runs?state=REJECTED', { token });
    assert.equal(rejected.json.items.length, 1);
    assert.equal(rejected.json.items[0].id, fourth.json.error.run.id);
    assert.equal(rejected.json.items[0].reason, 'AdmissionLimit');
    assert.equal((await t.runtime.status(fourth.json.error.run.id)), undefined, 'a rejected run never reached the runtime');
    for (const id of ids) {
      const k = await call(base(), 'POST', `/api/v1/namespaces/team-adm/runs/${id}/kill`, { token, body: {} });
      assert.equal(k.status, 202, k.text);
    }
    for (const id of ids) assert.equal((await waitState('team-adm', id, isTerminal, 'killed')).state, 'KILLED');
    const afterKill = await call(base(), 'POST', `/api/v1/namespaces/team-adm/runs/${ids[0]}/kill`, { token, body: {} });
    assert.equal(afterKill.status, 409, 'a finished run cannot be killed again');
  });

  test('queue: over the limit a submission with queue: true waits with its position and starts when a slot frees', { timeout: 180_000 }, async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push(await start('team-q', { spec: spec(`slot${i}`, ['stubborn']) }));
    for (const id of ids) await waitState('team-q', id, (s) => s === 'RUNNING', 'runs');
    const queued: Array<{ id: string; position: number }> = [];
    for (let i = 0; i < 3; i++) {
      const r = await call(base(), 'POST', '/api/v1/namespaces/team-q/runs', { token, body: { spec: spec(`waiter${i}`, ['stubborn']), queue: true }, headers: { 'idempotency-key': `waiter-${i}` } });
      assert.equal(r.status, 202, r.text);
      assert.equal(r.json.state, 'PENDING');
      assert.equal(r.json.reason, 'Queued');
      queued.push({ id: r.json.id, position: r.json.queuePosition });
    }
    assert.deepEqual(queued.map((q) => q.position), [1, 2, 3]);
    const retry = await call(base(), 'POST', '/api/v1/namespaces/team-q/runs', { token, body: { spec: spec('waiter1', ['stubborn']), queue: true }, headers: { 'idempotency-key': 'waiter-1' } });
    assert.deepEqual([retry.status, retry.json.id, retry.json.queuePosition], [200, queued[1].id, 2], 'a retried queued submission says where it is');
    const notQueued = await call(base(), 'POST', '/api/v1/namespaces/team-q/runs', { token, body: { spec: spec('impatient', ['stubborn']) } });
    assert.equal(notQueued.status, 409, 'without queue: rejected as before');
    assert.equal((await getRun('team-q', queued[2].id)).queuePosition, 3);
    assert.equal(await t.runtime.status(queued[0].id), undefined, 'a queued run is not in the runtime');
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal((await getRun('team-q', queued[0].id)).state, 'PENDING', 'it waits while the slots are taken');
    // Queued runs can be killed (they leave the queue), not scaled.
    assert.equal((await call(base(), 'POST', `/api/v1/namespaces/team-q/runs/${queued[1].id}/scale`, { token, body: { runnable: 'main', instances: 2 } })).status, 409);
    const k = await call(base(), 'POST', `/api/v1/namespaces/team-q/runs/${queued[1].id}/kill`, { token, body: {} });
    assert.equal(k.status, 202, k.text);
    const dequeued = await getRun('team-q', queued[1].id);
    assert.deepEqual([dequeued.state, dequeued.reason, dequeued.queuePosition], ['KILLED', 'Dequeued', undefined]);
    assert.equal((await getRun('team-q', queued[2].id)).queuePosition, 2, 'the one behind moved up');
    // A slot frees: the first in line starts, the next waits at position 1.
    await call(base(), 'POST', `/api/v1/namespaces/team-q/runs/${ids[0]}/kill`, { token, body: {} });
    await waitState('team-q', queued[0].id, (s) => s === 'RUNNING', 'starts from the queue');
    assert.equal((await getRun('team-q', queued[2].id)).queuePosition, 1);
    assert.equal((await getRun('team-q', queued[2].id)).state, 'PENDING');
    await call(base(), 'POST', `/api/v1/namespaces/team-q/runs/${ids[1]}/kill`, { token, body: {} });
    await waitState('team-q', queued[2].id, (s) => s === 'RUNNING', 'starts from the queue');
    const history = (await getRun('team-q', queued[0].id)).history as Array<{ to: string }>;
    assert.deepEqual(history.map((h) => h.to).slice(0, 1), ['PENDING']);
    for (const id of [ids[2], queued[0].id, queued[2].id]) await call(base(), 'POST', `/api/v1/namespaces/team-q/runs/${id}/kill`, { token, body: {} });
    for (const id of [...ids, queued[0].id, queued[2].id]) assert.equal((await waitState('team-q', id, isTerminal, 'killed')).state, 'KILLED');
  });

  test('stop with a grace period lets the program shut down; scale and commands go through the runtime', { timeout: 180_000 }, async () => {
    const id = await start('team-ctl', { spec: spec('svc', ['service'], 'service', { ports: [{ name: 'http', port: 18391 }] }) });
    await waitState('team-ctl', id, (s) => s === 'RUNNING', 'runs');
    const cmd = await call(base(), 'POST', `/api/v1/namespaces/team-ctl/runs/${id}/commands`, { token, body: { command: 'reload', payload: 'now' } });
    assert.equal(cmd.status, 202, cmd.text);
    await waitFor('the command in the output', async () => ((await allLogs('team-ctl', id, 1000)).some((l) => l.includes('command received') && l.includes('reload')) ? true : undefined));
    const badScale = await call(base(), 'POST', `/api/v1/namespaces/team-ctl/runs/${id}/scale`, { token, body: { runnable: 'nope', instances: 2 } });
    assert.equal(badScale.status, 502);
    assert.match(badScale.json.error.message, /nope/);
    const stop = await call(base(), 'POST', `/api/v1/namespaces/team-ctl/runs/${id}/stop`, { token, body: { gracePeriodSeconds: 20 } });
    assert.equal(stop.status, 202, stop.text);
    const done = await waitState('team-ctl', id, isTerminal, 'stopped');
    assert.equal(done.state, 'KILLED');
    assert.ok(done.history.some((h: { to: string }) => h.to === 'STOPPING') || done.history.at(-1).from === 'RUNNING');
    await waitFor('the shutdown hook in the archive', async () => ((await allLogs('team-ctl', id, 1000)).some((l) => l.includes('shutdown hook: stopping gracefully')) ? true : undefined));
    const audit = (await call(base(), 'GET', '/api/v1/namespaces/team-ctl/audit', { token })).json.items as Array<{ action: string; target: string }>;
    assert.deepEqual(audit.filter((a) => a.target === id).map((a) => a.action).sort(), ['run.command', 'run.start', 'run.stop']);
  });

  test('watch: server-sent events resume from the last event id with nothing missed or repeated', { timeout: 180_000 }, async () => {
    const latest = await t.master.store.latestEventId();
    const id = await start('team-watch', { spec: spec('watched', ['ticks', '20']) });
    const url = `${base()}/api/v1/namespaces/team-watch/watch?run=${id}&after=${latest}`;
    const first = await readEvents(url, token, {}, (e) => e.length >= 1);
    assert.equal(first[0].data.to, 'PENDING');
    await waitState('team-watch', id, isTerminal, 'ends');
    const rest = await readEvents(`${base()}/api/v1/namespaces/team-watch/watch?run=${id}`, token, { 'last-event-id': String(first[first.length - 1].id) }, (e) => e.some((x) => isTerminal(x.data.to)));
    const seen = [...first, ...rest];
    const history = (await getRun('team-watch', id)).history as Array<{ id: number; to: RunState }>;
    assert.deepEqual(seen.map((e) => e.id), history.map((h) => h.id), 'every event once, in order');
    assert.deepEqual(seen.map((e) => e.data.to), history.map((h) => h.to));
  });

  test('reconciliation: runs lost while the master was down become FAILED with the reason; unknown live runs are adopted', { timeout: 240_000 }, async () => {
    const lost = await start('team-rec', { spec: spec('doomed', ['stubborn']) });
    const kept = await start('team-rec', { spec: spec('survivor', ['ticks', '50']) });
    await waitState('team-rec', lost, (s) => s === 'RUNNING', 'runs');
    await waitState('team-rec', kept, (s) => s === 'RUNNING', 'runs');
    await t.master.close();
    // While the master is down: one run's objects are deleted, another run is started without the master.
    await t.runtime.kill(lost);
    await waitFor('the killed run to end', async () => ((await t.runtime.status(lost)) && isTerminal((await t.runtime.status(lost))!.state) ? true : undefined));
    await t.runtime.remove(lost);
    const runner = await createRunner({ runtime: 'local', stateDir: t.stateDir, mode: 'host' });
    const stray = await runner.prepare(parseAppSpec(spec('stray', ['stubborn']))).start();
    await stray.onRunning();
    stray.release();
    await runner.close();
    await t.restart();
    const failed = await getRun('team-rec', lost);
    assert.equal(failed.state, 'FAILED');
    assert.equal(failed.reason, 'Lost');
    assert.match(failed.message, /objects are gone from the local runtime/);
    assert.equal((await waitState('team-rec', kept, isTerminal, 'ends')).state, 'COMPLETED', 'a run that went on while the master was down reaches its true end');
    const adopted = await getRun('default', stray.runId);
    assert.equal(adopted.createdBy, 'reconciler');
    assert.equal(adopted.state, 'RUNNING');
    const metrics = (await call(base(), 'GET', '/metrics')).text;
    assert.match(metrics, /weft_master_reconciler_actions_total\{action="lost"\} 1/);
    assert.match(metrics, /weft_master_reconciler_actions_total\{action="adopted"\} 1/);
    assert.equal((await call(base(), 'POST', `/api/v1/namespaces/default/runs/${stray.runId}/kill`, { token, body: {} })).status, 202);
    assert.equal((await waitState('default', stray.runId, isTerminal, 'killed')).state, 'KILLED');
  });

  test('a run stuck STOPPING past its grace period is killed by the reconciler and counted', { timeout: 180_000 }, async () => {
    const id = await start('team-stuck', { spec: spec('stuck', ['stubborn']) });
    await waitState('team-stuck', id, (s) => s === 'RUNNING', 'runs');
    // The JVM ignores SIGTERM only once its handler is installed.
    await waitFor('the SIGTERM handler installed', async () => ((await allLogs('team-stuck', id, 100)).includes('stubborn: running until killed') ? true : undefined));
    // A long grace period: the program ignores SIGTERM, so the run stays STOPPING.
    const stop = await call(base(), 'POST', `/api/v1/namespaces/team-stuck/runs/${id}/stop`, { token, body: { gracePeriodSeconds: 3600 } });
    assert.equal(stop.status, 202);
    await waitState('team-stuck', id, (s) => s === 'STOPPING', 'stopping');
    // As if the hour had passed: the stop was asked long ago with a short grace period.
    await t.master.store.markStopRequested(id, 1000, Date.now() - 60_000);
    await t.master.service.reconcile();
    const done = await waitState('team-stuck', id, isTerminal, 'killed');
    assert.equal(done.state, 'KILLED');
    assert.match((await call(base(), 'GET', '/metrics')).text, /^weft_master_stuck_stopping_kills_total 1$/m);
  });
});
