// The local backend with real runc (and the host-process mode where it
// differs): images pulled from weft's registry, the generated bundle, runs
// found again by a new process, supervisors verified by pid, restarts, bad
// input, and the CLI (`weft run --runtime local`).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { openImage, parseDockerReference } from '../../src/image/index.js';
import { createRemoteTransport } from '../../src/registry/client/index.js';
import { startRegistry, type RunningRegistry } from '../../src/registry/server/index.js';
import { createRunIdGenerator, createRunner, isTerminal, parseAppSpec, Runner, RunIdTakenError, type AppSpecInput, type Controller, type RunStatus, type TwillRunner } from '../../src/runtime/index.js';
import { createLocalRuntime, LocalRuntime } from '../../src/runtime/local/index.js';
import { buildProbeImage, weftMain, type ProbeImage } from '../twill/fixtures/probe-image.js';
import { logLines, readLineWhenListening, waitForLogs } from '../twill/local-target.js';
import { StartedRuns, waitForRunStatus } from '../support/runs.js';
import { tempDir } from '../support/temp.js';
import { waitFor } from '../support/wait.js';

const execFileAsync = promisify(execFile);

const waitState = (runtime: LocalRuntime, runId: string, what: string, predicate: (s: RunStatus) => boolean, timeoutMs = 60_000) =>
  waitForRunStatus(runtime, runId, what, predicate, { timeoutMs });

describe('the local runtime with runc', () => {
  let probe: ProbeImage;
  let registry: RunningRegistry;
  let stateDir: string;
  let runtime: LocalRuntime;
  let runner: TwillRunner;
  let remoteImage: string;
  const runs = new StartedRuns(() => runner);
  const start = (input: AppSpecInput) => runs.start(input);

  const service = (name: string, image: string, instances = 1): AppSpecInput => ({
    name,
    stopTimeout: '10s',
    runnables: [{ name: 'web', kind: 'service', image, instances, args: ['service'], ports: [{ name: 'http', port: 18181 }] }],
  });

  before(async () => {
    probe = await buildProbeImage();
    stateDir = await tempDir('weft-local-test-');
    registry = await startRegistry({ root: path.join(stateDir, 'registry'), addr: '127.0.0.1:0', logLevel: 'silent' });
    // Push the probe to weft's registry with weft's client: the run pulls it back from there.
    const image = (await openImage(probe.reference))!;
    remoteImage = `127.0.0.1:${registry.port}/weft/probe:1`;
    await createRemoteTransport().write(image, parseDockerReference(remoteImage));
    runtime = await createLocalRuntime({ stateDir: path.join(stateDir, 'local'), mode: 'runc' });
    runner = await createRunner({ runtime: 'local', stateDir: path.join(stateDir, 'local'), mode: 'runc' });
  });

  after(async () => {
    await runs.endAll(runtime);
    await runner?.close();
    await runtime?.close();
    await registry?.close();
    await probe?.remove();
    if (stateDir) await fs.rm(stateDir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 }); // supervisors may still be finishing
  });

  test('runs an image pulled from the registry; the bundle is what the design asks for', { timeout: 120_000 }, async () => {
    assert.equal(runtime.mode, 'runc', runtime.modeNote);
    const c = await start(service('lr-pull', remoteImage));
    await c.onRunning();
    const s = await waitState(runtime, c.runId, 'running', (x) => x.runnables[0].running === 1);
    const instance = s.runnables[0].instances[0];
    assert.equal(instance.containerId, `weft-${c.runId}-web-0`);
    // runc itself lists the container as running, under weft's --root.
    const { stdout } = await execFileAsync('runc', ['--root', path.join(stateDir, 'local', 'runc'), 'state', instance.containerId!]);
    assert.equal(JSON.parse(stdout).status, 'running');
    const config = JSON.parse(await fs.readFile(path.join(stateDir, 'local', 'runs', c.runId, 'instances', 'web-0', 'bundle', 'config.json'), 'utf8'));
    assert.equal(config.process.rlimits, undefined, 'process.rlimits dropped');
    assert.deepEqual(
      config.linux.namespaces.find((n: { type: string }) => n.type === 'network'),
      { type: 'network', path: `/run/netns/${instance.containerId}` },
      'its own network namespace by default',
    );
    assert.equal(config.root.readonly, true);
    assert.deepEqual(config.process.args.slice(-2), ['Probe', 'service'], 'the image entry point, then the spec args (replacing Cmd)');
    for (const key of ['WEFT_RUN_ID', 'WEFT_APP', 'WEFT_RUNNABLE', 'WEFT_INSTANCE_ID', 'WEFT_INSTANCE_COUNT', 'WEFT_POD_NAME', 'WEFT_NAMESPACE', 'WEFT_RUNTIME', 'WEFT_PORT_HTTP', 'JAVA_HOME']) {
      assert.ok(config.process.env.some((e: string) => e.startsWith(`${key}=`)), `${key} in the environment`);
    }
    assert.ok(config.mounts.some((m: { destination: string }) => m.destination === '/etc/weft/podinfo'), 'the command directory is mounted');
    const [endpoint] = await c.discoverService('http');
    assert.equal(await readLineWhenListening(endpoint.host, endpoint.port), 'instance 0', 'the announced port answers on 127.0.0.1');
    await assert.rejects(c.discoverService('nope'), /announces no service "nope": it announces http/);
  });

  test('a new process finds the live run (lookup, lookupLive) and the pids are verified', { timeout: 120_000 }, async () => {
    const c = await start(service('lr-restart', probe.reference));
    await c.onRunning();
    // A second runtime on the same state dir stands for a restarted weft.
    const other = await createRunner({ runtime: 'local', stateDir: path.join(stateDir, 'local'), mode: 'runc' });
    try {
      const live = await other.lookupLive();
      assert.ok(live.some((x) => x.runId === c.runId && x.state === 'RUNNING'), `lookupLive: ${live.map((x) => `${x.runId}:${x.state}`).join(' ')}`);
      const byApp = await other.lookup('lr-restart');
      assert.deepEqual(byApp.map((x) => x.runId), [c.runId]);
      [...live, ...byApp].forEach((x) => x.release());
      // The supervisor dies without recording an exit (a crash): the pid check notices.
      const record = JSON.parse(await fs.readFile(path.join(stateDir, 'local', 'runs', c.runId, 'run.json'), 'utf8'));
      process.kill(record.runnables.web.instances[0].supervisorPid, 'SIGKILL');
      const lost = await waitState(runtime, c.runId, 'the loss noticed', (x) => isTerminal(x.state));
      assert.equal(lost.state, 'FAILED');
      assert.equal(lost.reason, 'Lost');
      assert.match(lost.message!, /supervisor \(pid \d+\) ended without recording an exit code/);
      // Its container was removed.
      const list = await execFileAsync('runc', ['--root', path.join(stateDir, 'local', 'runc'), 'list', '-q']);
      assert.ok(!list.stdout.includes(`weft-${c.runId}-web-0`), list.stdout);
    } finally {
      await other.close();
    }
  });

  test('restartInstances restarts one instance; the others keep running', { timeout: 120_000 }, async () => {
    const c = await start(service('lr-restart-one', probe.reference, 2));
    await c.onRunning();
    await waitState(runtime, c.runId, '2 running', (x) => x.runnables[0].running === 2);
    await c.restartInstances('web', ['1']);
    const s = await waitState(runtime, c.runId, 'instance 1 back', (x) => x.runnables[0].running === 2 && x.runnables[0].instances.find((i) => i.id === '1')!.restarts === 1);
    assert.equal(s.runnables[0].instances.find((i) => i.id === '0')!.restarts, 0);
    const lines = await waitForLogs(c, 'the second start', (l) => l.filter((x) => x.startsWith('[web/1] probe service')).length === 2);
    assert.equal(lines.filter((x) => x.startsWith('[web/0] probe service')).length, 1);
    await assert.rejects(c.restartInstances('web', ['7']), /no instance 7: it has 0, 1/);
    await c.kill();
    assert.equal((await c.awaitTerminated(30_000)).state, 'KILLED');
  });

  test('a service that crashes is restarted with backoff and reported as CrashLoopBackOff', { timeout: 120_000 }, async () => {
    const c = await start({ name: 'lr-crash', runnables: [{ name: 'web', kind: 'service', image: probe.reference, args: ['fail', '4'] }] });
    const s = await waitState(runtime, c.runId, 'a restart', (x) => (x.runnables[0].instances[0]?.restarts ?? 0) >= 1);
    assert.ok(!isTerminal(s.state), 'a crashing service is restarted, not ended');
    const crash = await waitState(runtime, c.runId, 'CrashLoopBackOff', (x) => x.reason === 'CrashLoopBackOff');
    assert.match(crash.message!, /exited with code 4/);
    await c.kill();
    assert.equal((await c.awaitTerminated(30_000)).state, 'KILLED');
  });

  test('suspend freezes a batch (SUSPENDED) and resume lets it finish', { timeout: 120_000 }, async () => {
    const c = await start({ name: 'lr-suspend', runnables: [{ name: 'job', kind: 'batch', image: probe.reference, args: ['ticks', '60'] }] });
    await waitForLogs(c, 'tick 3', (l) => l.includes('[job/0] tick 3'));
    await c.suspend();
    const s = await waitState(runtime, c.runId, 'SUSPENDED', (x) => x.state === 'SUSPENDED');
    assert.equal(s.reason, 'Suspended');
    // Frozen for real: runc reports the container paused (its cgroup frozen), and its output stops.
    const runcState = async () => JSON.parse((await execFileAsync('runc', ['--root', path.join(stateDir, 'local', 'runc'), 'state', s.runnables[0].instances[0].containerId!])).stdout).status as string;
    await waitFor('runc to report the container paused', async () => (await runcState()) === 'paused', 30_000);
    const frozen = await logLines(c);
    assert.equal(await runcState(), 'paused');
    assert.deepEqual(await logLines(c), frozen, 'no output while frozen');
    const lastTick = Number(/tick (\d+)$/.exec(frozen.filter((l) => l.startsWith('[job/0] tick ')).pop()!)![1]);
    await c.resume();
    // It goes on where it stopped.
    await waitForLogs(c, `tick ${lastTick + 1}`, (l) => l.includes(`[job/0] tick ${lastTick + 1}`));
    const end = await c.awaitTerminated(60_000);
    assert.equal(end.state, 'COMPLETED');
    assert.ok((await logLines(c)).includes('[job/0] tick 60'));
    await assert.rejects(runtime.suspend((await start(service('lr-suspend-svc', probe.reference))).runId, true), /only batch runs can be suspended/);
  });

  test('bad input: a missing image fails with ErrImagePull and is recorded with its reason; a build: section without a target is refused', { timeout: 60_000 }, async () => {
    const missing = await runner.prepare(parseAppSpec({ name: 'lr-missing', runnables: [{ name: 'job', kind: 'batch', image: `oci:${path.join(stateDir, 'nope')}:x` }] })).start();
    assert.equal(missing.state, 'FAILED');
    assert.equal(missing.status.reason, 'ErrImagePull');
    assert.match(missing.status.message!, /cannot pull image/);
    const recorded = await runtime.status(missing.runId);
    assert.equal(recorded?.state, 'FAILED', 'the run that never started is recorded');
    assert.equal(recorded?.reason, 'ErrImagePull');
    assert.deepEqual(recorded?.runnables.map((r) => r.instances.length), [0], 'no instance was created');
    // build: sections are resolved before any backend sees the run, the same on both runtimes
    // (test/runtime-kube/lifecycle.test.ts asserts the same refusal on Kubernetes).
    const build = parseAppSpec({ name: 'lr-build', runnables: [{ name: 'job', kind: 'batch', build: { jar: 'x.jar' } }] });
    await assert.rejects(runner.prepare(build).start(), /needs target: docker:\/\/<registry>\/<repository>:<tag>/);
    assert.equal((await runtime.list({ app: 'lr-build' })).length, 0, 'nothing was recorded');
  });

  test('weft run --runtime local --wait runs a batch to completion; status, logs and list see it', { timeout: 120_000 }, async () => {
    const yaml = path.join(stateDir, 'weft.yaml');
    await fs.writeFile(yaml, `name: lr-cli\nrunnables:\n  - name: job\n    kind: batch\n    instances: 2\n    image: ${remoteImage}\n    args: [batch, from-cli]\n`);
    const env = { ...process.env, NO_COLOR: '1', WEFT_LOCAL_STATE_DIR: path.join(stateDir, 'cli'), WEFT_LOCAL_MODE: 'runc' };
    const run = await execFileAsync(process.execPath, [weftMain, 'run', yaml, '--runtime', 'local', '--wait', '--json'], { env });
    const lines = run.stdout.trim().split('\n');
    const final = JSON.parse(lines[lines.length - 1].startsWith('{') ? lines[lines.length - 1] : run.stdout);
    assert.equal(final.state, 'COMPLETED', run.stdout);
    const runId: string = final.runId;
    const status = JSON.parse((await execFileAsync(process.execPath, [weftMain, 'status', runId, '--runtime', 'local', '--json'], { env })).stdout);
    assert.equal(status.state, 'COMPLETED');
    const logs = (await execFileAsync(process.execPath, [weftMain, 'logs', runId, '--runtime', 'local'], { env })).stdout;
    assert.match(logs, /\[job\/0\] probe batch job\/0 .* args=batch,from-cli/);
    assert.match(logs, /\[job\/1\] batch done/);
    const list = (await execFileAsync(process.execPath, [weftMain, 'list', '--runtime', 'local', '--json'], { env })).stdout;
    assert.ok(list.includes(runId));
  });
});

describe('the local runtime in host-process mode', () => {
  let probe: ProbeImage;
  let stateDir: string;
  before(async () => {
    probe = await buildProbeImage();
    stateDir = await tempDir('weft-local-host-');
  });
  after(async () => {
    await probe?.remove();
    if (stateDir) await fs.rm(stateDir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 }); // supervisors may still be finishing
  });

  test("runs the image's program with the host JVM from the unpacked layers, and says so", { timeout: 120_000 }, async () => {
    const runner = await createRunner({ runtime: 'local', stateDir, mode: 'host' });
    try {
      const c = await runner.prepare(parseAppSpec({ name: 'lh-batch', runnables: [{ name: 'job', kind: 'batch', image: probe.reference, args: ['batch'] }] })).start();
      const end = await c.awaitTerminated(60_000);
      assert.equal(end.state, 'COMPLETED');
      const host = JSON.parse(await fs.readFile(path.join(stateDir, 'runs', c.runId, 'instances', 'job-0', 'host-process.json'), 'utf8'));
      assert.match(host.note, /host-process mode/);
      assert.ok(host.argv.some((a: string) => a.includes(path.join(stateDir, 'images', 'unpacked'))), `/app rewritten into the rootfs: ${host.argv.join(' ')}`);
      assert.ok(!host.argv.includes('/opt/java/bin/java'), 'the host JVM replaces the image one');
      assert.ok((await logLines(c)).includes('[job/0] batch done'));
    } finally {
      await runner.close();
    }
  });

  test('a repeated run id is never reused: the second submission gets a new id and both runs keep their own state', { timeout: 120_000 }, async () => {
    const dir = path.join(stateDir, 'repeat');
    const runtime = await createLocalRuntime({ stateDir: dir, mode: 'host' });
    // A stopped clock and a random source that repeats its first draw once.
    const draws = [Uint8Array.of(5, 5, 5, 5, 5), Uint8Array.of(5, 5, 5, 5, 5), Uint8Array.of(6, 6, 6, 6, 6)];
    const made: string[] = [];
    const generate = createRunIdGenerator({ now: () => 1_764_000_000_000, randomBytes: () => draws.shift()! });
    const runner = new Runner(runtime, { newRunId: (app) => (made.push(generate(app)), made[made.length - 1]) });
    try {
      const job = (arg: string) => parseAppSpec({ name: 'lh-repeat', runnables: [{ name: 'job', kind: 'batch', image: probe.reference, args: ['batch', arg] }] });
      const first = await runner.prepare(job('first')).start();
      const second = await runner.prepare(job('second')).start();
      assert.deepEqual(made, [first.runId, first.runId, second.runId], 'the second submission met the first id, then drew a new one');
      assert.notEqual(second.runId, first.runId);
      for (const [c, arg] of [
        [first, 'first'],
        [second, 'second'],
      ] as const) {
        assert.equal((await c.awaitTerminated(60_000)).state, 'COMPLETED');
        const record = JSON.parse(await fs.readFile(path.join(dir, 'runs', c.runId, 'run.json'), 'utf8'));
        assert.equal(record.runId, c.runId);
        assert.deepEqual(record.spec.runnables[0].args, ['batch', arg], `run ${c.runId} kept its own record`);
        assert.ok((await logLines(c)).some((l) => l.includes(`args=batch,${arg}`)), `run ${c.runId} ran its own program`);
      }
      // The backend itself refuses a taken id before writing anything.
      const before = await fs.readFile(path.join(dir, 'runs', first.runId, 'run.json'), 'utf8');
      await assert.rejects(runtime.submit({ runId: first.runId, spec: job('third'), files: [] }), (e: unknown) => e instanceof RunIdTakenError && e.runId === first.runId);
      assert.equal(await fs.readFile(path.join(dir, 'runs', first.runId, 'run.json'), 'utf8'), before);
    } finally {
      await runner.close();
    }
  });
});
