// Tests of scripts/k8s-testenv itself: `up` is idempotent, prints the export line last,
// recovers from a dead component, and `down` stops every process and removes the state.
// One test uses the cluster of KUBECONFIG; the lifecycle test starts a second, private
// cluster in a temp state dir (real processes) and always tears it down.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
const script = fileURLToPath(new URL('../../../scripts/k8s-testenv', import.meta.url));

interface Result { code: number; stdout: string; stderr: string }

async function testenv(args: string[], state: string, extraEnv: Record<string, string> = {}): Promise<Result> {
  try {
    const { stdout, stderr } = await execFileP('bash', [script, ...args], {
      env: { ...process.env, WEFT_K8S_STATE: state, ...extraEnv },
      timeout: 300_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

function pids(state: string): Map<string, number> {
  const dir = join(state, 'pids');
  return new Map(readdirSync(dir).map((f) => [f.replace(/\.pid$/, ''), Number(readFileSync(join(dir, f), 'utf8').trim())]));
}

/** The process exists and is not a zombie (exited, not yet reaped by init). */
function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

function lastLine(s: string): string {
  const lines = s.trimEnd().split('\n');
  return lines[lines.length - 1];
}

describe('scripts/k8s-testenv', () => {
  test('up on a running cluster is idempotent: same export line, same processes', async () => {
    const kubeconfig = process.env.KUBECONFIG;
    if (!kubeconfig) throw new Error('KUBECONFIG is not set: run scripts/test, or eval "$(scripts/k8s-testenv up | tail -n1)" first');
    const state = dirname(kubeconfig);
    assert.ok(existsSync(join(state, 'pids')), `${state} is not a k8s-testenv state dir (KUBECONFIG must come from scripts/k8s-testenv up)`);
    const before = pids(state);
    const r = await testenv(['up'], state);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(lastLine(r.stdout), `export KUBECONFIG=${kubeconfig}`);
    assert.match(r.stderr, /already up/);
    assert.deepEqual(pids(state), before, 'no component was restarted');
    const s = await testenv(['status'], state);
    assert.equal(s.code, 0, s.stdout + s.stderr);
    for (const c of ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kwok']) {
      assert.match(s.stdout, new RegExp(`^${c} +running`, 'm'));
    }
  });

  test('an unknown subcommand fails with the usage', async () => {
    const r = await testenv(['bogus'], join(tmpdir(), 'weft-k8s-testenv-unused'));
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /usage: scripts\/k8s-testenv up \[--real-node \[--in-cluster\]\]\|down\|status\|restart-apiserver\|env/);
  });

  test('restart-apiserver and env on a cluster that is not up fail with what to do', async () => {
    const state = mkdtempSync(join(tmpdir(), 'weft-k8s-none-'));
    rmSync(state, { recursive: true });
    for (const cmd of ['restart-apiserver', 'env']) {
      const r = await testenv([cmd], state);
      assert.notEqual(r.code, 0, cmd);
      assert.match(r.stderr, /the cluster is not up \(run scripts\/k8s-testenv up\)/, cmd);
    }
    assert.equal(existsSync(state), false, 'nothing was written');
  });

  test('an up that fails stops what it started and leaves no state, keeping the logs', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'weft-k8s-fail-'));
    const state = join(parent, 'state');
    try {
      const r = await testenv(['up'], state, { WEFT_K8S_ETCD: '/bin/false' });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /etcd exited while waiting for etcd/);
      const kept = /the component logs are kept in (\S+)/.exec(r.stderr)?.[1];
      assert.ok(kept && existsSync(join(kept, 'etcd.log')), `logs kept: ${r.stderr}`);
      rmSync(dirname(kept), { recursive: true, force: true });
      assert.equal(existsSync(state), false, 'no state dir is left');
    } finally {
      rmSync(parent, { recursive: true, force: true });
    }
  });

  describe('a private cluster: up, recover from a dead component, down', () => {
    const state = join(mkdtempSync(join(tmpdir(), 'weft-k8s-life-')), 'state');
    after(async () => {
      await testenv(['down'], state);
      rmSync(dirname(state), { recursive: true, force: true });
    });

    test('lifecycle', async () => {
      const up = await testenv(['up'], state);
      assert.equal(up.code, 0, up.stderr);
      assert.equal(lastLine(up.stdout), `export KUBECONFIG=${join(state, 'kubeconfig')}`);
      const first = pids(state);
      assert.deepEqual([...first.keys()].sort(), ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kwok']);
      for (const pid of first.values()) assert.ok(processAlive(pid));

      // A dead component makes the next `up` tear down and start afresh.
      process.kill(first.get('kwok')!, 'SIGKILL');
      await new Promise((r) => setTimeout(r, 500));
      const status = await testenv(['status'], state);
      assert.notEqual(status.code, 0);
      assert.match(status.stdout, /^kwok +NOT running/m);
      const again = await testenv(['up'], state);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stderr, /stale or partial cluster/);
      const second = pids(state);
      for (const [name, pid] of second) {
        assert.ok(processAlive(pid), `${name} runs`);
        assert.notEqual(pid, first.get(name), `${name} was restarted`);
      }
      for (const pid of first.values()) assert.equal(processAlive(pid), false, `old pid ${pid} is gone`);

      const down = await testenv(['down'], state);
      assert.equal(down.code, 0, down.stderr);
      assert.equal(existsSync(state), false, 'the state dir is removed');
      for (const pid of second.values()) assert.equal(processAlive(pid), false, `pid ${pid} is stopped`);
    });
  });
});
