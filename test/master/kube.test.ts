// The master on the real Kubernetes control plane (scripts/k8s-testenv, kwok nodes plus one real
// kubelet node), running as `weft master --runtime kubernetes` with the least-privilege
// ServiceAccount of deploy/master-rbac.yaml: a token from the TokenRequest API in its kubeconfig,
// nothing else. Every control path runs through it (a missing permission fails the test), the
// granted rules are compared with the manifest and verbs it must not have are checked (an excess
// permission fails the test); then 50 live runs survive a SIGKILLed master while 5 of them are
// deleted, and a program's 10,000 lines page back exactly once after its pod is gone and after a
// master restart.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AppsV1Api, AuthorizationV1Api, BatchV1Api, CoreV1Api, KubeConfig, RbacAuthorizationV1Api, type V1PolicyRule, type V1Role, type V1RoleBinding, type V1ServiceAccount } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { createCoordination } from '../../src/coord/index.js';
import { isTerminal, newRunId, parseAppSpec, type RunState } from '../../src/runtime/index.js';
import { createKubeRuntime, labels, workloadName } from '../../src/runtime/kube/index.js';
import { onRealNode, pushToNode } from '../support/real-node.js';
import { buildProbeImage, repoRoot, weftMain } from '../twill/fixtures/probe-image.js';
import { call, pagedLogs, waitFor as waitUntil } from './helpers.js';

const MANIFEST = path.join(repoRoot, 'deploy', 'master-rbac.yaml');
const NS = 'team-kube'; // the master's own namespace for the runs (not the Kubernetes one)

interface MasterProcess {
  child: ChildProcess;
  url: string;
  log: () => string;
}

/** (group, resource, verb) triples of RBAC rules, sorted: the unit the comparisons work in. */
function triples(rules: V1PolicyRule[]): string[] {
  const out = new Set<string>();
  for (const r of rules) for (const g of r.apiGroups ?? ['']) for (const res of r.resources ?? []) for (const v of r.verbs) out.add(`${g || 'core'}/${res}:${v}`);
  return [...out].sort();
}

describe('the master on Kubernetes with its least-privilege ServiceAccount', () => {
  let admin: KubeConfig;
  let core: CoreV1Api;
  let apps: AppsV1Api;
  let batchApi: BatchV1Api;
  let namespace: string;
  let work: string;
  let saKubeconfig: string;
  let tokenFile: string;
  let token: string;
  let probeImage: string;
  let master: MasterProcess | undefined;
  let manifestRules: V1PolicyRule[];

  /** waitFor, and a wait that timed out says which permission the master lacked, when it met one. */
  const waitFor = <T>(what: string, fn: () => Promise<T | undefined>, timeoutMs?: number): Promise<T> =>
    waitUntil(what, fn, timeoutMs).catch((error: Error) => {
      const denied = master?.log().split('\n').filter((l) => /forbidden/i.test(l)) ?? [];
      throw denied.length ? new Error(`${error.message}; the master was refused: ${denied.slice(0, 5).join(' | ')}`) : error;
    });
  const startMaster = async (): Promise<MasterProcess> => {
    const child = spawn(
      process.execPath,
      [weftMain, 'master', '--addr', '127.0.0.1:0', '--store', `sqlite:${path.join(work, 'master.db')}`, '--runtime', 'kubernetes', '--kubeconfig', saKubeconfig, '-n', namespace, '--admin-token-file', tokenFile, '--reconcile-interval', '2'],
      // WEFT_DEBUG: the runtime prints every API error it otherwise retries quietly (a 403 among them).
      { env: { ...process.env, KUBECONFIG: saKubeconfig, WEFT_DEBUG: '1', XDG_STATE_HOME: path.join(work, 'state') }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d));
    child.stderr!.on('data', (d: Buffer) => (stderr += d));
    const url = await waitFor('a master URL', async () => {
      if (child.exitCode !== null) throw new Error(`weft master exited with ${child.exitCode}`);
      return /^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(stdout)?.[1];
    }, 60_000).catch((error) => {
      child.kill('SIGKILL');
      throw new Error(`${error}: ${stderr}`);
    });
    token = (await fs.readFile(tokenFile, 'utf8')).trim();
    await waitFor('the master ready', async () => ((await call(url, 'GET', '/readyz')).status === 200 ? true : undefined), 60_000);
    return { child, url, log: () => stderr };
  };
  const stopMaster = async (signal: NodeJS.Signals) => {
    const m = master!;
    master = undefined;
    if (m.child.exitCode !== null || m.child.signalCode !== null) return m;
    const exited = once(m.child, 'exit');
    m.child.kill(signal);
    await exited;
    return m;
  };
  const assertNoForbidden = (m: MasterProcess) => {
    const denied = m.log().split('\n').filter((l) => /forbidden|\b403\b/i.test(l));
    assert.deepEqual(denied, [], 'the master met no permission error');
  };

  const base = () => master!.url;
  const spec = (name: string, args: string[], kind: 'batch' | 'service' | 'stateful' = 'batch', extra: Record<string, unknown> = {}, realNode = false) => ({
    name,
    stopTimeout: '5s',
    runnables: [{ name: 'main', kind, image: probeImage, args, resources: { cpu: '100m', memory: '128Mi' }, ...extra }],
    ...(realNode ? { kubernetes: onRealNode } : {}),
  });
  const start = async (body: unknown) => {
    const r = await call(base(), 'POST', `/api/v1/namespaces/${NS}/runs`, { token, body });
    assert.equal(r.status, 201, r.text);
    return r.json.id as string;
  };
  const getRun = async (id: string) => {
    const r = await call(base(), 'GET', `/api/v1/namespaces/${NS}/runs/${id}`, { token });
    assert.equal(r.status, 200, r.text);
    return r.json;
  };
  const waitState = (id: string, wanted: (s: RunState) => boolean, what: string, timeoutMs = 120_000) =>
    waitFor(`run ${id} ${what}`, async () => {
      const run = await getRun(id);
      return wanted(run.state) ? run : undefined;
    }, timeoutMs);

  const control = async (id: string, action: string, body: unknown = {}) => {
    const r = await call(base(), 'POST', `/api/v1/namespaces/${NS}/runs/${id}/${action}`, { token, body });
    assert.equal(r.status, 202, `${action}: ${r.text}`);
  };
  const allLogs = (id: string, limit: number) => pagedLogs(base(), token, NS, id, limit);
  const podsOf = async (runId: string) => (await core.listNamespacedPod({ namespace, labelSelector: `${labels.LABEL_RUN_ID}=${runId}` })).items;

  before(async () => {
    if (!process.env.KUBECONFIG) throw new Error('KUBECONFIG is not set: run the tests with scripts/test (scripts/test.d/50-k8s-up.sh starts the control plane)');
    admin = new KubeConfig();
    admin.loadFromFile(process.env.KUBECONFIG);
    core = admin.makeApiClient(CoreV1Api);
    apps = admin.makeApiClient(AppsV1Api);
    batchApi = admin.makeApiClient(BatchV1Api);
    const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
    namespace = `wm-${randomBytes(3).toString('hex')}`;
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-master-kube-'));
    tokenFile = path.join(work, 'admin-token');

    // The manifest as an operator would install it, into this namespace.
    const docs = parseAllDocuments(readFileSync(MANIFEST, 'utf8')).map((d) => d.toJS() as { kind: string; metadata: { namespace?: string } });
    const inNs = <T extends { metadata?: { namespace?: string } }>(o: unknown): T => ({ ...(o as T), metadata: { ...(o as T).metadata, namespace } });
    const kinds = docs.map((d) => d.kind).sort();
    assert.deepEqual(kinds, ['Role', 'RoleBinding', 'ServiceAccount'], 'the manifest holds only namespaced objects');
    for (const d of docs) {
      if (d.kind === 'ServiceAccount') await core.createNamespacedServiceAccount({ namespace, body: inNs<V1ServiceAccount>(d) });
      if (d.kind === 'Role') {
        manifestRules = (d as unknown as V1Role).rules ?? [];
        await rbac.createNamespacedRole({ namespace, body: inNs<V1Role>(d) });
      }
      if (d.kind === 'RoleBinding') {
        const b = inNs<V1RoleBinding>(d);
        await rbac.createNamespacedRoleBinding({ namespace, body: { ...b, subjects: b.subjects?.map((s) => ({ ...s, namespace })) } });
      }
    }
    // A token for the ServiceAccount (TokenRequest API), in a kubeconfig with nothing else.
    const tr = await core.createNamespacedServiceAccountToken({ name: 'weft-master', namespace, body: { spec: { audiences: [], expirationSeconds: 3600 } } });
    const cluster = admin.getCurrentCluster()!;
    const sa = new KubeConfig();
    sa.loadFromOptions({
      clusters: [{ name: 'test', server: cluster.server, caData: cluster.caData ?? (cluster.caFile ? readFileSync(cluster.caFile).toString('base64') : undefined), skipTLSVerify: cluster.skipTLSVerify }],
      users: [{ name: 'weft-master', token: tr.status!.token }],
      contexts: [{ name: 'weft-master', cluster: 'test', user: 'weft-master', namespace }],
      currentContext: 'weft-master',
    });
    saKubeconfig = path.join(work, 'weft-master.kubeconfig');
    await fs.writeFile(saKubeconfig, sa.exportConfig(), { mode: 0o600 });

    const probe = await buildProbeImage();
    try {
      probeImage = await pushToNode(weftMain, probe.reference, `master/probe:${randomBytes(4).toString('hex')}`);
    } finally {
      await probe.remove();
    }
    master = await startMaster();
  });

  after(async () => {
    if (master) await stopMaster('SIGTERM');
    if (namespace) await core.deleteNamespace({ name: namespace }).catch(() => undefined);
    if (work) await fs.rm(work, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
  });

  test('the granted rules are exactly the manifest, and what the master must not do is denied', { timeout: 60_000 }, async () => {
    const sa = new KubeConfig();
    sa.loadFromFile(saKubeconfig);
    const authz = sa.makeApiClient(AuthorizationV1Api);
    const review = await authz.createSelfSubjectRulesReview({ body: { spec: { namespace } } });
    // Every authenticated user may review its own access (system:basic-user); the rest is the Role.
    const selfReviews = (t: string) => /^(authorization|authentication)\.k8s\.io\/self\w+:create$/.test(t);
    assert.deepEqual(triples(review.status!.resourceRules).filter((t) => !selfReviews(t)), triples(manifestRules), 'the ServiceAccount has exactly the manifest\'s rules in its namespace');
    const can = async (attrs: { verb: string; resource: string; group?: string; namespace?: string; subresource?: string; name?: string }) =>
      (await authz.createSelfSubjectAccessReview({ body: { spec: { resourceAttributes: { ...attrs, group: attrs.group ?? '' } } } })).status!.allowed;
    const mustNot = [
      { verb: 'delete', resource: 'nodes' },
      { verb: 'list', resource: 'nodes' },
      { verb: 'get', resource: 'secrets', namespace },
      { verb: 'list', resource: 'secrets', namespace },
      { verb: 'get', resource: 'secrets', namespace: 'kube-system' },
      { verb: 'list', resource: 'secrets' },
      { verb: 'create', resource: 'pods', namespace },
      { verb: 'create', resource: 'pods', subresource: 'exec', namespace },
      { verb: 'create', resource: 'serviceaccounts', subresource: 'token', namespace, name: 'weft-master' },
      { verb: 'list', resource: 'configmaps', namespace: 'default' },
      { verb: 'create', resource: 'jobs', group: 'batch', namespace: 'default' },
      { verb: 'delete', resource: 'services', namespace },
      { verb: 'update', resource: 'configmaps', namespace },
      { verb: 'create', resource: 'roles', group: 'rbac.authorization.k8s.io', namespace },
      { verb: 'create', resource: 'rolebindings', group: 'rbac.authorization.k8s.io', namespace },
      { verb: 'list', resource: 'namespaces' },
      { verb: 'delete', resource: 'namespaces', name: namespace },
      { verb: 'delete', resource: 'leases', group: 'coordination.k8s.io', namespace },
      { verb: 'list', resource: 'pods', group: 'metrics.k8s.io', namespace },
    ];
    const allowed = [];
    for (const a of mustNot) if (await can(a)) allowed.push(a);
    assert.deepEqual(allowed, [], 'none of these is granted');
    // The same review answers yes where the Role grants (so the no's above are meaningful).
    assert.equal(await can({ verb: 'delete', resource: 'pods', namespace }), true);
    assert.equal(await can({ verb: 'get', resource: 'pods', subresource: 'log', namespace }), true);
  });

  test('start, status, logs, scale, restart, command, suspend, stop and kill all work on the ServiceAccount\'s token', { timeout: 300_000 }, async (ctx) => {
    // A batch run on the real node: the pod really runs, its output is archived (pods/log).
    const t0 = Date.now();
    const batch = await start({ spec: spec('kube-batch', ['lines', '200'], 'batch', {}, true) });
    // Services on kwok nodes: a Deployment with a Service (ports), and a StatefulSet.
    const svc = await start({ spec: spec('kube-svc', ['service'], 'service', { ports: [{ name: 'http', port: 8080 }] }) });
    const sts = await start({ spec: spec('kube-sts', ['service'], 'stateful') });
    // A Job whose kwok pod stays Running for an hour (kwok completes Job pods after 1 s otherwise).
    const paused = await start({ spec: { ...spec('kube-paused', ['service'], 'batch'), kubernetes: { podAnnotations: { 'pod-complete.stage.kwok.x-k8s.io/delay': '1h' } } } });
    for (const id of [svc, sts, paused]) await waitState(id, (s) => s === 'RUNNING', 'runs');
    ctx.diagnostic(`service and stateful runs RUNNING ${Date.now() - t0} ms after the first start`);
    const done = await waitState(batch, isTerminal, 'ends', 240_000);
    assert.equal(done.state, 'COMPLETED', JSON.stringify(done.history));
    await waitFor('the batch run\'s output archived', async () => ((await allLogs(batch, 1000)).includes('batch done') ? true : undefined), 60_000);
    const lines = (await allLogs(batch, 1000)).filter((l) => /^line \d+$/.test(l));
    assert.deepEqual(lines, Array.from({ length: 200 }, (_, i) => `line ${i + 1}`));

    // Live status (tracker: list+watch) through the API.
    const live = await getRun(svc);
    assert.equal(live.status.runnables[0].desired, 1);
    await control(svc, 'scale', { runnable: 'main', instances: 3 });
    await waitFor('3 instances running', async () => ((await getRun(svc)).status.runnables[0].running === 3 ? true : undefined), 90_000);
    await control(sts, 'scale', { runnable: 'main', instances: 2 });
    await waitFor('2 stateful instances running', async () => ((await getRun(sts)).status.runnables[0].running === 2 ? true : undefined), 90_000);
    const before = new Set((await podsOf(svc)).map((p) => p.metadata!.name));
    await control(svc, 'restart', { runnable: 'main', instances: [(await getRun(svc)).status.runnables[0].instances[0].id] });
    await waitFor('a restarted instance replaced', async () => {
      const now = (await podsOf(svc)).filter((p) => !p.metadata!.deletionTimestamp).map((p) => p.metadata!.name);
      return now.some((n) => !before.has(n)) ? true : undefined;
    }, 90_000);
    await control(svc, 'commands', { command: 'reload', payload: 'now' });
    await waitFor('the command annotated on the pods', async () =>
      (await podsOf(svc)).some((p) => Object.keys(p.metadata?.annotations ?? {}).some((k) => k.startsWith(labels.ANN_COMMAND_PREFIX))) ? true : undefined);
    await control(paused, 'suspend');
    await waitFor('the Job suspended', async () => ((await batchApi.readNamespacedJob({ name: workloadName(paused, 'main'), namespace })).spec?.suspend === true ? true : undefined), 30_000);
    await control(paused, 'resume');

    // Stop with a grace period (root annotated, pods deleted, root deleted) and kill.
    await control(svc, 'stop', { gracePeriodSeconds: 5 });
    await control(sts, 'kill');
    await control(paused, 'kill');
    for (const id of [svc, sts, paused]) assert.equal((await waitState(id, isTerminal, 'ends')).state, 'KILLED');
    await waitFor('the stopped runs\' objects gone', async () => ((await podsOf(svc)).length + (await podsOf(sts)).length === 0 ? true : undefined), 90_000);
    assert.equal((await apps.listNamespacedDeployment({ namespace, labelSelector: `${labels.LABEL_RUN_ID}=${svc}` })).items.length, 0);
    assertNoForbidden(master!);
  });

  test('the Lease elector works on the ServiceAccount\'s token (several masters elect one leader)', { timeout: 60_000 }, async () => {
    const coordination = await createCoordination({ backend: 'kubernetes', kubeconfig: saKubeconfig, namespace, timings: { leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 400 } });
    try {
      let elected = false;
      const handle = await coordination.elector.electLeader('weft-master', 'rbac-test', { onElected: () => (elected = true) });
      await waitFor('leadership', async () => (elected ? true : undefined), 30_000);
      await new Promise((r) => setTimeout(r, 1500)); // renews (update) at least once
      assert.equal(handle.isLeader, true, 'still leading after renewals');
      await handle.resign();
    } finally {
      await coordination.close();
    }
  });

  test('50 live runs, the master SIGKILLed, 5 runs deleted while it is down: 45 reach their true end, 5 FAILED as lost, one stray adopted, none duplicated', { timeout: 600_000 }, async (ctx) => {
    const ids: string[] = [];
    const t0 = Date.now();
    for (let i = 0; i < 50; i++) ids.push(await start({ spec: spec(`fleet${i}`, ['service'], 'service') }));
    for (const id of ids) await waitState(id, (s) => s === 'RUNNING', 'runs', 240_000);
    ctx.diagnostic(`50 runs RUNNING ${Date.now() - t0} ms after the first start`);
    const killed = await stopMaster('SIGKILL');
    assertNoForbidden(killed);
    // While the master is down: 5 runs deleted (their root object, and with it every workload and pod).
    const doomed = ids.slice(0, 5);
    for (const id of doomed) await core.deleteNamespacedConfigMap({ name: id, namespace, propagationPolicy: 'Background' });
    await waitFor('the deleted runs\' pods gone', async () => {
      for (const id of doomed) if ((await podsOf(id)).length) return undefined;
      return true;
    }, 120_000);
    // ... and one run started without the master (administrator's credentials), to be adopted.
    const other = await createKubeRuntime({ runtime: 'kubernetes', kubeconfig: process.env.KUBECONFIG, namespace });
    let strayId: string;
    try {
      const stray = await other.submit({ runId: newRunId('stray'), spec: parseAppSpec(spec('stray', ['service'], 'service')), files: [] });
      strayId = stray.runId;
      await waitFor('the stray run RUNNING', async () => ((await other.status(strayId))?.state === 'RUNNING' ? true : undefined), 120_000);
    } finally {
      await other.close();
    }
    const restarted = Date.now();
    master = await startMaster();
    for (const id of doomed) {
      const run = await waitState(id, isTerminal, 'declared lost', 60_000);
      assert.equal(run.state, 'FAILED');
      assert.equal(run.reason, 'Lost');
      assert.match(run.message, /objects are gone from the kubernetes runtime/);
    }
    ctx.diagnostic(`5 lost runs FAILED ${Date.now() - restarted} ms after the restart`);
    const adopted = await waitFor('the stray run adopted', async () => {
      const r = await call(base(), 'GET', `/api/v1/namespaces/default/runs/${strayId}`, { token });
      return r.status === 200 ? r.json : undefined;
    }, 60_000);
    assert.equal(adopted.createdBy, 'reconciler');
    const survivors = ids.slice(5);
    for (const id of survivors) assert.equal((await getRun(id)).state, 'RUNNING', `${id} still runs`);
    // Their true end: stopped through the restarted master.
    for (const id of survivors) await control(id, 'kill');
    for (const id of survivors) assert.equal((await waitState(id, isTerminal, 'killed')).state, 'KILLED');
    assert.equal((await call(base(), 'POST', `/api/v1/namespaces/default/runs/${strayId}/kill`, { token, body: {} })).status, 202);
    // None duplicated: the store holds each submission once.
    const listed: string[] = [];
    let cont = '';
    do {
      const page = await call(base(), 'GET', `/api/v1/namespaces/${NS}/runs?limit=100${cont ? `&continue=${encodeURIComponent(cont)}` : ''}`, { token });
      assert.equal(page.status, 200, page.text);
      listed.push(...page.json.items.filter((r: { app: string }) => r.app.startsWith('fleet')).map((r: { id: string }) => r.id));
      cont = page.json.continue ?? '';
    } while (cont);
    assert.equal(listed.length, 50);
    assert.deepEqual([...listed].sort(), [...ids].sort());
    assertNoForbidden(master!);
  });

  test('10,000 lines from the real node page back exactly once, also after the pod was deleted and after a master restart', { timeout: 300_000 }, async () => {
    const id = await start({ spec: spec('printer', ['lines', '10000'], 'batch', {}, true) });
    assert.equal((await waitState(id, isTerminal, 'ends', 240_000)).state, 'COMPLETED');
    const expected = Array.from({ length: 10_000 }, (_, i) => `line ${i + 1}`);
    const numbered = (lines: string[]) => lines.filter((l) => /^line \d+$/.test(l));
    await waitFor('the whole output archived', async () => ((await allLogs(id, 1000)).includes('batch done') ? true : undefined), 60_000);
    assert.deepEqual(numbered(await allLogs(id, 777)), expected);
    // The pod is deleted (and the whole run: root, Job); the archive still serves every line once.
    for (const pod of await podsOf(id)) await core.deleteNamespacedPod({ name: pod.metadata!.name!, namespace, gracePeriodSeconds: 0 });
    await core.deleteNamespacedConfigMap({ name: id, namespace, propagationPolicy: 'Background' });
    await waitFor('the pod gone', async () => ((await podsOf(id)).length === 0 ? true : undefined), 60_000);
    assert.deepEqual(numbered(await allLogs(id, 1000)), expected, 'after the pod was deleted');
    await stopMaster('SIGTERM');
    master = await startMaster();
    assert.deepEqual(numbered(await allLogs(id, 2500)), expected, 'after a master restart');
    assert.equal((await getRun(id)).state, 'COMPLETED', 'a finished run whose objects are gone stays as it ended');
  });
});
