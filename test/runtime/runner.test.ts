import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  createRunIdGenerator,
  parseAppSpecYaml,
  Runner,
  RunError,
  RunIdTakenError,
  type LogLine,
  type RunRequest,
  type RunStatus,
  type Runtime,
  type StatusListener,
} from '../../src/runtime/index.js';

/** A fake backend that records what it was asked and lets the test push statuses. */
class FakeRuntime implements Runtime {
  readonly name = 'local' as const;
  requests: RunRequest[] = [];
  calls: string[] = [];
  listeners = new Set<StatusListener>();
  statuses = new Map<string, RunStatus>();
  async submit(request: RunRequest): Promise<RunStatus> {
    this.requests.push(request);
    // Like the real backends: an id another run holds is refused, and nothing of that run changes.
    if (this.statuses.has(request.runId)) throw new RunIdTakenError(request.runId, 'the fake backend has it');
    const s: RunStatus = { runId: request.runId, app: request.spec.name, runtime: 'local', state: 'PENDING', runnables: [] };
    this.statuses.set(s.runId, s);
    return s;
  }
  push(runId: string, state: RunStatus['state'], message?: string): void {
    const s = { ...this.statuses.get(runId)!, state, message };
    this.statuses.set(runId, s);
    for (const l of this.listeners) l(s);
  }
  async status(runId: string) {
    return this.statuses.get(runId);
  }
  async list() {
    return [...this.statuses.values()];
  }
  watch(listener: StatusListener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  async stop(runId: string, o?: { gracePeriodMs?: number }) {
    this.calls.push(`stop ${runId} ${o?.gracePeriodMs}`);
  }
  async kill(runId: string) {
    this.calls.push(`kill ${runId}`);
  }
  async scale(runId: string, r: string, n: number) {
    this.calls.push(`scale ${runId} ${r} ${n}`);
  }
  async restart(runId: string, r: string, i?: string[]) {
    this.calls.push(`restart ${runId} ${r} ${i?.join(',') ?? 'all'}`);
  }
  async suspend(runId: string, s: boolean) {
    this.calls.push(`suspend ${runId} ${s}`);
  }
  async sendCommand(runId: string, c: string) {
    this.calls.push(`command ${runId} ${c}`);
  }
  async resourceReport(runId: string) {
    return { runId, app: 'a', instances: [] };
  }
  async *logs(): AsyncIterable<LogLine> {
    yield { runnable: 'w', instance: '0', line: 'hello' };
  }
  async discover() {
    return [{ name: 'http', host: '127.0.0.1', port: 1 }];
  }
  async close() {}
}

const spec = parseAppSpecYaml('name: app\nrunnables: [{ name: w, kind: service, image: x/y:1, args: [a] }, { name: b, kind: batch, image: x/z:1 }]');

test('the preparer applies arguments, env, resources, instances, files and the start timeout', async () => {
  const fake = new FakeRuntime();
  const runner = new Runner(fake);
  const c = await runner
    .prepare(spec)
    .withArguments('w', ['--port', '1'])
    .withApplicationArguments(['--all'])
    .withEnv({ A: '1' })
    .withEnv({ B: '2' }, 'b')
    .withResources('w', { memory: '1Gi' })
    .withInstances('w', 4)
    .withFiles([{ name: 'x.conf', data: 'k=v' }], 'w')
    .setStartTimeout('90s')
    .start();
  const req = fake.requests[0];
  assert.match(c.runId, /^app-[0-9a-hjkmnp-tv-z]{17}$/);
  const w = req.spec.runnables[0];
  const b = req.spec.runnables[1];
  assert.deepEqual(w.args, ['a', '--port', '1', '--all']);
  assert.deepEqual(b.args, ['--all']);
  assert.deepEqual(w.env, { A: '1' });
  assert.deepEqual(b.env, { A: '1', B: '2' });
  assert.equal(w.resources.memory, '1Gi');
  assert.equal(w.instances, 4);
  assert.equal(req.spec.startTimeout, 90_000);
  assert.equal(req.spec.stopTimeout, 30_000, 'durations stay in ms (not converted twice)');
  assert.deepEqual(req.files, [{ name: 'x.conf', data: Buffer.from('k=v'), runnable: 'w' }]);
  assert.equal(spec.runnables[0].instances, 1, 'the caller\'s spec is not modified');
  assert.throws(() => runner.prepare(spec).withInstances('nope', 1), /no runnable "nope".*w, b/);
});

test('the controller follows states and forwards commands', async () => {
  const fake = new FakeRuntime();
  const c = await new Runner(fake).prepare(spec).start();
  const running = c.onRunning();
  const ended = c.onTerminated();
  fake.push(c.runId, 'STARTING');
  fake.push(c.runId, 'RUNNING');
  assert.equal((await running).state, 'RUNNING');
  await c.changeInstances('w', 3);
  await c.restartInstances('w', [0]);
  await c.sendCommand('flush');
  await c.terminate(5000);
  fake.push(c.runId, 'STOPPING');
  fake.push(c.runId, 'KILLED', 'stopped');
  const final = await ended;
  assert.equal(final.state, 'KILLED');
  assert.equal(c.state, 'KILLED');
  fake.push(c.runId, 'RUNNING');
  assert.equal(c.state, 'KILLED', 'a terminal state sticks');
  assert.deepEqual(fake.calls, [`scale ${c.runId} w 3`, `restart ${c.runId} w 0`, `command ${c.runId} flush`, `stop ${c.runId} 5000`]);
  assert.equal(fake.listeners.size, 0, 'the controller unsubscribes once the run ended');
});

test('onRunning rejects with the reason when the run fails first; awaitTerminated times out', async () => {
  const fake = new FakeRuntime();
  const c = await new Runner(fake).prepare(spec).start();
  await assert.rejects(c.awaitTerminated(20), /did not end within 20 ms/);
  const running = c.onRunning();
  fake.push(c.runId, 'FAILED', 'exit code 3');
  await assert.rejects(running, (e: unknown) => e instanceof RunError && /ended FAILED: exit code 3/.test(e.message));
});

test('lookupLive and lookup find runs through the backend', async () => {
  const fake = new FakeRuntime();
  const runner = new Runner(fake);
  await runner.prepare(spec).start();
  const live = await runner.lookupLive();
  assert.equal(live.length, 1);
  assert.equal((await runner.lookupRun(live[0].runId))!.runId, live[0].runId);
  assert.equal(await runner.lookupRun('none'), undefined);
});

test('a submission that meets a taken id retries with a new one; both runs exist, each with its own request', async () => {
  const fake = new FakeRuntime();
  // The random source repeats its first draw once, with the clock standing still: the second run's first id is the first run's.
  const draws = [Uint8Array.of(7, 7, 7, 7, 7), Uint8Array.of(7, 7, 7, 7, 7), Uint8Array.of(8, 8, 8, 8, 8)];
  const runner = new Runner(fake, { newRunId: createRunIdGenerator({ now: () => 1_764_000_000_000, randomBytes: () => draws.shift()! }) });
  const first = await runner.prepare(spec).withEnv({ RUN: 'first' }).start();
  const second = await runner.prepare(spec).withEnv({ RUN: 'second' }).start();
  assert.notEqual(second.runId, first.runId);
  assert.deepEqual(
    fake.requests.map((r) => r.runId),
    [first.runId, first.runId, second.runId],
    'the second submission was refused once with the first id, then used a new one',
  );
  assert.equal(fake.statuses.size, 2);
  assert.equal(fake.requests[0].spec.runnables[0].env.RUN, 'first');
  assert.equal(fake.requests[2].spec.runnables[0].env.RUN, 'second');
  assert.equal(first.state, 'PENDING');
  assert.equal(second.state, 'PENDING');
});

test('a generator stuck on one id gives up after the configured attempts with a clear error', async () => {
  const fake = new FakeRuntime();
  const runner = new Runner(fake, { newRunId: () => 'app-stuck', runIdAttempts: 3 });
  await runner.prepare(spec).start();
  await assert.rejects(runner.prepare(spec).start(), (e: unknown) => e instanceof RunError && /no free run id after 3 attempts.*app-stuck is taken/.test(e.message));
  assert.equal(fake.requests.length, 4);
  assert.equal(fake.statuses.size, 1);
});

test('other submit errors are not retried', async () => {
  const fake = new FakeRuntime();
  fake.submit = async (request) => {
    fake.requests.push(request);
    throw new Error('registry down');
  };
  await assert.rejects(new Runner(fake).prepare(spec).start(), /registry down/);
  assert.equal(fake.requests.length, 1);
});
