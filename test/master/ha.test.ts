// Two `weft master` processes on one PostgreSQL store with leader election on
// etcd, and again with a Kubernetes Lease (the test control plane): 200
// submissions from 8 concurrent clients, over a per-namespace admission limit
// (queued ones wait their turn); the leader is SIGKILLed in the middle, at a
// hand-over of a run to the runtime (WEFT_MASTER_TEST_PAUSE_HANDOVER stops it
// there, with its other hand-overs finished), while direct submissions to it wait
// on their own hand-overs (their clients retry on the other master). Every acknowledged submission
// exists exactly once and ends COMPLETED, having run once; the failover time
// (from the kill to the survivor leading) is measured and reported. The second
// hundred submissions start when the leader has paused, and the kill waits for
// a few of them, so it lands mid-submission on a fast machine as on a slow one. Each run
// is a shell process (test/support/shell-image.ts), so 200 fit on 2 cores.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { isTerminal, type RunState } from '../../src/runtime/index.js';
import { createLocalRuntime } from '../../src/runtime/local/index.js';
import { buildShellImage, type ShellImage } from '../support/shell-image.js';
import { call, spawnMaster, waitFor, type MasterProcess } from './helpers.js';
import { Progress, withDeadline } from '../support/wait.js';
import { postgresTarget, type StoreTarget } from './stores.js';

const TOTAL = 200;
const CLIENTS = 8;
const LIMIT = 30;
/**
 * The leader stops before its 12th hand-over. The first LIMIT submissions are admitted at once and every other one
 * goes to the first master, so it reaches its 12th hand-over with its own direct submissions, however the later
 * hand-overs split between the masters. (At its 45th, a CI run saw the leader make only 43 of the first hundred's
 * hand-overs, the other master 57 (each master pumps the queue on its own submissions): the pause never came, and
 * once the test gave up waiting for it, the pause came late and direct submissions hung on it until the test timed out.)
 */
const PAUSE_AT = 12;
/**
 * Submissions from this index on wait until the leader has paused, so that the kill falls in the middle of the
 * submissions however fast the machine is.
 */
const SECOND_HALF = 100;
/** The kill waits for this many submissions of the second half to be acknowledged, so some are in flight across it. */
const ACKED_BEFORE_KILL = 8;

interface Listed {
  id: string;
  state: RunState;
  reason?: string;
}

const haSuite = (election: 'etcd' | 'kubernetes') =>
  describe(`two masters on PostgreSQL with leader election on ${election === 'etcd' ? 'etcd' : 'a Kubernetes Lease'}`, () => {
    let image: ShellImage;
    let db: StoreTarget;
    let work: string;
    let tokenFile: string;
    const masters: MasterProcess[] = [];

    let kube: { kubeconfig: string; namespace: string; core: CoreV1Api } | undefined;
    const electionFlags = (): { args: string[]; env: Record<string, string> } => {
      if (election === 'kubernetes') {
        return { args: ['--leader-election', 'kubernetes', '--kubeconfig', kube!.kubeconfig, '-n', kube!.namespace], env: {} };
      }
      const endpoints = process.env.WEFT_ETCD_ENDPOINTS;
      if (!endpoints) throw new Error('WEFT_ETCD_ENDPOINTS is not set: run the tests with scripts/test (scripts/test.d/40-etcd-up.sh starts etcd)');
      return { args: ['--leader-election', 'etcd'], env: { WEFT_ETCD_ENDPOINTS: endpoints } };
    };

    const startMaster = async (env: Record<string, string> = {}): Promise<MasterProcess> => {
      const flags = electionFlags();
      const m = await spawnMaster(
        [
          '--store', db.location, '--runtime', 'local', '--admin-token-file', tokenFile, ...flags.args,
          '--lease-duration', '3', '--reconcile-interval', '2', '--handover-timeout', '5', '--admission-limit', String(LIMIT), '--no-dashboard',
        ],
        { XDG_STATE_HOME: path.join(work, 'state'), WEFT_LOCAL_MODE: 'host', ...flags.env, ...env },
      );
      masters.push(m);
      return m;
    };
    /** How often a master stepped down before (a lease lost under load says so here). */
    const stepDowns = (m: MasterProcess) => {
      const lines = m.log().split('\n').filter((l) => l.includes('stepped down'));
      return lines.length === 0 ? 'never stepped down' : `stepped down ${lines.length} time(s), last: ${lines.at(-1)!.slice(0, 300)}`;
    };
    const isLeader = async (m: MasterProcess) => (await call(m.url, 'GET', '/readyz').catch(() => undefined))?.json?.leader === true;

    before(async () => {
      if (election === 'kubernetes') {
        if (!process.env.KUBECONFIG) throw new Error('KUBECONFIG is not set: run the tests with scripts/test (scripts/test.d/50-k8s-up.sh starts the control plane)');
        const kc = new KubeConfig();
        kc.loadFromFile(process.env.KUBECONFIG);
        const core = kc.makeApiClient(CoreV1Api);
        const namespace = `ha-${randomBytes(3).toString('hex')}`;
        await core.createNamespace({ body: { metadata: { name: namespace } } });
        kube = { kubeconfig: process.env.KUBECONFIG, namespace, core };
      }
      image = await buildShellImage();
      db = await postgresTarget();
      work = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-master-ha-'));
      tokenFile = path.join(work, 'admin-token');
    });
    after(async () => {
      for (const m of masters) await m.stop();
      if (work) {
        const runtime = await createLocalRuntime({ stateDir: path.join(work, 'state', 'weft', 'local'), mode: 'host' });
        for (const s of await runtime.list({ liveOnly: true }).catch(() => [])) await runtime.kill(s.runId).catch(() => undefined);
        await runtime.close();
      }
      await db?.drop();
      if (kube) await kube.core.deleteNamespace({ name: kube.namespace }).catch(() => undefined);
      await image?.remove();
      if (work) await fs.rm(work, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
    });

    test(`the leader SIGKILLed at a hand-over during ${TOTAL} concurrent submissions: each acknowledged submission exists once, runs once and completes`, { timeout: 600_000 }, async (ctx) => {
      const progress = new Progress();
      let leader: MasterProcess | undefined;
      let survivor: MasterProcess | undefined;
      let lastSeen: Listed[] = [];
      // What a failure within the deadline says: the steps done, the runs' states, both masters' last words.
      const explain = () => {
        const states = new Map<string, number>();
        for (const r of lastSeen) states.set(r.state, (states.get(r.state) ?? 0) + 1);
        const open = lastSeen.filter((r) => !isTerminal(r.state)).slice(0, 20).map((r) => `${r.id} ${r.state} ${r.reason ?? ''}`);
        return [
          progress.toString(),
          `runs last listed: ${lastSeen.length} (${[...states].map(([s, n]) => `${n} ${s}`).join(', ')})${open.length ? `; not ended: ${open.join('; ')}` : ''}`,
          `the survivor's log (last 4000 chars):\n${survivor?.log().slice(-4000) ?? '(not started)'}`,
          `the first leader's log (last 2000 chars):\n${leader?.log().slice(-2000) ?? '(not started)'}`,
        ].join('\n');
      };
      await withDeadline(570_000, async () => {
        // The first master leads (it is alone when it starts) and is the one that stops at a hand-over.
        const first = (leader = await startMaster({ WEFT_MASTER_TEST_PAUSE_HANDOVER: String(PAUSE_AT) }));
        await waitFor('the first master to lead', async () => ((await isLeader(first)) ? true : undefined), 30_000);
        progress.step('the first master leads');
        const second = (survivor = await startMaster());
        assert.equal(await isLeader(second), false, 'exactly one leader');
        progress.step('the second master is up, not leading');
        const token = (await fs.readFile(tokenFile, 'utf8')).trim();

        const acked = new Map<string, string>(); // idempotency key -> run id
        const answers = new Map<number, number>();
        let killedAt = 0;
        let submittedAtKill = 0;
        let releaseSecondHalf: () => void = () => undefined;
        const secondHalfReleased = new Promise<void>((res) => { releaseSecondHalf = res; });
        // Failover time: from the SIGKILL to the survivor's /readyz saying it leads (it then watches, archives
        // and reconciles; every master serves writes throughout). Polled every 50 ms from the kill on.
        const failover = (async () => {
          const paused = await first.waitForLog(/test hook: paused before handing run (\S+) to the runtime/, 180_000);
          const ackedAtPause = acked.size;
          progress.step(`the first leader paused at the hand-over of ${paused[1]}, ${ackedAtPause} submissions acknowledged`);
          releaseSecondHalf();
          const killDeadline = Date.now() + 5_000;
          while (acked.size < ackedAtPause + ACKED_BEFORE_KILL && Date.now() < killDeadline) await new Promise((res) => setTimeout(res, 10));
          submittedAtKill = acked.size;
          const ledAtKill = await isLeader(first);
          killedAt = Date.now();
          await first.kill();
          if (!ledAtKill) {
            // The scenario is then a non-leader killed at a hand-over: still every run exactly once, but no failover.
            ctx.diagnostic(`NOT checked this time: the failover of a killed leader. The first master had lost the lead before the kill (${stepDowns(first)}); the leader that took its hand-over over was already leading`);
          }
          progress.step(`the first leader SIGKILLed, ${submittedAtKill} submissions acknowledged`);
          ctx.diagnostic(`leader SIGKILLed at the hand-over of ${paused[1]}, ${submittedAtKill} submissions acknowledged by then (${ackedAtPause} when it paused)`);
          for (;;) {
            if (await isLeader(second)) return Date.now() - killedAt;
            if (Date.now() - killedAt > 120_000) throw new Error('the survivor did not lead within 120 s of the kill');
            await new Promise((res) => setTimeout(res, 50));
          }
        })();
        const body = { spec: { name: 'ha', runnables: [{ name: 'main', kind: 'batch', image: image.reference, args: ['sh', '-c', 'echo "started $WEFT_RUN_ID"; sleep 1; echo done'] }] }, queue: true };
        let next = 0;
        const client = async () => {
          for (let i = next++; i < TOTAL; i = next++) {
            if (i >= SECOND_HALF) await secondHalfReleased;
            const key = `submission-${i}`;
            // Each client starts on a master and moves to the other one on a failure (same key: a retry, not a new run).
            let target = [first, second][i % 2];
            for (let attempt = 0; ; attempt++) {
              const r = await call(target.url, 'POST', '/api/v1/namespaces/ha/runs', { token, body, headers: { 'idempotency-key': key }, timeoutMs: 30_000 }).catch(() => undefined);
              if (r) answers.set(r.status, (answers.get(r.status) ?? 0) + 1);
              if (r && [200, 201, 202].includes(r.status)) {
                const known = acked.get(key);
                assert.ok(!known || known === r.json.id, `key ${key} answered two runs`);
                acked.set(key, r.json.id);
                if (acked.size % 50 === 0) progress.step(`${acked.size} submissions acknowledged`);
                break;
              }
              assert.ok(attempt < 40, `submission ${key} was never acknowledged (last answer ${r?.status} ${r?.text})`);
              target = target === first ? second : first;
              await new Promise((res) => setTimeout(res, 250));
            }
          }
        };
        const t0 = Date.now();
        // A failed failover (the leader never paused) must fail the test, not leave the second half waiting.
        failover.catch(() => releaseSecondHalf());
        await Promise.all(Array.from({ length: CLIENTS }, () => client()));
        const submitSeconds = (Date.now() - t0) / 1000;
        assert.equal(acked.size, TOTAL, 'every submission was acknowledged (by one master or the other)');
        const failoverMs = await failover;
        progress.step(`the survivor leads, ${failoverMs} ms after the kill`);
        assert.ok(killedAt > t0 && submittedAtKill < TOTAL, 'the leader was killed during the submissions');
        ctx.diagnostic(`${TOTAL} submissions from ${CLIENTS} clients acknowledged in ${submitSeconds.toFixed(1)} s (answers: ${[...answers].map(([s, n]) => `${n}x${s}`).join(', ')})`);
        ctx.diagnostic(`failover (${election}): the surviving master led ${failoverMs} ms after the leader was SIGKILLed (lease 3 s, /readyz polled every 50 ms); the first master ${stepDowns(first)}, the second ${stepDowns(second)}`);

        const listAll = async (): Promise<Listed[]> => {
          const items: Listed[] = [];
          let cont: string | undefined;
          do {
            const page = await call(second.url, 'GET', `/api/v1/namespaces/ha/runs?limit=100${cont ? `&continue=${encodeURIComponent(cont)}` : ''}`, { token, timeoutMs: 30_000 });
            assert.equal(page.status, 200, page.text);
            items.push(...page.json.items);
            cont = page.json.continue;
          } while (cont);
          return items;
        };
        const runs = await waitFor('every run to end', async () => {
          lastSeen = await listAll();
          return lastSeen.length >= TOTAL && lastSeen.every((r) => isTerminal(r.state)) ? lastSeen : undefined;
        }, 300_000);
        const endedAfterKill = (Date.now() - killedAt) / 1000;
        progress.step(`every run ended, ${endedAfterKill.toFixed(1)} s after the kill`);
        assert.equal(runs.length, TOTAL, 'no run was duplicated');
        assert.deepEqual(new Set(runs.map((r) => r.id)), new Set(acked.values()), 'the stored runs are exactly the acknowledged ones');
        const notCompleted = runs.filter((r) => r.state !== 'COMPLETED');
        assert.deepEqual(notCompleted, [], 'every run COMPLETED (runs the killed leader had admitted but not started were started by the survivor)');
        // Each ran once: one instance in the runtime and one "started" line in its archived output. Checked 10
        // runs at a time, so that archives the survivor is still completing are waited for side by side.
        let checked = 0;
        const check = async (r: Listed) => {
          const detail = await call(second.url, 'GET', `/api/v1/namespaces/ha/runs/${r.id}`, { token, timeoutMs: 30_000 });
          assert.equal(detail.json.status.runnables[0]?.instances.length, 1, `${r.id}: one instance`);
          let text: string[] = [];
          const lines = await waitFor(`${r.id}'s archived output`, async () => {
            text = (await call(second.url, 'GET', `/api/v1/namespaces/ha/runs/${r.id}/logs`, { token, timeoutMs: 30_000 })).text.split('\n');
            return text.includes('done') ? text : undefined;
          }, 60_000).catch((error: Error) => {
            const about = (m: MasterProcess) => m.log().split('\n').filter((l) => l.includes(r.id) || l.includes('archiv')).slice(-30).join('\n');
            throw new Error(`${error.message}: archived ${JSON.stringify(text)}; the survivor's log about it:\n${about(second)}\nthe killed leader's:\n${about(first)}`);
          });
          assert.deepEqual(lines.filter((l) => l.startsWith('started')), [`started ${r.id}`], `${r.id} ran once`);
          if (++checked % 50 === 0) progress.step(`${checked} runs checked: one instance, archived output with one start`);
        };
        const pending = [...runs];
        await Promise.all(Array.from({ length: 10 }, async () => {
          for (let r = pending.shift(); r; r = pending.shift()) await check(r);
        }));
        const metrics = (await call(second.url, 'GET', '/metrics')).text;
        const handedOver = Number(/weft_master_reconciler_actions_total\{action="handover_taken_over"\} (\d+)/.exec(metrics)?.[1] ?? 0);
        const recorded = Number(/weft_master_reconciler_actions_total\{action="handover_recorded"\} (\d+)/.exec(metrics)?.[1] ?? 0);
        assert.ok(handedOver >= 1, 'the survivor started at least the run the leader stopped at');
        ctx.diagnostic(`all ${TOTAL} COMPLETED ${endedAfterKill.toFixed(1)} s after the kill; the survivor took over ${handedOver} hand-over(s) and recorded ${recorded} the leader had done`);
      }, explain);
    });
  });

haSuite('etcd');
haSuite('kubernetes');
