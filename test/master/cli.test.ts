// The CLI through a master (WEFT_MASTER + WEFT_TOKEN): the same commands print
// the same shapes as without a master, on the real local runtime.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createLocalRuntime } from '../../src/runtime/local/index.js';
import { buildProbeImage, weftMain, type ProbeImage } from '../twill/fixtures/probe-image.js';
import { startTestMaster, waitFor, type TestMaster } from './helpers.js';
import { isValidRunId } from '../../src/runtime/runid.js';

const execFileAsync = promisify(execFile);

describe('the CLI through a master', () => {
  let probe: ProbeImage;
  let t: TestMaster;
  let work: string;
  let directState: string;
  const outputs: string[] = [];

  const weft = async (args: string[], env: Record<string, string | undefined>) => {
    try {
      const { stdout, stderr } = await execFileAsync(process.execPath, [weftMain, ...args], { env: { ...process.env, NO_COLOR: '1', WEFT_LOCAL_MODE: 'host', ...env }, maxBuffer: 64 << 20 });
      outputs.push(stdout, stderr);
      return { code: 0, stdout, stderr };
    } catch (error) {
      const e = error as { code: number; stdout: string; stderr: string };
      outputs.push(e.stdout, e.stderr);
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  };
  const viaMaster = (args: string[]) => weft(args, { WEFT_MASTER: t.master.url, WEFT_TOKEN: t.adminToken });
  const direct = (args: string[]) => weft([...args, '--runtime', 'local'], { WEFT_MASTER: undefined, WEFT_TOKEN: undefined, XDG_STATE_HOME: directState });
  const writeApp = async (name: string, args: string[]) => {
    const file = path.join(work, `${name}.yaml`);
    await fs.writeFile(file, `name: ${name}\nstopTimeout: 10s\nrunnables:\n  - name: main\n    kind: batch\n    image: ${probe.reference}\n    args: [${args.map((a) => JSON.stringify(a)).join(', ')}]\n`);
    return file;
  };
  const keys = (o: Record<string, unknown>) => Object.keys(o).filter((k) => o[k] !== undefined).sort();

  before(async () => {
    probe = await buildProbeImage();
    t = await startTestMaster();
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-master-cli-'));
    directState = path.join(work, 'state');
  });
  after(async () => {
    const directRuntime = await createLocalRuntime({ stateDir: path.join(directState, 'weft', 'local'), mode: 'host' });
    for (const s of await directRuntime.list({ liveOnly: true }).catch(() => [])) await directRuntime.kill(s.runId).catch(() => undefined);
    await directRuntime.close();
    await t?.close();
    await probe?.remove();
    if (work) await fs.rm(work, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
  });

  test('run, status, logs and list print what they print without a master', { timeout: 240_000 }, async () => {
    const app = await writeApp('cli-ticks', ['ticks', '5']);
    const [m, d] = [await viaMaster(['run', app, '--json']), await direct(['run', app, '--json'])];
    assert.equal(m.code, 0, m.stderr);
    assert.equal(d.code, 0, d.stderr);
    const [mRun, dRun] = [JSON.parse(m.stdout), JSON.parse(d.stdout)];
    assert.deepEqual(Object.keys(mRun).sort(), Object.keys(dRun).sort());
    assert.ok(isValidRunId(mRun.runId) && mRun.runId.startsWith('cli-ticks-'), `a run id of app cli-ticks: ${mRun.runId}`);
    const stored = await t.master.store.getRun(mRun.runId);
    assert.ok(stored, 'the run went through the master');
    // Wait for both to end, then compare status, logs and list.
    await waitFor('the master run to end', async () => (JSON.parse((await viaMaster(['status', mRun.runId, '--json'])).stdout).state === 'COMPLETED' ? true : undefined), 90_000);
    await waitFor('the direct run to end', async () => (JSON.parse((await direct(['status', dRun.runId, '--json'])).stdout).state === 'COMPLETED' ? true : undefined), 90_000);
    const [mStatus, dStatus] = [JSON.parse((await viaMaster(['status', mRun.runId, '--json'])).stdout), JSON.parse((await direct(['status', dRun.runId, '--json'])).stdout)];
    assert.deepEqual(keys(mStatus).filter((k) => k !== 'reason'), keys(dStatus).filter((k) => k !== 'reason'));
    assert.equal(mStatus.runnables[0].name, 'main');
    assert.deepEqual(keys(mStatus.runnables[0]), keys(dStatus.runnables[0]));
    const strip = (text: string, runId: string) => text.replaceAll(runId, 'RUN').split('\n').filter(Boolean);
    await waitFor('the archive to hold the whole output', async () => ((await viaMaster(['logs', mRun.runId])).stdout.includes('batch done') ? true : undefined));
    const [mLogs, dLogs] = [(await viaMaster(['logs', mRun.runId])).stdout, (await direct(['logs', dRun.runId])).stdout];
    assert.deepEqual(strip(mLogs, mRun.runId), strip(dLogs, dRun.runId), 'the same lines, prefixed [runnable/instance]');
    assert.ok(mLogs.includes('[main/0] tick 5'));
    const mTail = (await viaMaster(['logs', mRun.runId, '--tail', '2'])).stdout;
    assert.deepEqual(strip(mTail, mRun.runId), strip(dLogs, dRun.runId).slice(-2));
    const mList = JSON.parse((await viaMaster(['list', '--json'])).stdout) as Array<Record<string, unknown>>;
    const dList = JSON.parse((await direct(['list', '--json'])).stdout) as Array<Record<string, unknown>>;
    const mine = mList.find((r) => r.runId === mRun.runId)!;
    assert.ok(mine);
    assert.deepEqual(Object.keys(mine).sort(), Object.keys(dList[0]).sort());
    assert.equal(mine.state, 'COMPLETED');
  });

  test('run --wait, kill and scale go through the master; errors say what to do; no token is printed', { timeout: 240_000 }, async () => {
    const waited = await viaMaster(['run', await writeApp('cli-wait', ['batch']), '--wait', '--json']);
    assert.equal(waited.code, 0, waited.stderr);
    assert.equal(JSON.parse(waited.stdout).state, 'COMPLETED');
    const started = JSON.parse((await viaMaster(['run', await writeApp('cli-stubborn', ['stubborn']), '--json'])).stdout);
    await waitFor('the run to be RUNNING', async () => ((await t.master.store.getRun(started.runId))?.state === 'RUNNING' ? true : undefined));
    const killed = await viaMaster(['kill', started.runId, '--json', '--timeout', '60']);
    assert.equal(killed.code, 0, killed.stderr);
    assert.deepEqual(JSON.parse(killed.stdout), { runId: started.runId, state: 'KILLED', message: JSON.parse(killed.stdout).message });
    assert.equal((await t.master.store.getRun(started.runId))?.state, 'KILLED');
    const scaled = await viaMaster(['scale', started.runId, 'main=2']);
    assert.equal(scaled.code, 1);
    assert.match(scaled.stderr, /already ended KILLED/);
    const noToken = await weft(['status', started.runId], { WEFT_MASTER: t.master.url, WEFT_TOKEN: undefined });
    assert.equal(noToken.code, 1);
    assert.match(noToken.stderr, /needs a token.*WEFT_TOKEN/);
    const missing = await viaMaster(['status', 'no-such-run']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no run no-such-run found/);
    const unreachable = await weft(['list'], { WEFT_MASTER: 'http://127.0.0.1:9', WEFT_TOKEN: 'x' });
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, /cannot reach the master at http:\/\/127\.0\.0\.1:9/);
    assert.ok(!outputs.join('\n').includes(t.adminToken), 'the token is never printed');
  });

  test('weft master writes a new admin token file (0600), serves with it, reuses it, and stops on SIGTERM', { timeout: 120_000 }, async () => {
    const tokenFile = path.join(work, 'master-token');
    const store = `sqlite:${path.join(work, 'cli-master.db')}`;
    const startOne = async () => {
      const child = spawn(process.execPath, [weftMain, 'master', '--addr', '127.0.0.1:0', '--store', store, '--runtime', 'local', '--admin-token-file', tokenFile], {
        env: { ...process.env, XDG_STATE_HOME: path.join(work, 'master-state'), WEFT_LOCAL_MODE: 'host' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d));
      child.stderr.on('data', (d: Buffer) => (stderr += d));
      const url = await waitFor('the master URL on stdout', async () => /^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(stdout)?.[1], 60_000).catch((error) => {
        child.kill('SIGKILL');
        throw new Error(`${error}: ${stderr}`);
      });
      return { child, url, stderr: () => stderr };
    };
    const first = await startOne();
    try {
      assert.equal((await fs.stat(tokenFile)).mode & 0o777, 0o600);
      const token = (await fs.readFile(tokenFile, 'utf8')).trim();
      assert.match(first.stderr(), /a new admin token was written to/);
      assert.ok(!first.stderr().includes(token), 'the token is not logged');
      assert.equal((await fetch(`${first.url}/healthz`)).status, 200);
      assert.equal((await fetch(`${first.url}/api/v1/tokens`)).status, 401);
      assert.equal((await fetch(`${first.url}/api/v1/tokens`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
    } finally {
      first.child.kill('SIGTERM');
    }
    const [code] = (await once(first.child, 'exit')) as [number | null];
    assert.equal(code, 0, first.stderr());
    const second = await startOne();
    try {
      assert.doesNotMatch(second.stderr(), /a new admin token/);
      const token = (await fs.readFile(tokenFile, 'utf8')).trim();
      assert.equal((await fetch(`${second.url}/api/v1/tokens`, { headers: { authorization: `Bearer ${token}` } })).status, 200, 'the existing token file is the admin token');
    } finally {
      second.child.kill('SIGTERM');
      await once(second.child, 'exit');
    }
  });
});
