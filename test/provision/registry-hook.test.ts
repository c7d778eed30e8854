// The registry hook on the real node: weft's own image (`weft self-image`) deployed by
// `weft cluster provision --registry-image` as a StatefulSet, pulled and started by the node's
// containerd, Ready by its probe; anonymous pulls, pushes only with the credentials from its
// Secret; the example program pushed to it and run on the node from it (the seed's path through
// an in-cluster registry); deprovisioning removes it. The node pulls through the registry
// Service's ClusterIP: the test environment runs in-cluster networking (kube-proxy in the node's
// network namespace; scripts/test.d/50-k8s-up.sh starts `up --real-node --in-cluster`).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AppsV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { deprovision, forwardToRegistry, provision, REGISTRY_CREDENTIALS, REGISTRY_NAME, testenvState, WEFT_NAMESPACE, type ClusterConfig } from '../../src/provision/index.js';
import { nodeRegistry, onRealNode } from '../support/real-node.js';
import { helloBuild, mustWeft, requireExampleBuild, runCommand, weft } from '../e2e/harness.js';

describe('the registry hook on the real node', () => {
  let kc: KubeConfig;
  let work: string;
  let journalDir: string;
  let config: ClusterConfig;
  const cluster = `pv-registry-${randomBytes(2).toString('hex')}`;

  before(async () => {
    requireExampleBuild();
    const node = nodeRegistry();
    kc = new KubeConfig();
    kc.loadFromDefault();
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-registry-hook-'));
    journalDir = path.join(work, 'journal');
    const state = testenvState({ provisioner: 'testenv', rbac: false, tenants: [] });
    if (existsSync(path.join(state, 'node')) && !existsSync(path.join(state, 'node', 'in-cluster'))) {
      throw new Error(`the test environment in ${state} runs its real node without in-cluster networking (no kube-proxy: the node cannot pull through a ClusterIP): start it with scripts/k8s-testenv up --real-node --in-cluster, as scripts/test does`);
    }
    const image = `${node}/weft/self:${randomBytes(3).toString('hex')}`;
    await mustWeft(['self-image', '--output', `docker://${image}`, '--json']);
    // The testenv provisioner: its node-pull step writes the real node's containerd configuration.
    config = {
      provisioner: 'testenv',
      testenvState: testenvState({ provisioner: 'testenv', rbac: false, tenants: [] }),
      rbac: true,
      tenants: [],
      registry: { image, nodeSelector: onRealNode.nodeSelector, tolerations: onRealNode.tolerations as NonNullable<ClusterConfig['registry']>['tolerations'] },
    };
  });

  after(async () => {
    await deprovision({ cluster, journalDir, keepCluster: true }).catch(() => undefined);
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  test('provisioned: the node pulls and runs weft\'s image; pulls are anonymous, pushes need the Secret\'s credentials; a program pushed there runs on the node', { timeout: 600_000 }, async (t) => {
    const provisionStart = Date.now();
    const report = await provision({ cluster, config, journalDir, log: (line) => t.diagnostic(line), polling: { intervalMs: 1000, factor: 1.2, maxIntervalMs: 5000, timeoutMs: 300_000 } });
    t.diagnostic(`measured: provisioning with the registry hook (image pulled by the node, Ready) took ${((Date.now() - provisionStart) / 1000).toFixed(1)} s`);
    assert.ok(report.registry, 'the report names the registry');
    assert.match(report.registry.address, /^\d+\.\d+\.\d+\.\d+:5000$/, 'the Service has a ClusterIP');
    const hosts = path.join(testenvState(config), 'node', 'containerd', 'certs.d', report.registry.address, 'hosts.toml');
    assert.match(await fs.readFile(hosts, 'utf8'), new RegExp(`server = "http://${report.registry.address}"`), "the hook configured the node's containerd for the ClusterIP");
    const core = kc.makeApiClient(CoreV1Api);
    const pods = await core.listNamespacedPod({ namespace: WEFT_NAMESPACE, labelSelector: `app.kubernetes.io/name=${REGISTRY_NAME}` });
    assert.equal(pods.items.length, 1);
    const pod = pods.items[0];
    assert.equal(pod.spec?.nodeName, process.env.WEFT_REAL_NODE_NAME ?? 'localhost', 'it runs on the real node');
    assert.ok(pod.status?.containerStatuses?.[0]?.ready, 'Ready by its probe');
    assert.ok(pod.status?.containerStatuses?.[0]?.imageID, 'the node pulled the image');
    const registryPull = (await core.listNamespacedEvent({ namespace: WEFT_NAMESPACE, fieldSelector: `reason=Pulled,involvedObject.name=${pod.metadata?.name}` })).items[0]?.message;
    if (registryPull) t.diagnostic(`measured: the registry pod's image: ${registryPull}`);
    const sts = await kc.makeApiClient(AppsV1Api).readNamespacedStatefulSet({ name: REGISTRY_NAME, namespace: WEFT_NAMESPACE });
    assert.equal(sts.status?.readyReplicas, 1);

    // What the node pulls from below: the Service's ClusterIP (kube-proxy's rules in the node's
    // network namespace send it to the registry pod).
    const address = report.registry.address;
    assert.notEqual(address.split(':')[0], pod.status?.podIP, 'the ClusterIP, not the pod address');
    const secret = await core.readNamespacedSecret({ name: REGISTRY_CREDENTIALS, namespace: WEFT_NAMESPACE });
    const cred = (k: string) => Buffer.from(secret.data![k], 'base64').toString('utf8');

    const layout = path.join(work, 'hello');
    await mustWeft(['base', 'jre', '--output', `oci:${path.join(work, 'jre')}:17`, '--json']);
    await mustWeft(['build', path.join(helloBuild, 'hello.jar'), '--lib', path.join(helloBuild, 'libs'), '--base', `oci:${path.join(work, 'jre')}:17`, '--output', `oci:${layout}:hello`]);
    // From outside the cluster through a port-forward weft opens itself (loopback: weft sends credentials there).
    const forward = await forwardToRegistry(kc);
    try {
      const ping = await fetch(`http://${forward.address}/v2/`);
      assert.equal(ping.status, 401, 'the /v2/ ping challenges (reads are anonymous: the node pulls below without credentials)');
      const anonymous = await runCommand('skopeo', ['copy', '--dest-tls-verify=false', `oci:${layout}:hello`, `docker://${forward.address}/demo/hello:1`]);
      assert.notEqual(anonymous.code, 0, 'an anonymous push is refused');
      assert.match(anonymous.stderr, /401|unauthorized|authentication required/i);
      const dockerConfig = path.join(work, 'docker');
      await fs.mkdir(dockerConfig);
      const env = { DOCKER_CONFIG: dockerConfig };
      await mustWeft(['login', forward.address, '-u', cred('username'), '-p', cred('password')], { env });
      await mustWeft(['copy', `oci:${layout}:hello`, `docker://${forward.address}/demo/hello:1`], { env });
    } finally {
      await forward.close();
    }

    // The node pulls the program through the ClusterIP (the hook's node-pull step configured it) and runs it.
    const namespace = `pv-run-${randomBytes(2).toString('hex')}`;
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    try {
      const spec = path.join(work, 'hello.yaml');
      await fs.writeFile(
        spec,
        stringify({ name: 'hello-in-cluster', kubernetes: onRealNode, runnables: [{ name: 'hello', kind: 'batch', image: `${address}/demo/hello:1`, args: ['in', 'cluster'], resources: { cpu: '250m', memory: '256Mi' } }] }),
      );
      const runStart = Date.now();
      const run = await weft(['run', spec, '--runtime', 'kubernetes', '--namespace', namespace, '--wait', '--json'], { timeoutMs: 300_000 });
      assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
      t.diagnostic(`measured: weft run --wait of the example pulled from the in-cluster registry: ${((Date.now() - runStart) / 1000).toFixed(1)} s to COMPLETED`);
      const runId = (JSON.parse(run.stdout) as { runId: string }).runId;
      const logs = await weft(['logs', runId, '--runtime', 'kubernetes', '--namespace', namespace]);
      assert.match(logs.stdout, /hello from weft: World/, logs.stdout + logs.stderr);
      // The kubelet's event says where the image came from and how long the pull took.
      const pulled = (await core.listNamespacedEvent({ namespace, fieldSelector: 'reason=Pulled' })).items.map((e) => e.message ?? '');
      const fromRegistry = pulled.find((m) => m.includes(`"${address}/demo/hello:1"`));
      assert.ok(fromRegistry, `the node pulled ${address}/demo/hello:1 through the ClusterIP: ${pulled.join(' | ') || 'no Pulled event'}`);
      t.diagnostic(`measured: ${fromRegistry}`);
    } finally {
      await core.deleteNamespace({ name: namespace }).catch(() => undefined);
    }
  });

  test('deprovisioning removes the registry, its Secret and namespace, and the node pull configuration', { timeout: 300_000 }, async () => {
    const ip = (await kc.makeApiClient(CoreV1Api).readNamespacedService({ name: REGISTRY_NAME, namespace: WEFT_NAMESPACE })).spec?.clusterIP;
    const down = await deprovision({ cluster, journalDir, keepCluster: true });
    assert.ok(!down.steps.some((s) => s.name === 'delete'), 'the test environment itself keeps running');
    assert.ok(existsSync(path.join(testenvState(config), 'kubeconfig')));
    const ns = await kc.makeApiClient(CoreV1Api).readNamespace({ name: WEFT_NAMESPACE }).then(
      () => 'still there',
      (e: { code?: number }) => e.code,
    );
    assert.equal(ns, 404, `namespace ${WEFT_NAMESPACE} is gone`);
    const hosts = path.join(testenvState({ provisioner: 'testenv', rbac: false, tenants: [] }), 'node', 'containerd', 'certs.d', `${ip}:5000`);
    assert.ok(!existsSync(hosts), `${hosts} is removed`);
  });
});
