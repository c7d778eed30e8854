// The coordination scenarios against a REAL etcd (Debian's etcd-server, started by
// scripts/test.d/40-etcd-up.sh), with candidates as real processes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCoordination, type LeaseTimings } from '../../src/coord/index.js';
import { requireEnv } from './harness.js';
import { discovery, failover, locks, partition, type BackendUnderTest } from './scenarios.js';

// Short timings for tests (etcd's minimum lease TTL is about 2 s with default heartbeats).
const timings: LeaseTimings = { leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 500 };

function backend(): BackendUnderTest {
  const endpoints = requireEnv('WEFT_ETCD_ENDPOINTS', 'run the tests with scripts/test, or start etcd with scripts/test.d/40-etcd-up.sh and export the variable it writes');
  const url = new URL(endpoints.split(',')[0]!);
  return {
    target: { host: url.hostname, port: Number(url.port) },
    timings,
    options: (proxyPort) => ({ backend: 'etcd', endpoints: proxyPort ? [`http://127.0.0.1:${proxyPort}`] : endpoints.split(','), prefix: 'weft-test/', timings }),
  };
}

test('etcd: three candidates, the leader SIGKILLed twice: another leads, never two at once', async (t) => {
  const r = await failover(backend(), 2, (m) => t.diagnostic(m));
  assert.equal(r.failoversMs.length, 2);
  assert.ok(r.writers >= 3, `three different leaders wrote to the fenced log (saw ${r.writers})`);
  assert.deepEqual(r.problems, []);
});

test('etcd: a partitioned leader steps down before another leads', async (t) => {
  await partition(backend(), (m) => t.diagnostic(m));
});

test('etcd: discovery sees instances come and go', async (t) => {
  await discovery(backend(), (m) => t.diagnostic(m));
});

test('etcd: lock mutual exclusion with increasing fencing tokens', async () => {
  await locks(backend());
});

test('etcd: bad configuration fails clearly', async () => {
  await assert.rejects(createCoordination({ backend: 'etcd', endpoints: [] }), /needs endpoints/);
  await assert.rejects(createCoordination({ backend: 'etcd', endpoints: ['127.0.0.1:2379/x/y'] }), /invalid etcd endpoint/);
  await assert.rejects(createCoordination({ backend: 'etcd', endpoints: ['http://127.0.0.1:1'], timings: { renewDeadlineMs: 20_000 } }), /must be less than leaseDurationMs/);
});

test('etcd: weft coord lock runs a command under the lock with its token, and passes its exit code', async () => {
  const { execFile } = await import('node:child_process');
  const endpoints = requireEnv('WEFT_ETCD_ENDPOINTS', 'run the tests with scripts/test');
  const run = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, ['dist/src/cli/main.js', 'coord', ...args], (error, stdout, stderr) =>
        resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
  const ok = await run(['lock', 'cli-lock', '--etcd-endpoints', endpoints, '--timeout', '10000', '--json', '--', 'sh', '-c', 'echo "token=$WEFT_LOCK_TOKEN"; exit 3']);
  assert.equal(ok.code, 3);
  const acquired = JSON.parse(ok.stdout.split('\n')[0]!) as { ev: string; token: number };
  assert.equal(acquired.ev, 'acquired');
  assert.match(ok.stdout, new RegExp(`token=${acquired.token}\\b`));
  const fromEnv = await run(['lock', 'cli-lock', '--backend', 'etcd', '--', 'true']);
  assert.equal(fromEnv.code, 0, `WEFT_ETCD_ENDPOINTS from the environment gives the endpoints: ${fromEnv.stderr}`);
  const wrong = await run(['lock', 'cli-lock', '--backend', 'zookeeper', '--', 'true']);
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /unknown --backend "zookeeper"/);
});
