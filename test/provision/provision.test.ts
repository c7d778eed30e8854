// Provisioner hooks against the real API server (the test environment): provisioning twice
// changes nothing; a provisioner SIGKILLed between steps resumes and finishes; tenants are
// isolated by the real RBAC; deprovisioning leaves nothing. With the real node: weft's
// registry (weft's own image) deployed by the hook, pulled and run by the node's containerd.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { BatchV1Api, CoreV1Api, KubeConfig, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import {
  clusterStatus,
  deprovision,
  hookObjects,
  Journal,
  ObjectClient,
  provision,
  RUNNER_ACCOUNT,
  RUNNER_RULES,
  tenantObjects,
  type ClusterConfig,
} from '../../src/provision/index.js';
import { parseTenant } from '../../src/cli/commands/cluster.js';
import { requireKubeconfig } from '../runtime-kube/helpers.js';

const execFileAsync = promisify(execFile);
const weftMain = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'src', 'cli', 'main.js');

describe('provisioning: the journal and the objects (no cluster)', () => {
  test('a step is recorded started before it runs and done after; a resumed phase skips done steps', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-journal-'));
    try {
      const config: ClusterConfig = { provisioner: 'existing', rbac: true, tenants: [] };
      const journal = await Journal.open(dir, 'c1');
      assert.deepEqual(await journal.begin('c1', config, 'provisioning'), { resumed: false });
      await journal.step('one', async () => undefined);
      await assert.rejects(
        journal.step('two', async () => {
          const seen = JSON.parse(await fs.readFile(journal.file, 'utf8'));
          assert.deepEqual(seen.steps.map((s: { name: string; state: string }) => `${s.name}:${s.state}`), ['one:done', 'two:started'], 'recorded before it runs');
          throw new Error('boom');
        }),
        /boom/,
      );
      const again = await Journal.open(dir, 'c1');
      assert.deepEqual(await again.begin('c1', config, 'provisioning'), { resumed: true });
      assert.equal(await again.step('one', async () => assert.fail('a done step runs again')), 'skipped');
      let ran = false;
      assert.equal(await again.step('two', async () => void (ran = true)), 'ran');
      assert.ok(ran, 'a step that only started runs again');
      await again.finish('ready');
      const third = await Journal.open(dir, 'c1');
      assert.deepEqual(await third.begin('c1', config, 'provisioning'), { resumed: false }, 'a finished provisioning is not resumed: it runs every step again');
      await fs.writeFile(path.join(dir, 'torn.json'), '{"version":1,');
      await assert.rejects(Journal.open(dir, 'torn'), /not valid JSON.*move it away/);
      await assert.rejects(Journal.open(dir, '../x'), /not valid/);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  test("the runner role grants nothing on Secrets and nothing cluster-wide; tenants bind it in their namespace only; --tenant parses", () => {
    assert.ok(!RUNNER_RULES.some((r) => r.resources.includes('secrets') || r.resources.includes('*') || r.verbs.includes('*')));
    const objects = tenantObjects('c', { name: 'team-a', quota: { pods: 5, memory: '2Gi' } });
    const binding = objects.find((o) => o.kind === 'RoleBinding') as unknown as { metadata: { namespace: string }; subjects: Array<{ namespace: string }> };
    assert.equal(binding.metadata.namespace, 'team-a');
    assert.deepEqual(binding.subjects.map((s) => s.namespace), ['team-a']);
    const quota = objects.find((o) => o.kind === 'ResourceQuota') as unknown as { spec: { hard: Record<string, string> } };
    assert.deepEqual(quota.spec.hard, { pods: '5', 'limits.memory': '2Gi' });
    assert.deepEqual(parseTenant('team-b:pods=3,default-memory=256Mi'), [{ name: 'team-b', quota: { pods: 3 }, defaults: { memory: '256Mi' } }]);
    assert.throws(() => parseTenant('Team_B'), /not a valid namespace name/);
    assert.throws(() => parseTenant('b:gpus=1'), /unknown setting "gpus"/);
  });
});

describe('provisioning against the real API server', () => {
  let kc: KubeConfig;
  let stateHome: string;
  const suffix = randomBytes(3).toString('hex');
  const tenants = [`pv-${suffix}-a`, `pv-${suffix}-b`];

  before(async () => {
    requireKubeconfig();
    kc = new KubeConfig();
    kc.loadFromDefault();
    stateHome = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-provision-'));
  });

  after(async () => {
    // Whatever a failed test left: remove through the journals, then the temp state.
    for (const name of ['pv-main', 'pv-killed']) await deprovision({ cluster: name, journalDir: path.join(stateHome, 'weft', 'clusters') }).catch(() => undefined);
    await fs.rm(stateHome, { recursive: true, force: true });
  });

  const journalDir = () => path.join(stateHome, 'weft', 'clusters');
  const config = (): ClusterConfig => ({ provisioner: 'existing', rbac: true, tenants: tenants.map((name) => ({ name, quota: { pods: 10 } })) });

  async function resourceVersions(cluster: string, cfg: ClusterConfig): Promise<Record<string, string>> {
    const client = new ObjectClient(kc);
    const out: Record<string, string> = {};
    for (const { objects } of hookObjects(cluster, cfg)) {
      for (const o of objects) {
        const live = await client.read(o);
        assert.ok(live, `${o.kind} ${o.metadata?.name} exists`);
        out[`${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`] = live.metadata!.resourceVersion!;
      }
    }
    return out;
  }

  test('provisioning twice changes nothing the second time (every object keeps its resourceVersion)', { timeout: 120_000 }, async () => {
    const first = await provision({ cluster: 'pv-main', config: config(), journalDir: journalDir() });
    assert.equal(first.health.state, 'READY');
    assert.deepEqual(first.steps.map((s) => s.name), ['create', 'rbac', `tenant:${tenants[0]}`, `tenant:${tenants[1]}`]);
    const before = await resourceVersions('pv-main', config());
    const second = await provision({ cluster: 'pv-main', config: config(), journalDir: journalDir() });
    assert.ok(second.steps.every((s) => s.result === 'ran'), 'a finished provisioning run again re-applies every hook');
    assert.deepEqual(await resourceVersions('pv-main', config()), before);
    const status = await clusterStatus({ cluster: 'pv-main', journalDir: journalDir() });
    assert.equal(status.phase, 'ready');
    assert.ok(status.hooks.every((h) => h.present === h.expected && h.missing.length === 0), JSON.stringify(status.hooks));
  });

  test("a tenant's runner account works in its namespace and is forbidden in the other tenant's (real RBAC)", { timeout: 120_000 }, async () => {
    const [a, b] = tenants;
    const core = kc.makeApiClient(CoreV1Api);
    const token = await core.createNamespacedServiceAccountToken({ name: RUNNER_ACCOUNT, namespace: a, body: { spec: { audiences: [], expirationSeconds: 600 } } });
    const user = new KubeConfig();
    const cluster = kc.getCurrentCluster()!;
    user.loadFromOptions({
      clusters: [{ name: 'c', server: cluster.server, caData: cluster.caData, caFile: cluster.caFile, skipTLSVerify: cluster.skipTLSVerify }],
      users: [{ name: 'runner', token: token.status!.token }],
      contexts: [{ name: 'runner', cluster: 'c', user: 'runner', namespace: a }],
      currentContext: 'runner',
    });
    const asRunner = user.makeApiClient(CoreV1Api);
    const batch = user.makeApiClient(BatchV1Api);
    const code = async (p: Promise<unknown>) => p.then(() => 200, (e: { code?: number }) => e.code ?? 0);
    assert.equal(await code(asRunner.listNamespacedPod({ namespace: a })), 200, 'pods in its own namespace');
    assert.equal(await code(asRunner.listNamespacedPod({ namespace: b })), 403, "pods in the other tenant's namespace");
    assert.equal(await code(asRunner.listNamespacedSecret({ namespace: a })), 403, 'no Secrets, even in its own namespace');
    assert.equal(await code(asRunner.listNode()), 403, 'nothing cluster-wide');
    const job = { metadata: { name: 'probe' }, spec: { template: { spec: { restartPolicy: 'Never', containers: [{ name: 'c', image: 'registry.example/x:1' }] } } } };
    assert.equal(await code(batch.createNamespacedJob({ namespace: a, body: job })), 200, 'it may create a Job in its namespace (the LimitRange gives it limits under the quota)');
    assert.equal(await code(batch.createNamespacedJob({ namespace: b, body: job })), 403);
    const quota = await core.readNamespacedResourceQuota({ name: 'weft-quota', namespace: a });
    assert.equal(quota.spec?.hard?.pods, '10');
  });

  test('deprovisioning removes every object and the journal', { timeout: 240_000 }, async () => {
    const report = await deprovision({ cluster: 'pv-main', journalDir: journalDir() });
    assert.deepEqual(report.steps.map((s) => s.name), [`tenant:${tenants[1]}`, `tenant:${tenants[0]}`, 'rbac', 'delete']);
    await assertNothingLeft('pv-main');
  });

  test('a provisioner SIGKILLed after a step resumes there and finishes; deprovisioning then leaves nothing', { timeout: 300_000 }, async () => {
    const env = { ...process.env, XDG_STATE_HOME: stateHome, NO_COLOR: '1' };
    const args = [weftMain, 'cluster', 'provision', 'pv-killed', '--tenant', `${tenants[0]}:pods=4`, '--tenant', tenants[1], '--json'];
    const killed = await execFileAsync(process.execPath, args, { env: { ...env, WEFT_PROVISION_KILL_AFTER: `tenant:${tenants[0]}` } }).then(
      () => undefined,
      (e: { signal?: string }) => e,
    );
    assert.equal(killed?.signal, 'SIGKILL', 'the first provisioner was killed');
    const journal = JSON.parse(await fs.readFile(path.join(journalDir(), 'pv-killed.json'), 'utf8')) as { phase: string; steps: Array<{ name: string; state: string }> };
    assert.equal(journal.phase, 'provisioning');
    assert.deepEqual(journal.steps.map((s) => `${s.name}:${s.state}`), ['create:done', 'rbac:done', `tenant:${tenants[0]}:done`]);
    const { stdout } = await execFileAsync(process.execPath, args, { env });
    const report = JSON.parse(stdout) as { resumed: boolean; steps: Array<{ name: string; result: string }> };
    assert.equal(report.resumed, true);
    assert.deepEqual(
      report.steps.map((s) => `${s.name}:${s.result}`),
      ['create:skipped', 'rbac:skipped', `tenant:${tenants[0]}:skipped`, `tenant:${tenants[1]}:ran`],
    );
    const status = JSON.parse((await execFileAsync(process.execPath, [weftMain, 'cluster', 'status', 'pv-killed', '--json'], { env })).stdout) as {
      phase: string;
      hooks: Array<{ present: number; expected: number }>;
    };
    assert.equal(status.phase, 'ready');
    assert.ok(status.hooks.length === 3 && status.hooks.every((h) => h.present === h.expected));
    // Deprovisioning killed in the middle resumes too.
    const killedDown = await execFileAsync(process.execPath, [weftMain, 'cluster', 'deprovision', 'pv-killed', '--json'], {
      env: { ...env, WEFT_PROVISION_KILL_AFTER: `tenant:${tenants[1]}` },
    }).then(
      () => undefined,
      (e: { signal?: string }) => e,
    );
    assert.equal(killedDown?.signal, 'SIGKILL');
    const down = JSON.parse((await execFileAsync(process.execPath, [weftMain, 'cluster', 'deprovision', 'pv-killed', '--json'], { env, timeout: 240_000 })).stdout) as {
      resumed: boolean;
      steps: Array<{ name: string; result: string }>;
    };
    assert.equal(down.resumed, true);
    assert.equal(down.steps.find((s) => s.name === `tenant:${tenants[1]}`)?.result, 'skipped');
    await assertNothingLeft('pv-killed');
  });

  async function assertNothingLeft(cluster: string): Promise<void> {
    const selector = `weft.io/cluster=${cluster}`;
    const core = kc.makeApiClient(CoreV1Api);
    const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
    const namespaces = (await core.listNamespace({ labelSelector: selector })).items.map((n) => n.metadata?.name);
    assert.deepEqual(namespaces, [], 'no namespace of the cluster');
    assert.deepEqual((await rbac.listClusterRole({ labelSelector: selector })).items.map((r) => r.metadata?.name), [], 'no ClusterRole');
    assert.ok(!existsSync(path.join(journalDir(), `${cluster}.json`)), 'the journal is removed');
  }
});
