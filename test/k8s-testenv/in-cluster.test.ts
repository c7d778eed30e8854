// In-cluster networking of the real node (scripts/k8s-testenv up --real-node --in-cluster): a pod
// uses the in-cluster config (KUBERNETES_SERVICE_HOST/PORT, its service account's token and CA) to
// reach the API server through the `kubernetes` Service, RBAC applies to it, and cluster DNS
// resolves kubernetes.default.svc; a pod reaches another pod's Service by its DNS name; and `down`
// leaves the machine as it found it (no network namespace, veth, route, mount or process; host
// netfilter rules and sysctls unchanged). A private cluster in its own state dir, with its own
// bridge name and pod subnet (WEFT_TEST_IC_BRIDGE, WEFT_TEST_IC_SUBNET, WEFT_TEST_IC_STATE override
// them), so the suite's own cluster is untouched. The only addresses dialled are loopback ones and
// addresses inside the namespace the environment creates.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, promises as fs, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mustRun, runCommand, weftMain, type CommandResult } from '../support/command.js';
import { commandLines } from '../support/process.js';
import { serveRegistry, type ServedRegistry } from '../support/registry-serve.js';
import { toolVersion, toolsDir } from '../support/tools.js';

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const script = join(repo, 'scripts', 'k8s-testenv');
const source = join(repo, 'test', 'k8s-testenv', 'fixtures', 'incluster', 'InCluster.java');
const sysctls = ['/proc/sys/vm/overcommit_memory', '/proc/sys/kernel/panic', '/proc/sys/kernel/panic_on_oops', '/proc/sys/net/ipv4/ip_forward'];
const TIMEOUT = 600_000;

// The environment's scripts can take long on a cold, loaded machine (CoreDNS, containerd): 15 minutes a command.
const sh = (file: string, args: string[], options: { env?: Record<string, string>; input?: string } = {}): Promise<CommandResult> =>
  runCommand(file, args, { ...options, timeoutMs: 900_000 });
const must = async (file: string, args: string[], options: { env?: Record<string, string>; input?: string } = {}): Promise<string> =>
  (await mustRun(file, args, { ...options, timeoutMs: 900_000 })).stdout;

/** What the environment could leave behind on the machine, as values to compare. */
async function machineState(state: string, names: string[], subnet: string) {
  const ofState = () => commandLines().filter((p) => p.commandLine.includes(state));
  const processes = ofState().map((p) => p.commandLine);
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(state));
  const links = (await sh('ip', ['-o', 'link', 'show'])).stdout.split('\n').map((l) => l.split(':')[1]?.trim().split('@')[0]).filter((l) => l && names.includes(l));
  const routes = (await sh('ip', ['route', 'show'])).stdout.split('\n').filter((l) => l.trim()).sort();
  const iptables = await sh('iptables-save', []);
  const nft = await sh('nft', ['list', 'ruleset']).catch(() => ({ code: -1, stdout: '', stderr: '' }));
  // Sockets of the environment's processes listening in the host's namespace on anything but loopback.
  const ours = new Set(ofState().map((p) => String(p.pid)));
  const ownListeners = (await sh('ss', ['-ltunpH'])).stdout
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => [...f.slice(6).join(' ').matchAll(/pid=(\d+)/g)].some((m) => ours.has(m[1])))
    .map((f) => `${f[0]} ${f[4]} ${f.slice(6).join(' ')}`);
  return {
    ownListeners,
    listeners: ownListeners.filter((l) => !/^\S+ (127\.|\[::1\]|\[::ffff:127\.)/.test(l)),
    processes,
    mounts,
    links,
    routes,
    subnetRouted: routes.some((r) => r.startsWith(subnet)),
    sysctls: sysctls.map((f) => `${f}=${readFileSync(f, 'utf8').trim()}`),
    // Counters change by themselves: compare the rules only.
    iptables: iptables.stdout.split('\n').filter((l) => l.startsWith('-A ') || l.startsWith(':')).map((l) => l.replace(/\[\d+:\d+\]/, '')).sort(),
    nft: nft.code === 0 ? nft.stdout.replace(/packets \d+ bytes \d+/g, '') : `(nft: ${nft.code === -1 ? 'not installed' : nft.stderr.trim()})`,
  };
}

const onRealNode = {
  nodeSelector: { 'weft.io/real-node': 'true' },
  tolerations: [{ key: 'weft.io/real-node', operator: 'Exists', effect: 'NoSchedule' }],
};

describe('in-cluster networking on the real node', () => {
  const work = mkdtempSync(join(tmpdir(), 'weft-in-cluster-'));
  const state = process.env.WEFT_TEST_IC_STATE || join(work, 'k8s');
  const bridge = process.env.WEFT_TEST_IC_BRIDGE || 'weftic1';
  const subnet = process.env.WEFT_TEST_IC_SUBNET || '10.88.81.0/24';
  const names = [bridge, `${bridge.slice(0, 12)}-h`, `${bridge.slice(0, 12)}-n`, `${bridge.slice(0, 12)}-s`, `${bridge.slice(0, 12)}-p`];
  let env: Record<string, string>;
  let registry: ServedRegistry | undefined;
  let before_: Awaited<ReturnType<typeof machineState>>;
  let kubeconfig = '';
  let image = '';
  let downDone = false;
  const kubectl = () => join(toolsDir(), `kubernetes-${toolVersion('kubernetes', 'scripts/k8s/build.sh')}`, 'bin', 'kubectl');
  const k = (args: string[], input?: string) => must(kubectl(), ['--kubeconfig', kubeconfig, ...args], { input });

  before(async () => {
    before_ = await machineState(state, names, subnet);
    assert.deepEqual(before_.links, [], `interfaces ${names.join(', ')} must not exist before the test`);
    registry = await serveRegistry(join(work, 'registry'));
    env = { WEFT_K8S_STATE: state, WEFT_REAL_NODE_BRIDGE: bridge, WEFT_REAL_NODE_SUBNET: subnet, WEFT_K8S_NODES: '1', WEFT_NODE_REGISTRIES: registry.host };
    const up = await sh('bash', [script, 'up', '--real-node', '--in-cluster'], { env });
    if (up.code !== 0) throw new Error(`up --real-node --in-cluster failed:\n${up.stderr}`);
    kubeconfig = up.stdout.trim().split('\n').pop()!.replace(/^export KUBECONFIG=/, '');
    // The pod's program, built into an image with weft and pushed to the node's registry.
    const classes = join(work, 'classes');
    await must('javac', ['--release', '17', '-d', classes, source]);
    await fs.writeFile(join(work, 'manifest.txt'), 'Main-Class: InCluster\n');
    await must('jar', ['cfm', join(work, 'incluster.jar'), join(work, 'manifest.txt'), '-C', classes, '.']);
    await must(process.execPath, [weftMain, 'base', 'jre', '--output', `oci:${join(work, 'jre')}:17`, '--json']);
    image = `${registry.host}/in-cluster/probe:${randomBytes(4).toString('hex')}`;
    await must(process.execPath, [weftMain, 'build', join(work, 'incluster.jar'), '--base', `oci:${join(work, 'jre')}:17`, '--output', `docker://${image}`, '--json']);
  });

  after(async () => {
    if (!downDone && env) await sh('bash', [script, 'down'], { env });
    await registry?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  /** A pod of the probe image on the real node; returns its final phase and log once it has ended. */
  async function runPod(namespace: string, name: string, args: string[]): Promise<{ phase: string; log: string }> {
    const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace }, spec: { ...onRealNode, restartPolicy: 'Never', containers: [{ name: 'main', image, args, resources: { limits: { memory: '256Mi' }, requests: { cpu: '100m' } } }] } };
    await k(['apply', '-f', '-'], JSON.stringify(pod));
    let phase = '';
    for (let i = 0; i < 240 && phase !== 'Succeeded' && phase !== 'Failed'; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 1000));
      phase = (await k(['get', '-n', namespace, `pod/${name}`, '-o', 'jsonpath={.status.phase}'])).trim();
    }
    const log = await k(['logs', '-n', namespace, `pod/${name}`]).catch((e: Error) => `(no log: ${e.message})`);
    return { phase, log };
  }

  test('a pod lists pods in its own namespace through the kubernetes Service with its service account (CA verified), and resolves kubernetes.default.svc', { timeout: TIMEOUT }, async (t) => {
    const ns = `ic-api-${randomBytes(3).toString('hex')}`;
    const other = `ic-other-${randomBytes(3).toString('hex')}`;
    await k(['create', 'namespace', ns]);
    await k(['create', 'namespace', other]);
    await k(['create', 'role', 'pod-reader', '-n', ns, '--verb=list,get', '--resource=pods']);
    await k(['create', 'rolebinding', 'pod-reader', '-n', ns, '--role=pod-reader', `--serviceaccount=${ns}:default`]);
    // The service account exists once the controller manager has made it.
    await k(['wait', '-n', ns, 'serviceaccount/default', '--for=jsonpath={.metadata.name}=default', '--timeout=60s']);
    const { phase, log } = await runPod(ns, 'api', ['api', other]);
    t.diagnostic(log.replace(/\n/g, ' | '));
    assert.equal(phase, 'Succeeded', `the pod ended ${phase}:\n${log}`);
    assert.match(log, /^env KUBERNETES_SERVICE_HOST=10\.96\.0\.1 KUBERNETES_SERVICE_PORT=443$/m, log);
    assert.match(log, /^own-namespace 200 \{"kind":"PodList"/m, `listing its own namespace's pods: 200\n${log}`);
    assert.ok(log.includes(`"name":"api"`), `the list holds the pod itself:\n${log}`);
    assert.match(log, new RegExp(`^other-namespace 403 .*system:serviceaccount:${ns}:default`, 'm'), `the service account's RBAC applies in another namespace: 403\n${log}`);
    assert.match(log, /^dns kubernetes\.default\.svc 10\.96\.0\.1$/m, `cluster DNS resolves kubernetes.default.svc:\n${log}`);
    assert.match(log, /^by-name 200 \{ "major": "1"/m, `https://kubernetes.default.svc verifies and answers:\n${log}`);
  });

  test('a pod reaches another pod\'s Service by its DNS name <svc>.<ns>.svc.cluster.local', { timeout: TIMEOUT }, async (t) => {
    const ns = `ic-svc-${randomBytes(3).toString('hex')}`;
    await k(['create', 'namespace', ns]);
    const text = `hello-from-${randomBytes(4).toString('hex')}`;
    const server = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'echo', namespace: ns, labels: { app: 'echo' } },
      spec: {
        ...onRealNode,
        containers: [{ name: 'main', image, args: ['serve', '8080', text], ports: [{ containerPort: 8080 }], readinessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 1 }, resources: { limits: { memory: '256Mi' }, requests: { cpu: '100m' } } }],
      },
    };
    const service = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'echo', namespace: ns }, spec: { selector: { app: 'echo' }, ports: [{ port: 80, targetPort: 8080 }] } };
    await k(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [server, service] }));
    // Ready means the kubelet (host namespace) reached the pod's IP through the namespace's route.
    await k(['wait', '-n', ns, 'pod/echo', '--for=condition=Ready', '--timeout=240s']);
    const { phase, log } = await runPod(ns, 'client', ['fetch', `http://echo.${ns}.svc.cluster.local/`]);
    t.diagnostic(log.replace(/\n/g, ' | '));
    assert.equal(phase, 'Succeeded', `the client pod ended ${phase}:\n${log}`);
    assert.match(log, new RegExp(`^fetched 200 ${text} `, 'm'), `the Service answered through its DNS name:\n${log}`);
  });

  test('while up, the node\'s rules live in its own namespace; down leaves no namespace, veth, route, mount or process, and host rules and sysctls unchanged', { timeout: TIMEOUT }, async (t) => {
    const during = await machineState(state, names, subnet);
    assert.deepEqual(during.iptables, before_.iptables, 'no netfilter rule was added on the host (iptables)');
    assert.equal(during.nft, before_.nft, 'no netfilter rule was added on the host (nft)');
    assert.deepEqual(during.sysctls, before_.sysctls, 'no host sysctl changed');
    assert.ok(during.ownListeners.length > 0, `the environment's listeners are seen (the API server's, the kubelet's on loopback)`);
    t.diagnostic(`listeners of the environment in the host's namespace: ${during.ownListeners.join('; ')}`);
    assert.deepEqual(during.listeners, [], 'no process of the environment listens on a non-loopback address of the host\'s namespace');
    assert.deepEqual(during.links, [`${bridge.slice(0, 12)}-h`], 'only the host end of the veth pair is in the host namespace');
    assert.ok(during.subnetRouted, `the host routes ${subnet} into the namespace`);
    const netns = join(state, 'node', 'netns');
    const rules = await must('nsenter', [`--net=${netns}`, 'iptables-save']);
    assert.match(rules, /KUBE-SERVICES/, 'kube-proxy wrote its rules in the node\'s namespace');
    // Idempotent: a second up keeps every process of the layout.
    const pids = ['kube-proxy', 'coredns', 'unix-bridge-host', 'unix-bridge-netns', 'containerd', 'kubelet'].map((c) => readFileSync(join(state, 'pids', `${c}.pid`), 'utf8').trim());
    const again = await sh('bash', [script, 'up', '--real-node', '--in-cluster'], { env });
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(['kube-proxy', 'coredns', 'unix-bridge-host', 'unix-bridge-netns', 'containerd', 'kubelet'].map((c) => readFileSync(join(state, 'pids', `${c}.pid`), 'utf8').trim()), pids, 'the same processes after a second up');
    const down = await sh('bash', [script, 'down'], { env });
    downDone = true;
    assert.equal(down.code, 0, `down failed:\n${down.stderr}`);
    const after_ = await machineState(state, names, subnet);
    assert.deepEqual(after_.processes, [], 'no process of the environment is left');
    assert.deepEqual(after_.mounts, [], 'no mount under the state dir (the namespace file included) is left');
    assert.deepEqual(after_.links, [], 'no bridge or veth is left');
    assert.deepEqual(after_.routes, before_.routes, 'the host routes are as before');
    assert.deepEqual(after_.sysctls, before_.sysctls, 'host sysctls (ip_forward included) unchanged');
    assert.deepEqual(after_.iptables, before_.iptables, 'host iptables rules unchanged');
    assert.equal(after_.nft, before_.nft, 'host nft ruleset unchanged');
    assert.ok(!existsSync(state), 'the state dir is removed');
  });
});
