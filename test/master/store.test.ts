// One store test suite, run against SQLite and PostgreSQL.
import { after, before, describe, test as nodeTest } from 'node:test';
import assert from 'node:assert/strict';
import { canTransition, isTerminal } from '../../src/runtime/index.js';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openStore, StoreError, type Store } from '../../src/master/index.js';
import { ensureAdminToken } from '../../src/master/auth.js';
import { hashToken, newToken } from '../../src/master/index.js';
import { storeTargets, type StoreTarget } from './stores.js';

const run = (id: string, namespace = 'team-a', app = 'hello') => ({ id, namespace, app, spec: { name: app }, runtime: 'local', createdBy: 'tester' });

for (const { kind, make } of storeTargets) {
  describe(`the ${kind} store`, () => {
    let target: StoreTarget | undefined;
    let store: Store;
    // A missing PostgreSQL fails every test with the reason (never a skip).
    let setupError: unknown;
    const test = (name: string, fn: () => Promise<void>) =>
      nodeTest(name, async () => {
        if (setupError) throw setupError;
        await fn();
      });

    before(async () => {
      try {
        target = await make();
        store = await openStore(target.location);
      } catch (error) {
        setupError = error;
      }
    });
    after(async () => {
      await store?.close();
      await target?.drop();
    });

    test('migrations run once and record the schema version', async () => {
      assert.equal(store.kind, kind);
      assert.equal(await store.schemaVersion(), 3);
      assert.equal(await store.migrate(), 3, 'a second migrate is a no-op');
      assert.equal(await store.schemaVersion(), 3);
    });

    test('apps are versioned', async () => {
      const v1 = await store.putApp('team-a', 'hello', { name: 'hello', v: 1 }, 'alice');
      const v2 = await store.putApp('team-a', 'hello', { name: 'hello', v: 2 }, 'bob');
      await store.putApp('team-b', 'hello', { name: 'hello', v: 9 }, 'carol');
      assert.deepEqual([v1.version, v2.version], [1, 2]);
      assert.deepEqual((await store.getApp('team-a', 'hello'))?.spec, { name: 'hello', v: 2 });
      assert.deepEqual((await store.getApp('team-a', 'hello', 1))?.spec, { name: 'hello', v: 1 });
      assert.equal((await store.getApp('team-a', 'hello', 1))?.createdBy, 'alice');
      assert.equal(await store.getApp('team-a', 'nope'), undefined);
      assert.deepEqual((await store.listApps('team-a')).map((a) => [a.name, a.version]), [['hello', 2]]);
      assert.deepEqual((await store.getApp('team-b', 'hello'))?.spec, { name: 'hello', v: 9 });
    });

    test('runs keep every valid transition with timestamps; invalid ones are refused', async () => {
      const { run: created, created: isNew } = await store.createRun(run('r-life'));
      assert.equal(isNew, true);
      assert.equal(created.state, 'PENDING');
      assert.ok(await store.transition('r-life', 'STARTING'));
      assert.equal(await store.transition('r-life', 'STARTING'), undefined, 'unchanged state is no event');
      assert.ok(await store.transition('r-life', 'RUNNING', { message: 'all up' }));
      assert.equal(await store.transition('r-life', 'PENDING'), undefined, 'RUNNING -> PENDING is not allowed');
      const done = await store.transition('r-life', 'COMPLETED', { reason: 'Done' });
      assert.equal(done?.from, 'RUNNING');
      assert.equal(await store.transition('r-life', 'FAILED'), undefined, 'a terminal run stays terminal');
      const history = await store.history('r-life');
      assert.deepEqual(history.map((e) => e.to), ['PENDING', 'STARTING', 'RUNNING', 'COMPLETED']);
      for (let i = 1; i < history.length; i++) {
        assert.ok(canTransition(history[i - 1].to, history[i].to));
        assert.equal(history[i].from, history[i - 1].to);
        assert.ok(history[i].at >= history[i - 1].at && history[i].id > history[i - 1].id);
      }
      const final = await store.getRun('r-life');
      assert.equal(final?.state, 'COMPLETED');
      assert.equal(final?.reason, 'Done');
      assert.ok(final?.finishedAt && final.finishedAt >= final.createdAt);
      await assert.rejects(store.transition('no-such-run', 'RUNNING'), (e: unknown) => e instanceof StoreError && e.code === 'not_found');
    });

    test('an idempotency key returns the same run, also for concurrent submissions', async () => {
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => store.createRun(run(`r-idem-${i}`, 'team-i'), { idempotencyKey: 'key-1' })));
      const created = results.filter((r) => r.created);
      assert.equal(created.length, 1, 'exactly one submission created a run');
      assert.ok(results.every((r) => r.run.id === created[0].run.id));
      assert.equal((await store.listRuns({ namespace: 'team-i' })).items.length, 1);
      const other = await store.createRun(run('r-idem-other', 'team-j'), { idempotencyKey: 'key-1' });
      assert.equal(other.created, true, 'keys are per namespace');
    });

    test('the admission limit admits exactly the limit under concurrency; the rest are REJECTED records', async () => {
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => store.createRun(run(`r-adm-${i}`, 'team-adm'), { admissionLimit: 3 })));
      assert.equal(results.filter((r) => !r.rejected).length, 3);
      const rejected = results.filter((r) => r.rejected);
      assert.equal(rejected.length, 7);
      for (const r of rejected) {
        assert.equal(r.run.state, 'REJECTED');
        assert.match(r.run.message ?? '', /limit is 3/);
        assert.equal((await store.getRun(r.run.id))?.state, 'REJECTED', 'the REJECTED record is stored');
      }
      assert.equal(await store.countLive('team-adm'), 3);
      await store.transition(results.find((r) => !r.rejected)!.run.id, 'KILLED');
      assert.equal((await store.createRun(run('r-adm-late', 'team-adm'), { admissionLimit: 3 })).rejected, false, 'a freed slot admits again');
    });

    test('queue: over the limit a queued run waits with its position, is admitted oldest first when a slot frees, exactly once under concurrency', async () => {
      const first = await store.createRun(run('q-a', 'team-q'), { admissionLimit: 1, queue: true });
      assert.equal(first.queuePosition, undefined, 'a free slot admits at once');
      const b = await store.createRun(run('q-b', 'team-q'), { admissionLimit: 1, queue: true });
      const c = await store.createRun(run('q-c', 'team-q'), { admissionLimit: 1, queue: true });
      assert.deepEqual([b.rejected, b.queuePosition, b.run.state, b.run.reason], [false, 1, 'PENDING', 'Queued']);
      assert.equal(c.queuePosition, 2);
      assert.equal(await store.queuePosition('q-c'), 2);
      assert.equal(await store.countLive('team-q'), 1, 'queued runs hold no slot');
      assert.equal((await store.createRun(run('q-x', 'team-q'), { admissionLimit: 1 })).rejected, true, 'without queue: still rejected');
      assert.deepEqual(await store.queuedNamespaces(), ['team-q']);
      assert.equal(await store.admitQueued('team-q', 1, 10_000), undefined, 'no slot while q-a lives');
      await store.transition('q-a', 'COMPLETED');
      // Several masters pumping at once: one slot, one admission.
      const before = Date.now();
      const admitted = (await Promise.all(Array.from({ length: 5 }, () => store.admitQueued('team-q', 1, 10_000)))).filter((r) => r !== undefined);
      assert.deepEqual(admitted.map((r) => r!.id), ['q-b'], 'the oldest, once');
      const b2 = await store.getRun('q-b');
      assert.equal(b2?.queuedAt, undefined);
      assert.equal(b2?.launchedAt, undefined, 'admitted, not handed to the runtime yet');
      assert.ok(b2?.handoverUntil !== undefined && b2.handoverUntil >= before + 10_000, 'its admitter holds the hand-over');
      assert.equal(await store.queuePosition('q-b'), undefined);
      assert.equal(await store.queuePosition('q-c'), 1, 'moved up');
      // Ending a queued run takes it out of the queue.
      await store.transition('q-c', 'KILLED', { reason: 'Dequeued' });
      assert.equal(await store.queuePosition('q-c'), undefined);
      assert.deepEqual(await store.queuedNamespaces(), []);
    });

    test('hand-over: an admitted run waits to be launched; after its hand-over time one master takes it over; launched runs are not', async () => {
      const t0 = Date.now();
      const direct = await store.createRun(run('h-a', 'team-h'), { handoverMs: 5000 });
      assert.deepEqual([direct.run.launchedAt, direct.run.handoverUntil !== undefined], [undefined, true]);
      assert.deepEqual([(await store.getRun('h-a'))?.launchedAt, (await store.getRun('h-a'))?.handoverUntil], [undefined, direct.run.handoverUntil]);
      assert.ok(direct.run.handoverUntil! >= t0 + 5000);
      assert.equal(await store.takeOverHandover('h-a', 5000), undefined, 'not while its master may still hand it over');
      // Its master died: after the hand-over time, of five masters taking over at once, one gets it.
      const later = direct.run.handoverUntil! + 1;
      const claims = (await Promise.all(Array.from({ length: 5 }, () => store.takeOverHandover('h-a', 5000, later)))).filter((r) => r !== undefined);
      assert.equal(claims.length, 1, 'one master takes the hand-over over');
      assert.equal(claims[0]!.handoverUntil, later + 5000);
      assert.equal(await store.takeOverHandover('h-a', 5000, later + 1), undefined, 'held again by the one that took it over');
      assert.equal(await store.markLaunched('h-a', later + 10), true);
      assert.equal(await store.markLaunched('h-a', later + 20), false, 'recorded once');
      const launched = await store.getRun('h-a');
      assert.deepEqual([launched?.launchedAt, launched?.handoverUntil], [later + 10, undefined]);
      assert.equal(await store.takeOverHandover('h-a', 5000, later + 60_000), undefined, 'a launched run is never handed over again');
      // Without handoverMs (adopted, imported) and for rejected or queued runs there is nothing to hand over now.
      const adopted = await store.createRun({ ...run('h-b', 'team-h'), state: 'RUNNING' }, { handoverMs: 5000 });
      assert.ok(adopted.run.launchedAt !== undefined && adopted.run.handoverUntil === undefined);
      assert.ok((await store.createRun(run('h-c', 'team-h'))).run.launchedAt !== undefined);
      const queued = await store.createRun(run('h-d', 'team-hq'), { handoverMs: 5000, admissionLimit: 0, queue: true });
      assert.deepEqual([queued.run.launchedAt, queued.run.handoverUntil], [undefined, undefined]);
      assert.equal(await store.takeOverHandover('h-d', 5000, Date.now() + 3_600_000), undefined, 'a queued run is admitted, not taken over');
      // Cancelling before the hand-over: only while not launched.
      await store.createRun(run('h-e', 'team-h'), { handoverMs: 5000 });
      assert.ok(await store.transition('h-e', 'KILLED', { unlessLaunched: true }));
      assert.equal(await store.takeOverHandover('h-e', 5000, Date.now() + 3_600_000), undefined, 'an ended run is not handed over');
      assert.equal(await store.transition('h-a', 'KILLED', { unlessLaunched: true }), undefined, 'a launched run is stopped through the runtime');
    });

    test('log archives: ended launched runs whose archive is not complete are found until it is', async () => {
      const pending = async () => (await store.runsWithLogsToArchive()).map((r) => r.id).filter((id) => id.startsWith('la-'));
      await store.createRun(run('la-live', 'team-la'));
      await store.createRun(run('la-ended', 'team-la'));
      await store.createRun(run('la-never', 'team-la'), { handoverMs: 5000 }); // never launched
      await store.createRun(run('la-rejected', 'team-la'), { admissionLimit: 0 });
      assert.deepEqual(await pending(), [], 'live, never launched and rejected runs have nothing pending');
      await store.transition('la-ended', 'COMPLETED');
      await store.transition('la-never', 'KILLED');
      assert.deepEqual(await pending(), ['la-ended']);
      await store.markLogsArchived('la-ended', 1234);
      assert.equal((await store.getRun('la-ended'))?.logsArchivedAt, 1234);
      assert.deepEqual(await pending(), []);
      await store.importRuns([{ ...run('la-imported', 'team-la'), state: 'COMPLETED' }]);
      assert.deepEqual(await pending(), [], 'imported ended runs are archived');
    });

    test('importRuns stores many runs in one go, each with its first event', async () => {
      await store.importRuns(Array.from({ length: 25 }, (_, i) => ({ ...run(`imp-${i}`, 'team-imp', `app${i % 2}`), state: i % 5 ? ('COMPLETED' as const) : ('FAILED' as const), createdAt: Date.UTC(2026, 0, 1) + i })));
      const page = await store.listRuns({ namespace: 'team-imp', states: ['FAILED'], limit: 100 });
      assert.deepEqual(page.items.map((r) => r.id), ['imp-20', 'imp-15', 'imp-10', 'imp-5', 'imp-0']);
      assert.equal(page.items[0].finishedAt, Date.UTC(2026, 0, 1) + 20);
      assert.deepEqual((await store.history('imp-3')).map((e) => e.to), ['COMPLETED']);
      await assert.rejects(store.importRuns([run('imp-ok', 'team-imp'), run('imp-3', 'team-imp')]), 'a duplicate id fails the whole import');
      assert.equal(await store.getRun('imp-ok'), undefined, 'nothing of a failed import is stored');
    });

    test('list runs: filters, newest first, continue-token paging returns each run exactly once', async () => {
      const base = Date.UTC(2026, 0, 1);
      // 130 runs, some sharing a timestamp (the id breaks ties), two apps.
      for (let i = 0; i < 130; i++) {
        await store.createRun({ ...run(`p-${String(i).padStart(3, '0')}`, 'team-p', i % 2 ? 'odd' : 'even'), createdAt: base + Math.floor(i / 3) * 1000 });
      }
      for (let i = 0; i < 130; i += 5) await store.transition(`p-${String(i).padStart(3, '0')}`, 'FAILED');
      const seen: string[] = [];
      let token: string | undefined;
      let pages = 0;
      do {
        const page = await store.listRuns({ namespace: 'team-p', limit: 50, continueToken: token });
        seen.push(...page.items.map((r) => r.id));
        token = page.continueToken;
        pages++;
      } while (token);
      assert.equal(pages, 3);
      assert.equal(seen.length, 130);
      assert.equal(new Set(seen).size, 130, 'no run twice');
      const all = (await store.listRuns({ namespace: 'team-p', limit: 1000 })).items;
      assert.deepEqual(seen, all.map((r) => r.id));
      for (let i = 1; i < all.length; i++) {
        const [a, b] = [all[i - 1], all[i]];
        assert.ok(a.createdAt > b.createdAt || (a.createdAt === b.createdAt && a.id > b.id), 'sorted newest first, then by id');
      }
      const odd = await store.listRuns({ namespace: 'team-p', app: 'odd', limit: 1000 });
      assert.equal(odd.items.length, 65);
      assert.ok(odd.items.every((r) => r.app === 'odd'));
      const failed = await store.listRuns({ namespace: 'team-p', states: ['FAILED'], limit: 1000 });
      assert.equal(failed.items.length, 26);
      const window = await store.listRuns({ namespace: 'team-p', since: base + 10_000, until: base + 20_000, limit: 1000 });
      assert.equal(window.items.length, 30);
      assert.ok(window.items.every((r) => r.createdAt >= base + 10_000 && r.createdAt < base + 20_000));
      assert.equal((await store.listRuns({ namespace: 'nobody' })).items.length, 0);
      // Counts by state, for one namespace (and app), as the dashboard shows them.
      assert.deepEqual(await store.countByState({ namespace: 'team-p' }), { PENDING: 104, FAILED: 26 });
      assert.deepEqual(await store.countByState({ namespace: 'team-p', app: 'odd' }), { PENDING: 52, FAILED: 13 });
      assert.deepEqual(await store.countByState({ namespace: 'nobody' }), {});
      await assert.rejects(store.listRuns({ namespace: 'team-p', continueToken: 'garbage' }), /continue token/);
    });

    test('events are resumable from an id', async () => {
      const start = (await store.events(0, { limit: 5000 })).at(-1)?.id ?? 0;
      await store.createRun(run('r-ev', 'team-ev'));
      await store.transition('r-ev', 'RUNNING');
      await store.transition('r-ev', 'KILLED');
      const events = await store.events(start, { namespace: 'team-ev' });
      assert.deepEqual(events.map((e) => e.to), ['PENDING', 'RUNNING', 'KILLED']);
      assert.deepEqual((await store.events(events[0].id, { runId: 'r-ev' })).map((e) => e.to), ['RUNNING', 'KILLED'], 'resumes after the given id');
      assert.equal((await store.events(events[2].id, { runId: 'r-ev' })).length, 0);
    });

    test('tokens are found by hash only, and revoked', async () => {
      const t = await store.addToken({ id: 'tok-1', name: 'ci', hash: 'a'.repeat(64), roles: { 'team-a': 'operator' } });
      assert.deepEqual((await store.tokenByHash('a'.repeat(64)))?.roles, { 'team-a': 'operator' });
      assert.equal(await store.tokenByHash('b'.repeat(64)), undefined);
      assert.ok(!JSON.stringify(await store.listTokens()).includes('a'.repeat(64)), 'listing never returns the hash');
      assert.equal(await store.revokeToken(t.id), true);
      assert.equal(await store.tokenByHash('a'.repeat(64)), undefined);
      assert.equal(await store.revokeToken(t.id), false);
    });

    // Two masters started at once, as two replicas of a Deployment are: each has its own connection to the
    // store, and they find no token file (same host) or one token file (a mounted Secret) and an empty store.
    for (const fileExists of [false, true]) {
      test(`two masters starting at once on an empty store end up with one admin token (token file ${fileExists ? 'given' : 'written by one of them'})`, async () => {
        const fresh = await make();
        const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-admin-token-'));
        const [a, b] = [await openStore(fresh.location), await openStore(fresh.location)];
        try {
          const file = path.join(dir, 'admin-token');
          if (fileExists) await fs.writeFile(file, `${newToken()}\n`, { mode: 0o600 });
          // Both look the token up before either adds it (the window two processes can hit), held open here.
          let arrived = 0;
          let openWindow: () => void = () => undefined;
          const bothLooked = new Promise<void>((resolve) => { openWindow = resolve; });
          const inWindow = (store: Store): Store => new Proxy(store, {
            get(target, key, receiver) {
              if (key !== 'tokenByHash') return Reflect.get(target, key, receiver);
              return async (hash: string) => {
                const found = await target.tokenByHash(hash);
                if (++arrived === 2) openWindow();
                await bothLooked;
                return found;
              };
            },
          });
          const results = await Promise.all([ensureAdminToken(inWindow(a), file), ensureAdminToken(inWindow(b), file)]);
          assert.deepEqual(results.map((r) => r.created).sort(), fileExists ? [false, false] : [false, true], 'at most one wrote the file, the other read it');
          const token = (await fs.readFile(file, 'utf8')).trim();
          const admins = (await a.listTokens()).filter((t) => t.name === 'admin' && t.revokedAt === undefined);
          assert.equal(admins.length, 1, `one live admin token: ${JSON.stringify(admins)}`);
          assert.equal((await b.tokenByHash(hashToken(token)))?.id, admins[0].id, "the file's token is the admin token");
        } finally {
          await a.close();
          await b.close();
          await fresh.drop();
          await fs.rm(dir, { recursive: true, force: true });
        }
      });
    }

    test('audit records', async () => {
      await store.addAudit({ actor: 'alice', namespace: 'team-a', action: 'run.start', target: 'r-1', outcome: 'ok' });
      await store.addAudit({ actor: 'bob', namespace: 'team-b', action: 'run.kill', target: 'r-2', outcome: 'forbidden' });
      const a = await store.listAudit({ namespace: 'team-a' });
      assert.equal(a.length, 1);
      assert.deepEqual([a[0].actor, a[0].action, a[0].target, a[0].outcome], ['alice', 'run.start', 'r-1', 'ok']);
      assert.equal((await store.listAudit()).length, 2);
    });

    test('10,000 archived log lines page back exactly once each, with per-source counts', async () => {
      const lines = Array.from({ length: 10_000 }, (_, i) => `line ${i + 1}`);
      for (let i = 0; i < lines.length; i += 1000) {
        await store.appendLogs('r-logs', 'main', String((i / 1000) % 2), lines.slice(i, i + 1000).map((line) => ({ line, stream: 'stdout' as const })));
      }
      assert.equal(await store.archivedLineCount('r-logs', 'main', '0'), 5000);
      assert.equal(await store.archivedLineCount('r-logs', 'main', '1'), 5000);
      assert.equal(await store.archivedLineCount('r-logs', 'main', '2'), 0);
      const got: string[] = [];
      let after = 0;
      for (;;) {
        const page = await store.readLogs('r-logs', { after, limit: 777 });
        if (page.length === 0) break;
        got.push(...page.map((l) => l.line));
        after = page[page.length - 1].seq;
      }
      assert.deepEqual(got, lines);
      // Paging back from the end (before), as the dashboard shows an ended run's output.
      const back: string[] = [];
      let before = Number.MAX_SAFE_INTEGER;
      for (;;) {
        const page = await store.readLogs('r-logs', { before, limit: 999 });
        if (page.length === 0) break;
        assert.ok(page.length <= 999);
        for (let i = 1; i < page.length; i++) assert.equal(page[i].seq, page[i - 1].seq + 1, 'oldest first within a page');
        back.unshift(...page.map((l) => l.line));
        before = page[0].seq;
      }
      assert.deepEqual(back, lines);
      assert.deepEqual((await store.readLogs('r-logs', { before: 11, limit: 3 })).map((l) => l.line), ['line 8', 'line 9', 'line 10']);
    });

    test('data survives reopening the store', async () => {
      await store.close();
      store = await openStore(target!.location);
      assert.equal((await store.getRun('r-life'))?.state, 'COMPLETED');
      assert.equal((await store.history('r-life')).length, 4);
      assert.ok(isTerminal((await store.getRun('r-life'))!.state));
    });
  });
}

describe('opening a store', () => {
  nodeTest('unknown --store values are refused with what to write', async () => {
    await assert.rejects(openStore('mysql://x'), /--store must be sqlite:<file> or postgres:\/\//);
    await assert.rejects(openStore('sqlite:'), /needs a file/);
  });
});
