// Crash-safe hand-over of admitted runs to the runtime: a `weft master` process
// is SIGKILLed after it admitted a run (from the queue, or a direct submission)
// and before it handed the run to the runtime (WEFT_MASTER_TEST_PAUSE_HANDOVER
// stops it exactly there and says so; the test then SIGKILLs the process). The
// next master finds the run and starts it exactly once; a run the dead master
// did hand over but did not record as launched is recorded, not started again.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openStore } from '../../src/master/index.js';
import { isTerminal, parseAppSpec, type RunState } from '../../src/runtime/index.js';
import { createLocalRuntime } from '../../src/runtime/local/index.js';
import { buildShellImage, type ShellImage } from '../support/shell-image.js';
import { call, spawnMaster, startTestMaster, waitFor, type MasterProcess } from './helpers.js';

const PAUSED = /test hook: paused before handing run (\S+) to the runtime/;

describe('hand-over of admitted runs survives the master being SIGKILLed', () => {
  let image: ShellImage;
  let work: string;
  const masters: MasterProcess[] = [];
  const store = () => `sqlite:${path.join(work, 'master.db')}`;
  const stateDir = () => path.join(work, 'state');
  const tokenFile = () => path.join(work, 'admin-token');
  const token = async () => (await fs.readFile(tokenFile(), 'utf8')).trim();
  // One shell process per run: it says when it started (the test counts those lines), then works a little.
  const spec = (name: string, seconds = 1) => ({ name, runnables: [{ name: 'main', kind: 'batch', image: image.reference, args: ['sh', '-c', `echo "started $WEFT_RUN_ID"; sleep ${seconds}; echo done`] }] });

  const master = async (pauseAt?: number) => {
    const m = await spawnMaster(
      ['--store', store(), '--runtime', 'local', '--admin-token-file', tokenFile(), '--admission-limit', '1', '--handover-timeout', '2', '--reconcile-interval', '60', '--no-dashboard'],
      { XDG_STATE_HOME: stateDir(), WEFT_LOCAL_MODE: 'host', ...(pauseAt ? { WEFT_MASTER_TEST_PAUSE_HANDOVER: String(pauseAt) } : {}) },
    );
    masters.push(m);
    return m;
  };
  const post = async (m: MasterProcess, body: unknown, key: string) => call(m.url, 'POST', '/api/v1/namespaces/crash/runs', { token: await token(), body, headers: { 'idempotency-key': key } });
  const getRun = async (m: MasterProcess, id: string) => (await call(m.url, 'GET', `/api/v1/namespaces/crash/runs/${id}`, { token: await token() })).json;
  const ended = (m: MasterProcess, id: string) =>
    waitFor(`run ${id} to end`, async () => {
      const run = await getRun(m, id);
      return isTerminal(run.state) ? run : undefined;
    }, 90_000);
  const logLines = async (m: MasterProcess, id: string) => (await call(m.url, 'GET', `/api/v1/namespaces/crash/runs/${id}/logs`, { token: await token() })).text.split('\n').filter(Boolean);
  /** The run started once: one instance in the runtime, one "started" line, ended COMPLETED. */
  const startedOnce = async (m: MasterProcess, id: string) => {
    const run = await ended(m, id);
    assert.equal(run.state, 'COMPLETED', JSON.stringify(run));
    assert.equal(run.status.runnables[0].instances.length, 1, 'one instance: started once');
    const lines = await waitFor('its archived output', async () => {
      const l = await logLines(m, id);
      return l.includes('done') ? l : undefined;
    });
    assert.deepEqual(lines.filter((l) => l.startsWith('started')), [`started ${id}`], 'the program ran once');
    const states = (run.history as Array<{ to: RunState }>).map((h) => h.to);
    assert.equal(states.filter((s) => s === 'PENDING').length, 1);
    assert.equal(states.at(-1), 'COMPLETED');
  };
  /** What the store says about a run while no master runs. */
  const stored = async (id: string) => {
    const s = await openStore(store());
    try {
      return await s.getRun(id);
    } finally {
      await s.close();
    }
  };
  const inRuntime = async (id: string) => {
    const runtime = await createLocalRuntime({ stateDir: path.join(stateDir(), 'weft', 'local'), mode: 'host' });
    try {
      return await runtime.status(id);
    } finally {
      await runtime.close();
    }
  };

  before(async () => {
    image = await buildShellImage();
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-master-handover-'));
  });
  after(async () => {
    for (const m of masters) await m.stop();
    await image?.remove();
    if (work) await fs.rm(work, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
  });

  test('a queued run admitted by a master SIGKILLed before the hand-over is started by the next master, once, and the queue moves on', { timeout: 180_000 }, async () => {
    // Hand-over 1 is the direct start of "first"; hand-over 2 is the queued run admitted when "first" ends.
    const m1 = await master(2);
    const first = await post(m1, { spec: spec('first') }, 'q-first');
    assert.equal(first.status, 201, first.text);
    const queued = await post(m1, { spec: spec('queued'), queue: true }, 'q-queued');
    const behind = await post(m1, { spec: spec('behind'), queue: true }, 'q-behind');
    assert.deepEqual([queued.status, queued.json.queuePosition, behind.json.queuePosition], [202, 1, 2], queued.text);
    const paused = await m1.waitForLog(PAUSED);
    assert.equal(paused[1], queued.json.id, 'the master stopped at the hand-over of the queued run');
    await m1.kill();

    const left = await stored(queued.json.id);
    assert.deepEqual([left?.state, left?.queuedAt, left?.launchedAt], ['PENDING', undefined, undefined], 'admitted, not launched');
    assert.equal(await inRuntime(queued.json.id), undefined, 'the runtime never got it');

    const m2 = await master();
    await startedOnce(m2, queued.json.id);
    await startedOnce(m2, behind.json.id);
    assert.equal((await getRun(m2, first.json.id)).state, 'COMPLETED');
    const metrics = (await call(m2.url, 'GET', '/metrics')).text;
    assert.match(metrics, /weft_master_reconciler_actions_total\{action="handover_taken_over"\} 1$/m);
    assert.doesNotMatch(metrics, /action="lost"/, 'nothing was declared lost');
    await m2.stop();
  });

  test('a submission whose master is SIGKILLed before the hand-over: the retry (same Idempotency-Key) returns it and it runs once', { timeout: 180_000 }, async () => {
    const m1 = await master(1);
    const request = post(m1, { spec: spec('direct') }, 'd-direct').catch((error: Error) => error);
    const paused = await m1.waitForLog(PAUSED);
    await m1.kill();
    assert.ok((await request) instanceof Error, 'the client got no answer');
    const id = paused[1];
    assert.deepEqual([(await stored(id))?.state, (await stored(id))?.launchedAt], ['PENDING', undefined]);

    const m2 = await master();
    const retry = await post(m2, { spec: spec('direct') }, 'd-direct');
    assert.deepEqual([retry.status, retry.json.id], [200, id], 'the retry finds the stored run');
    await startedOnce(m2, id);
    await m2.stop();
  });
});

describe('a run handed to the runtime by a master that died before recording it', () => {
  test('is recorded as launched by the next master, not started again', { timeout: 120_000 }, async () => {
    const image = await buildShellImage();
    const t = await startTestMaster({ extra: { handoverTimeoutMs: 1000 } });
    try {
      await t.master.close();
      // What the dead master did: stored the run (not launched), handed it to the runtime, and died.
      const input = spec(image.reference);
      const store = await openStore(`sqlite:${path.join(t.dir, 'master.db')}`);
      const { run } = await store
        .createRun({ id: 'handed-00000000', namespace: 'crash', app: input.name, spec: parseAppSpec(input, 'test'), runtime: 'local', createdBy: 'test' }, { handoverMs: 1000 })
        .finally(() => store.close());
      assert.equal(run.launchedAt, undefined);
      await t.runtime.submit({ runId: run.id, spec: parseAppSpec(input, 'test'), files: [] });
      await new Promise((r) => setTimeout(r, 1200)); // its hand-over time ran out too
      await t.restart();
      const done = await waitFor('the run to end', async () => {
        const r = await t.master.store.getRun(run.id);
        return r && isTerminal(r.state) ? r : undefined;
      }, 60_000);
      assert.equal(done.state, 'COMPLETED');
      assert.ok(done.launchedAt !== undefined);
      const status = await t.runtime.status(run.id);
      assert.equal(status?.runnables[0].instances.length, 1, 'started once');
      const metrics = await t.master.metrics.registry.metrics();
      assert.match(metrics, /weft_master_reconciler_actions_total\{action="handover_recorded"\} 1$/m);
      assert.doesNotMatch(metrics, /action="handover_taken_over"/);
    } finally {
      await t.close();
      await image.remove();
    }
  });
  const spec = (reference: string) => ({ name: 'handed', runnables: [{ name: 'main', kind: 'batch' as const, image: reference, args: ['sh', '-c', 'echo "started $WEFT_RUN_ID"; sleep 1'] }] });
});

describe('the log archive of a run whose end was recorded by a master that then died', () => {
  test('is completed by the next master (the lines after the end was recorded are not lost)', { timeout: 120_000 }, async () => {
    const image = await buildShellImage();
    const t = await startTestMaster();
    try {
      const input = { name: 'tail', runnables: [{ name: 'main', kind: 'batch', image: image.reference, args: ['sh', '-c', 'echo first; sleep 3; echo last'] }] };
      const r = await call(t.master.url, 'POST', '/api/v1/namespaces/tail/runs', { token: t.adminToken, body: { spec: input } });
      assert.equal(r.status, 201, r.text);
      const id = r.json.id as string;
      await waitFor('the first line archived', async () => ((await t.master.store.readLogs(id)).some((l) => l.line === 'first') ? true : undefined));
      // The master goes (its archiver with it) while the run still prints; the run ends meanwhile, and its end
      // is in the store as the dying master recorded it, with the archive unfinished.
      await t.master.close();
      await waitFor('the run to end in the runtime', async () => ((await t.runtime.status(id))?.state === 'COMPLETED' ? true : undefined));
      const store = await openStore(`sqlite:${path.join(t.dir, 'master.db')}`);
      try {
        await store.transition(id, 'COMPLETED');
        assert.equal((await store.getRun(id))?.logsArchivedAt, undefined);
        assert.deepEqual((await store.readLogs(id)).map((l) => l.line), ['first']);
      } finally {
        await store.close();
      }
      await t.restart();
      await waitFor('the archive completed', async () => ((await t.master.store.getRun(id))?.logsArchivedAt !== undefined ? true : undefined), 30_000);
      assert.deepEqual((await t.master.store.readLogs(id)).map((l) => l.line), ['first', 'last'], 'each line once');
      // A followed read ends: the archive is complete.
      const followed = await call(t.master.url, 'GET', `/api/v1/namespaces/tail/runs/${id}/logs?follow=true`, { token: t.adminToken });
      assert.deepEqual(followed.text.split('\n').filter(Boolean), ['first', 'last']);
    } finally {
      await t.close();
      await image.remove();
    }
  });
});
