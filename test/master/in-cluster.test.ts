// The master in the cluster: deploy/master-rbac.yaml and deploy/master.yaml applied to a fresh
// namespace of the test environment (image, namespace and timings replaced), as a user installs
// them: two replicas of weft's own image on the real node, each with the least-privilege
// ServiceAccount (the in-cluster config: token and CA of the pod, the API server through the
// `kubernetes` Service), one PostgreSQL store outside the cluster (the test PostgreSQL on the
// host's loopback, reached through the Service postgres.testenv-host that the test environment
// bridges in), a Lease electing the leader. The leader's pod is deleted while clients submit runs
// (each retrying on the other replica with the same Idempotency-Key): the other leads, every
// acknowledged run exists once and completes, none is lost. Needs scripts/test's environment
// (in-cluster networking, WEFT_TEST_POSTGRES_URL and WEFT_TEST_POSTGRES_CLUSTER_URL).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { CoreV1Api, KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { isTerminal, type RunState } from '../../src/runtime/index.js';
import { applyObjects, deployManifest, kubectl, LogFollower, pushSelfImage, requireInCluster, setArg } from '../support/in-cluster.js';
import { call, waitFor } from './helpers.js';
import { postgresTarget, type StoreTarget } from './stores.js';

const LEASE_S = 3;
/** The Deployment's terminationGracePeriodSeconds: the longest a deleted pod's master may take to stop. */
const GRACE_S = 30;

describe('the master in the cluster: two replicas on weft\'s image, PostgreSQL, a Lease', () => {
  let kc: KubeConfig;
  let core: CoreV1Api;
  let kubeconfig: string;
  let db: StoreTarget | undefined;
  const namespace = `master-ic-${randomBytes(3).toString('hex')}`;
  const token = randomBytes(24).toString('hex');

  before(async () => {
    requireInCluster();
    const clusterUrl = process.env.WEFT_TEST_POSTGRES_CLUSTER_URL;
    if (!clusterUrl) throw new Error('WEFT_TEST_POSTGRES_CLUSTER_URL is not set: scripts/test.d/50-k8s-up.sh bridges the test PostgreSQL (45-postgres-up.sh) into the cluster and sets it');
    kubeconfig = process.env.KUBECONFIG!;
    kc = new KubeConfig();
    kc.loadFromFile(kubeconfig);
    core = kc.makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    db = await postgresTarget();
  });

  after(async () => {
    await core?.deleteNamespace({ name: namespace }).catch(() => undefined);
    // The masters hold connections until their pods are gone; the drop forces them closed.
    await db?.drop().catch(() => undefined);
  });

  const pods = async (): Promise<V1Pod[]> => (await core.listNamespacedPod({ namespace, labelSelector: 'app.kubernetes.io/name=weft-master' })).items;
  const ready = (p: V1Pod) => !p.metadata?.deletionTimestamp && p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
  const url = (p: V1Pod) => `http://${p.status!.podIP}:8420`;
  const isLeader = async (base: string) => (await call(base, 'GET', '/readyz').catch(() => undefined))?.json?.leader === true;
  const masterLogs = async () => {
    const out: string[] = [];
    for (const p of await pods()) out.push(`--- ${p.metadata?.name}:\n${(await kubectl(['--kubeconfig', kubeconfig, 'logs', '-n', namespace, p.metadata!.name!]).catch((e: Error) => e.message)).slice(-3000)}`);
    return out.join('\n');
  };

  test('the leader\'s pod deleted during concurrent submissions: the other replica leads, every acknowledged run exists once and completes', { timeout: 900_000 }, async (t) => {
    const image = await pushSelfImage();
    // The store as the pods dial it: the same database, through the bridged Service.
    const inCluster = new URL(process.env.WEFT_TEST_POSTGRES_CLUSTER_URL!);
    const store = new URL(db!.location);
    store.host = inCluster.host;
    const objects = [...deployManifest('master-rbac.yaml', { namespace, image }), ...deployManifest('master.yaml', { namespace, image })];
    const container = objects.find((o) => o.kind === 'Deployment')!.spec.template.spec.containers[0];
    setArg(container, '--lease-duration', String(LEASE_S));
    setArg(container, '--reconcile-interval', '2');
    // Every API error the runtime would retry quietly is printed: a "forbidden" fails the test.
    container.env.push({ name: 'WEFT_DEBUG', value: '1' });
    const secret = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'weft-master', namespace }, stringData: { store: store.toString(), 'admin-token': token } };
    const applied = Date.now();
    await applyObjects(kubeconfig, [secret, ...objects]);

    const up = await waitFor('two ready masters', async () => {
      const r = (await pods()).filter(ready);
      return r.length === 2 ? r : undefined;
    }, 420_000).catch(async (error: Error) => {
      throw new Error(`${error.message}: ${(await pods()).map((p) => `${p.metadata?.name} ${p.status?.phase} restarts ${p.status?.containerStatuses?.[0]?.restartCount}`).join(', ')}\n${await masterLogs()}`);
    });
    const leaderPod = await waitFor('one leader', async () => {
      const flags = await Promise.all(up.map((p) => isLeader(url(p))));
      return flags.filter(Boolean).length === 1 ? up[flags.indexOf(true)] : undefined;
    }, 60_000);
    t.diagnostic(`two masters ready ${((Date.now() - applied) / 1000).toFixed(1)} s after apply; ${leaderPod.metadata?.name} leads`);
    const survivor = up.find((p) => p !== leaderPod)!;
    // The leader's log to its end (it stops on SIGTERM: stops serving, resigns).
    const leaderLog = new LogFollower(kubeconfig, namespace, leaderPod.metadata!.name!);

    const total = 24;
    const clients = 4;
    const acked = new Map<string, string>();
    const spec = { spec: { name: 'in-cluster', startTimeout: '60s', runnables: [{ name: 'main', kind: 'batch', image: 'example/app:1', args: ['batch'] }] } };
    let deletedAt = 0;
    let failover: Promise<number> | undefined;
    let next = 0;
    const client = async (c: number) => {
      for (let i = next++; i < total; i = next++) {
        const key = `submission-${i}`;
        const giveUp = Date.now() + 180_000;
        for (let attempt = 0; ; attempt++) {
          // Any ready replica (the deleted one stops being ready; its replacement joins); when none
          // is ready at this moment (a probe that timed out on the busy machine), any running one.
          const all = (await pods()).filter((p) => !p.metadata?.deletionTimestamp && p.status?.podIP && p.status.phase === 'Running');
          const targets = all.some(ready) ? all.filter(ready) : all;
          const target = targets[(c + i + attempt) % Math.max(1, targets.length)];
          const r = target ? await call(url(target), 'POST', '/api/v1/namespaces/ic/runs', { token, body: spec, headers: { 'idempotency-key': key } }).catch(() => undefined) : undefined;
          if (r && (r.status === 201 || r.status === 200)) {
            const known = acked.get(key);
            assert.ok(!known || known === r.json.id, `key ${key} answered two runs`);
            acked.set(key, r.json.id);
            break;
          }
          if (Date.now() > giveUp) throw new Error(`submission ${key} was never acknowledged: last answer ${r ? `${r.status} ${r.text}` : 'none'}`);
          await new Promise((res) => setTimeout(res, 250));
        }
        if (i === 8 && !deletedAt) {
          deletedAt = Date.now();
          await core.deleteNamespacedPod({ name: leaderPod.metadata!.name!, namespace });
          failover = (async () => {
            for (;;) {
              if (await isLeader(url(survivor))) return Date.now() - deletedAt;
              if (Date.now() - deletedAt > 120_000) throw new Error('the other master did not lead within 120 s of the delete');
              await new Promise((res) => setTimeout(res, 50));
            }
          })();
        }
      }
    };
    await Promise.all(Array.from({ length: clients }, (_, c) => client(c)));
    assert.ok(deletedAt > 0, 'the leader\'s pod was deleted during the submissions');
    assert.equal(acked.size, total, 'every submission was acknowledged');
    const failoverMs = await failover!;
    await Promise.race([leaderLog.ended, new Promise((r) => setTimeout(r, 5000))]);
    leaderLog.stop();
    const stopping = leaderLog.lines().filter((l) => /stopping|resign|stepped|elected/i.test(l)).slice(-4);
    t.diagnostic(`the other master led ${failoverMs} ms after the leader's pod was deleted (lease ${LEASE_S} s); the deleted leader's last words: ${stopping.join(' | ')} (deleted at ${new Date(deletedAt).toISOString()})`);
    // The deleted leader gets SIGTERM, stops serving and resigns; the other leads a retry period later (or a lease
    // duration after the leader died, had it died without resigning): in any case within the grace period and a lease.
    assert.ok(failoverMs <= (GRACE_S + LEASE_S) * 1000, `failover took ${failoverMs} ms`);

    let lastSeen: Array<{ id: string; state: RunState; reason?: string }> = [];
    const runs = await waitFor('every run to end', async () => {
      const list = await call(url(survivor), 'GET', '/api/v1/namespaces/ic/runs?limit=1000', { token });
      lastSeen = list.json.items;
      return lastSeen.length >= total && lastSeen.every((r) => isTerminal(r.state)) ? lastSeen : undefined;
    }, 300_000).catch(async (error: Error) => {
      const open = lastSeen.filter((r) => !isTerminal(r.state)).map((r) => `${r.id} ${r.state} ${r.reason ?? ''}`);
      throw new Error(`${error.message}: ${lastSeen.length} runs listed, not ended: ${open.join('; ')}\n${await masterLogs()}`);
    });
    assert.equal(runs.length, total, 'no run was duplicated');
    assert.deepEqual(new Set(runs.map((r) => r.id)), new Set(acked.values()), 'the stored runs are exactly the acknowledged ones');
    assert.deepEqual(runs.filter((r) => r.state !== 'COMPLETED').map((r) => `${r.id} ${r.state} ${r.reason ?? ''}`), [], 'no run was lost: every one COMPLETED');
    const detail = await call(url(survivor), 'GET', `/api/v1/namespaces/ic/runs/${runs[0].id}`, { token });
    assert.ok(detail.json.history.length >= 2, 'the history was recorded');

    // The Deployment replaced the deleted pod; the replacement serves as a follower.
    const again = await waitFor('two ready masters again', async () => {
      const r = (await pods()).filter(ready);
      return r.length === 2 && r.every((p) => p.metadata?.name !== leaderPod.metadata?.name) ? r : undefined;
    }, 180_000);
    assert.deepEqual((await Promise.all(again.map((p) => isLeader(url(p))))).filter(Boolean).length, 1, 'one leader among the two');
    const logs = await masterLogs();
    assert.doesNotMatch(logs, /forbidden/i, `a master was refused by the API server (its ServiceAccount lacks a permission):\n${logs}`);
  });
});
