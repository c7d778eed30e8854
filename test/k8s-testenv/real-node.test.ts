// The real node of scripts/k8s-testenv (up --real-node): it registers Ready with its label and
// taint, and `down` leaves the machine as it found it: no process, mount, bridge or cgroup of the
// node left, and the host's sysctls and netfilter rules unchanged. A private cluster in a temp
// state dir, with its own bridge name and pod subnet, so the suite's own cluster is untouched.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { commandLines } from '../support/process.js';
import { toolVersion, toolsDir } from '../support/tools.js';

const execFileP = promisify(execFile);
const script = fileURLToPath(new URL('../../../scripts/k8s-testenv', import.meta.url));
const sysctls = ['/proc/sys/vm/overcommit_memory', '/proc/sys/kernel/panic', '/proc/sys/kernel/panic_on_oops', '/proc/sys/net/ipv4/ip_forward'];

async function sh(file: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileP(file, args, { env: { ...process.env, ...env }, timeout: 400_000, maxBuffer: 32 << 20 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** What a node could leave behind on the machine, as text to compare. */
async function machineState(state: string, bridge: string) {
  const processes = commandLines()
    .map((p) => p.commandLine)
    .filter((c) => c.includes(state));
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(state));
  const link = await sh('ip', ['link', 'show', bridge]);
  const iptables = await sh('iptables-save', []);
  return {
    processes,
    mounts,
    bridge: link.code === 0,
    sysctls: sysctls.map((f) => `${f}=${readFileSync(f, 'utf8').trim()}`),
    // Counters and comments with dates change by themselves: compare the rules only.
    iptables: iptables.stdout.split('\n').filter((l) => l.startsWith('-A ') || l.startsWith(':')).map((l) => l.replace(/\[\d+:\d+\]/, '')).sort(),
  };
}

test('the real node comes up Ready with its label and taint, and down leaves nothing on the machine', { timeout: 900_000 }, async (t) => {
  const state = mkdtempSync(join(tmpdir(), 'weft-real-node-env-'));
  const bridge = 'weftbr9';
  const env = { WEFT_K8S_STATE: join(state, 'k8s'), WEFT_REAL_NODE_BRIDGE: bridge, WEFT_REAL_NODE_SUBNET: '10.88.79.0/24', WEFT_K8S_NODES: '1', WEFT_NODE_REGISTRIES: '127.0.0.1:5999' };
  const before = await machineState(state, bridge);
  try {
    const up = await sh('bash', [script, 'up', '--real-node'], env);
    assert.equal(up.code, 0, `up --real-node failed:\n${up.stderr}`);
    const kubeconfig = up.stdout.trim().split('\n').pop()!.replace(/^export KUBECONFIG=/, '');
    const bin = join(toolsDir(), `kubernetes-${toolVersion('kubernetes', 'scripts/k8s/build.sh')}`, 'bin', 'kubectl');
    const node = await sh(bin, ['--kubeconfig', kubeconfig, 'get', 'nodes', '-l', 'weft.io/real-node=true', '-o', 'json']);
    assert.equal(node.code, 0, node.stderr);
    const items = (JSON.parse(node.stdout) as { items: Array<{ metadata: { name: string }; spec: { taints?: Array<{ key: string; value?: string; effect: string }> }; status: { conditions: Array<{ type: string; status: string }> } }> }).items;
    assert.equal(items.length, 1, 'one real node, labelled weft.io/real-node=true');
    assert.equal(items[0].status.conditions.find((c) => c.type === 'Ready')?.status, 'True');
    assert.deepEqual(items[0].spec.taints?.filter((x) => x.key === 'weft.io/real-node'), [{ key: 'weft.io/real-node', value: 'true', effect: 'NoSchedule' }]);
    assert.ok(existsSync(join(env.WEFT_K8S_STATE, 'node', 'containerd', 'certs.d', '127.0.0.1:5999', 'hosts.toml')), 'WEFT_NODE_REGISTRIES became a registry the node pulls from');
    assert.ok(existsSync(join(env.WEFT_K8S_STATE, 'node', 'containerd', 'certs.d', '127.0.0.1:5000', 'hosts.toml')), 'so did the default 127.0.0.1:5000');
    // Idempotent: a second up keeps the same kubelet.
    const pidFile = join(env.WEFT_K8S_STATE, 'pids', 'kubelet.pid');
    const pid = readFileSync(pidFile, 'utf8').trim();
    const again = await sh('bash', [script, 'up', '--real-node'], env);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(readFileSync(pidFile, 'utf8').trim(), pid, 'the same kubelet after a second up');
    const during = await machineState(state, bridge);
    assert.deepEqual(during.sysctls, before.sysctls, 'the kubelet and the CNI plugins changed no host sysctl');
    assert.deepEqual(during.iptables, before.iptables, 'no netfilter rule was added');
    t.diagnostic(`while up: ${during.processes.length} processes and ${during.mounts.length} mounts of the node`);
  } finally {
    const down = await sh('bash', [script, 'down'], env);
    assert.equal(down.code, 0, `down failed:\n${down.stderr}`);
    const after = await machineState(state, bridge);
    assert.deepEqual(after.processes, [], 'no process of the node is left');
    assert.deepEqual(after.mounts, [], 'no mount under the state dir is left');
    assert.equal(after.bridge, false, `the bridge ${bridge} is gone`);
    assert.deepEqual(after.sysctls, before.sysctls);
    assert.deepEqual(after.iptables, before.iptables);
    assert.ok(!existsSync(env.WEFT_K8S_STATE), 'the state dir is removed');
    rmSync(state, { recursive: true, force: true });
  }
});
