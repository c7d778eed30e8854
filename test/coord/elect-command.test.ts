// `weft coord elect --name N -- <command>` (issue 13, finding 9): the command runs only
// while its candidate leads, is stopped (SIGTERM, then SIGKILL after --grace) when
// leadership is lost, and weft exits with the command's code. Against a REAL etcd
// (scripts/test.d/40-etcd-up.sh); candidates are real weft processes.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Etcd3 } from 'etcd3';
import { waitFor } from '../support/wait.js';
import { requireEnv } from './harness.js';

const weftMain = 'dist/src/cli/main.js';
const started: ChildProcess[] = [];

after(() => {
  for (const p of started) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
});

interface Candidate {
  lines: string[];
  events(): Array<{ ev: string; [k: string]: unknown }>;
  waitFor(what: string, predicate: (lines: string[]) => boolean, timeoutMs?: number): Promise<void>;
  exited: Promise<number>;
}

function candidate(args: string[]): Candidate {
  const child = spawn(process.execPath, [weftMain, 'coord', 'elect', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  started.push(child);
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  let buffer = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    buffer += d;
    const parts = buffer.split('\n');
    buffer = parts.pop() ?? '';
    lines.push(...parts);
    for (const w of [...waiters]) w();
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1))));
  return {
    lines,
    events: () => lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { ev: string }),
    waitFor(what, predicate, timeoutMs = 30_000) {
      return new Promise<void>((resolve, reject) => {
        const check = () => {
          if (!predicate(lines)) return;
          cleanup();
          resolve();
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out waiting for ${what}; stdout:\n${lines.join('\n')}\nstderr:\n${stderr}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        void exited.then(() => setImmediate(check));
        check();
      });
    },
    exited,
  };
}

/** Revokes the etcd lease behind a candidate's election key: it loses leadership as a partitioned or expired leader would. */
async function revokeLeaseOf(endpoints: string, election: string, candidateId: string): Promise<void> {
  const client = new Etcd3({ hosts: endpoints.split(',') });
  try {
    const res = await client.getAll().prefix(`weft/election/${election}/`).exec();
    const mine = res.kvs.find((kv) => kv.value.toString() === candidateId);
    assert.ok(mine, `candidate ${candidateId} has an election key: ${res.kvs.map((kv) => kv.value.toString()).join(', ')}`);
    await client.leaseClient.leaseRevoke({ ID: mine.lease });
  } finally {
    client.close();
  }
}

/** Waits until `count` candidates have election keys. */
async function waitForKeys(endpoints: string, election: string, count: number): Promise<void> {
  const client = new Etcd3({ hosts: endpoints.split(',') });
  try {
    let n = 0;
    await waitFor(`${count} candidates campaigning in ${election}`, async () => (n = (await client.getAll().prefix(`weft/election/${election}/`).keys()).length) >= count, 30_000).catch((error: Error) => {
      throw new Error(`${error.message} (saw ${n})`);
    });
  } finally {
    client.close();
  }
}

const timings = ['--lease-duration', '3000', '--renew-deadline', '2000', '--retry-period', '500'];

test('etcd: a command runs only while leader; losing leadership stops it (SIGTERM) and weft exits with its code; the next leader runs its own', { timeout: 90_000 }, async () => {
  const endpoints = requireEnv('WEFT_ETCD_ENDPOINTS', 'run the tests with scripts/test, or start etcd with scripts/test.d/40-etcd-up.sh and export the variable it writes');
  const name = `elect-cmd-${randomBytes(3).toString('hex')}`;
  const common = ['--backend', 'etcd', '--etcd-endpoints', endpoints, '--name', name, '--json', '--grace', '20000', ...timings];
  const a = candidate([...common, '--id', 'a', '--', 'sh', '-c', 'echo "a leads with token $WEFT_LEADER_TOKEN"; trap "echo a got TERM; exit 7" TERM; while :; do sleep 0.1; done']);
  await a.waitFor('a to run its command', (l) => l.some((x) => x.startsWith('a leads with token ')));
  const b = candidate([...common, '--id', 'b', '--', 'sh', '-c', 'echo "b leads with token $WEFT_LEADER_TOKEN"; exit 5']);
  // b's key exists once it campaigns; while a leads, b runs nothing.
  await waitForKeys(endpoints, name, 2);
  assert.ok(!b.lines.some((l) => l.startsWith('b leads')), 'b runs nothing while a leads');
  await revokeLeaseOf(endpoints, name, 'a');
  assert.equal(await a.exited, 7, `weft exits with the command's code:\n${a.lines.join('\n')}`);
  assert.ok(a.lines.includes('a got TERM'), 'the command got SIGTERM');
  const aEvents = a.events().map((e) => e.ev);
  assert.deepEqual(aEvents.slice(0, 3), ['elected', 'started', 'stepdown'], aEvents.join(' '));
  assert.ok(aEvents.indexOf('stopping') > aEvents.indexOf('stepdown') && aEvents.includes('exited'), aEvents.join(' '));
  assert.equal(await b.exited, 5, `the next leader ran its command:\n${b.lines.join('\n')}`);
  const aToken = Number(/a leads with token (\d+)/.exec(a.lines.join('\n'))![1]);
  const bToken = Number(/b leads with token (\d+)/.exec(b.lines.join('\n'))![1]);
  assert.ok(bToken > aToken, `fencing tokens increase: a ${aToken}, b ${bToken}`);
  assert.deepEqual(b.events().map((e) => e.ev).slice(0, 2), ['elected', 'started']);
});

test('etcd: a command that ignores SIGTERM is killed after the grace period (exit 137)', { timeout: 60_000 }, async () => {
  const endpoints = requireEnv('WEFT_ETCD_ENDPOINTS', 'run the tests with scripts/test');
  const name = `elect-kill-${randomBytes(3).toString('hex')}`;
  const c = candidate(['--backend', 'etcd', '--etcd-endpoints', endpoints, '--name', name, '--id', 'stubborn', '--json', '--grace', '1000', ...timings, '--', 'sh', '-c', 'trap "" TERM; echo stubborn runs; while :; do sleep 0.1; done']);
  await c.waitFor('the command to run', (l) => l.includes('stubborn runs'));
  await revokeLeaseOf(endpoints, name, 'stubborn');
  assert.equal(await c.exited, 137, c.lines.join('\n'));
  const stops = c.events().filter((e) => e.ev === 'stopping').map((e) => e.signal);
  assert.deepEqual(stops, ['SIGTERM', 'SIGKILL']);
});

test('memory backend: the command runs at once with its token and its exit code is weft\'s; no election name is an error', { timeout: 30_000 }, async () => {
  const c = candidate(['--backend', 'memory', '--name', 'solo', '--', 'sh', '-c', 'echo "token=$WEFT_LEADER_TOKEN name=$WEFT_LEADER_NAME"; exit 3']);
  assert.equal(await c.exited, 3);
  assert.ok(c.lines.includes('token=0 name=solo'), c.lines.join('\n'));
  const none = candidate(['--backend', 'memory']);
  assert.equal(await none.exited, 1);
});

test('memory backend: --heartbeat prints a fencing log (elected, leading with the token, stepdown on SIGTERM); with a command it is refused', { timeout: 30_000 }, async () => {
  const c = candidate(['demo', '--backend', 'memory', '--json', '--heartbeat', '100']);
  await c.waitFor('three heartbeats', () => c.events().filter((e) => e.ev === 'leading').length >= 3);
  const [elected, ...rest] = c.events();
  assert.equal(elected.ev, 'elected');
  assert.match(String(elected.id), /-[0-9a-f]{8}$/, 'the default candidate id is <hostname>-<8 random hex digits>');
  for (const e of rest) assert.deepEqual([e.ev, e.id, e.token], ['leading', elected.id, elected.token]);
  started.at(-1)!.kill('SIGTERM');
  assert.equal(await c.exited, 0);
  assert.equal(c.events().at(-1)?.ev, 'stepdown', 'it resigns on SIGTERM');
  const refused = candidate(['demo', '--backend', 'memory', '--heartbeat', '100', '--', 'true']);
  assert.equal(await refused.exited, 1);
});
