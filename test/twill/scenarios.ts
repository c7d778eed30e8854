// The Twill scenarios, written once against the Twill-style API and run on
// every runtime (local runc, local host-process, Kubernetes). A target only
// says how to start (image, extras for a failing batch) and how to check what
// can only be seen on that runtime (a program's output locally; pod
// annotations and volumes on Kubernetes, where kwok simulates containers).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { AppSpecInput, Controller, Preparer, RunStatus, TwillRunner } from '../../src/runtime/index.js';
import { isTerminal, parseAppSpec } from '../../src/runtime/index.js';
import { waitForRunStatus } from '../support/runs.js';
import { waitFor as waitUntil } from '../support/wait.js';

export interface TwillTarget {
  runner: TwillRunner;
  /** The probe image reference for this runtime. */
  image: string;
  /** The port the service announces (distinct per target: test files run in parallel on one host). */
  servicePort: number;
  /** True when programs really run (their output can be checked). */
  live: boolean;
  /** True when the runtime must measure usage (cpu, memory) in the resource report. */
  usageMeasured: boolean;
  /** Makes a batch runnable fail with exit code 3 and a message. */
  failBatch(runnable: AppSpecInput['runnables'][number]): void;
  /** Checks that every live instance received the command (program output locally, pod annotation on Kubernetes). */
  checkCommandReceived(controller: Controller, command: string, payload: string): Promise<void>;
  /** Checks the endpoints discovery returned are the run's instances. */
  checkEndpoints(controller: Controller, endpoints: Array<{ host: string; port: number }>, instances: number): Promise<void>;
  /** Kubernetes extras added to every app spec (e.g. a node selector and tolerations for a real node). */
  appKubernetes?: AppSpecInput['kubernetes'];
  /** Lines of a run's logs (live targets). */
  close(): Promise<void>;
}

// Safety nets only (no timing is asserted): a loaded machine can be slow to schedule and simulate pods.
const TIMEOUT = 300_000;

/** Polls the backend until the run's status satisfies `predicate`. */
export function waitFor(runner: TwillRunner, controller: Controller, what: string, predicate: (s: RunStatus) => boolean, timeoutMs = 180_000): Promise<RunStatus> {
  return waitForRunStatus(runner.runtime, controller.runId, what, predicate, { timeoutMs, fallback: () => controller.status });
}

async function waitForLine(lines: string[], pattern: RegExp, timeoutMs = 120_000): Promise<void> {
  await waitUntil(`${pattern} in the logs`, () => lines.some((l) => pattern.test(l)), timeoutMs).catch((error: Error) => {
    throw new Error(`${error.message}:\n${lines.join('\n')}`);
  });
}

function serviceSpec(target: TwillTarget, app: string, instances: number): AppSpecInput {
  return {
    name: app,
    stopTimeout: '20s',
    runnables: [
      {
        name: 'web',
        kind: 'service',
        image: target.image,
        instances,
        args: ['service'],
        ports: [{ name: 'http', port: target.servicePort }],
        // Instances count as running (and are discovered) once they accept connections.
        readiness: { port: 'http', period: '1s' },
        resources: { cpu: '250m', memory: '128Mi' },
        env: { GREETING: 'hi' },
      },
    ],
  };
}

/** Registers the scenario suite for one runtime; `makeTarget` runs in before(). */
export function twillScenarios(name: string, makeTarget: () => Promise<TwillTarget>): void {
  describe(`Twill scenarios on ${name}`, () => {
    let target: TwillTarget;
    const started: Controller[] = [];

    const start = async (preparer: Preparer): Promise<Controller> => {
      const c = await preparer.start();
      started.push(c); // killed in after() if a test fails half-way
      return c;
    };
    const prep = (input: AppSpecInput): Preparer => target.runner.prepare(parseAppSpec(target.appKubernetes ? { ...input, kubernetes: target.appKubernetes } : input));
    /** Follows a run's logs from now until the run ends (pods' logs go with them on Kubernetes). */
    const collectLogs = (c: Controller) => {
      const lines: string[] = [];
      const done = (async () => {
        for await (const l of c.logs({ follow: true })) lines.push(`[${l.runnable}/${l.instance}] ${l.line}`);
      })();
      return { lines, done };
    };
    const wait = (c: Controller, what: string, predicate: (s: RunStatus) => boolean) => waitFor(target.runner, c, what, predicate);

    before(async () => {
      target = await makeTarget();
    });

    after(async () => {
      for (const c of started) {
        if (!isTerminal((await target.runner.runtime.status(c.runId).catch(() => undefined))?.state ?? 'KILLED')) await c.kill().catch(() => undefined);
      }
      for (const c of started) await c.awaitTerminated(30_000).catch(() => undefined);
      await target?.close();
    });

    test('a batch completes: every instance exits 0 and the run is COMPLETED', { timeout: TIMEOUT }, async (t) => {
      const c = await start(prep({ name: 'tw-batch', runnables: [{ name: 'job', kind: 'batch', image: target.image, instances: 2, args: ['batch'] }] })
        .withApplicationArguments(['extra'])
        .withEnv({ GREETING: 'hello' })
        .withFiles([{ name: 'greeting.txt', data: 'hello from a shipped file' }]));
      const end = await c.awaitTerminated(TIMEOUT - 10_000);
      assert.equal(end.state, 'COMPLETED', `run ended ${end.state}: ${end.message}`);
      const job = end.runnables.find((r) => r.name === 'job')!;
      assert.equal(job.instances.length, 2);
      for (const i of job.instances) assert.equal(i.state, 'COMPLETED', `instance ${i.id}: ${i.state} ${i.message ?? ''}`);
      if (!target.live) t.diagnostic(`program output (run id, env, args, files) NOT checked on ${name}: no program runs there (simulated containers)`);
      if (target.live) {
        const lines: string[] = [];
        for await (const l of c.logs()) lines.push(`[${l.runnable}/${l.instance}] ${l.line}`);
        for (const id of ['0', '1']) {
          assert.ok(
            lines.includes(`[job/${id}] probe batch job/${id} run=${c.runId} app=tw-batch count=2 greeting=hello args=batch,extra`),
            `the program saw its run id, instance, count, env and args:\n${lines.join('\n')}`,
          );
          assert.ok(lines.includes(`[job/${id}] file greeting.txt: hello from a shipped file`), `the program read the shipped file:\n${lines.join('\n')}`);
        }
      }
    });

    test('a batch fails with a reason: the run is FAILED with the exit code and a message', { timeout: TIMEOUT }, async (t) => {
      const runnable = { name: 'job', kind: 'batch' as const, image: target.image, instances: 1, args: ['batch'] };
      target.failBatch(runnable);
      const c = await start(prep({ name: 'tw-fail', runnables: [runnable] }));
      const end = await c.awaitTerminated(TIMEOUT - 10_000);
      assert.equal(end.state, 'FAILED');
      assert.ok(end.message && end.message.length > 0, 'a failed run says why');
      const instance = end.runnables[0].instances[0];
      assert.ok(end.exitCode === 3 || instance?.exitCode === 3, `exit code 3 reported: run ${end.exitCode}, instance ${instance?.exitCode}; ${end.message}`);
      if (target.live) assert.match(end.message!, /probe failing on purpose with code 3/);
      else t.diagnostic(`the program's own last words NOT checked in the message on ${name}: simulated containers`);
    });

    test('a service with several instances is scaled up and down', { timeout: TIMEOUT }, async () => {
      const c = await start(prep(serviceSpec(target, 'tw-scale', 2)));
      await c.onRunning();
      await wait(c, '2 running instances', (s) => s.runnables[0].running === 2);
      await c.changeInstances('web', 3);
      const up = await wait(c, '3 running instances', (s) => s.runnables[0].running === 3 && s.runnables[0].desired === 3);
      assert.equal(up.state, 'RUNNING');
      await c.changeInstances('web', 1);
      const down = await wait(c, 'a single instance', (s) => s.runnables[0].instances.length === 1 && s.runnables[0].running === 1);
      assert.equal(down.runnables[0].desired, 1);
      assert.equal(down.state, 'RUNNING');
      await c.kill();
      assert.equal((await c.awaitTerminated(180_000)).state, 'KILLED');
    });

    test('stop is graceful (STOPPING, then KILLED) and kill is immediate', { timeout: TIMEOUT }, async (t) => {
      const graceful = await start(prep(serviceSpec(target, 'tw-stop', 1)));
      const killed = await start(prep(serviceSpec(target, 'tw-kill', 1)));
      await Promise.all([graceful.onRunning(), killed.onRunning()]);
      await Promise.all([wait(graceful, 'running', (s) => s.runnables[0].running === 1), wait(killed, 'running', (s) => s.runnables[0].running === 1)]);
      const states: string[] = [];
      graceful.onChange((s) => states.push(s.state));
      const gracefulLogs = target.live ? collectLogs(graceful) : undefined;
      const killedLogs = target.live ? collectLogs(killed) : undefined;
      // The programs print "listening" once their JVM runs: stop them only then.
      if (gracefulLogs && killedLogs) {
        await waitForLine(gracefulLogs.lines, /listening on/);
        await waitForLine(killedLogs.lines, /listening on/);
      }
      await graceful.terminate(15_000);
      await killed.kill();
      const [g, k] = await Promise.all([graceful.awaitTerminated(180_000), killed.awaitTerminated(180_000)]);
      assert.equal(g.state, 'KILLED');
      assert.equal(k.state, 'KILLED');
      assert.ok(!states.includes('COMPLETED') && !states.includes('FAILED'), `states seen: ${states.join(' ')}`);
      if (!gracefulLogs || !killedLogs) {
        t.diagnostic(`shutdown hooks NOT checked on ${name}: no program runs there (simulated containers)`);
        return;
      }
      await Promise.race([Promise.all([gracefulLogs.done, killedLogs.done]), new Promise((r) => setTimeout(r, 30_000))]);
      // The probe's shutdown hook takes 4 s: a stop lets it finish, a kill cuts it short (runc
      // sends SIGKILL at once; Kubernetes sends SIGTERM and SIGKILL 2 s later).
      const finished = (lines: string[]) => lines.some((l) => l.includes('shutdown hook: finished'));
      assert.ok(finished(gracefulLogs.lines), `a stop lets the JVM's shutdown hooks finish:\n${gracefulLogs.lines.join('\n')}`);
      assert.ok(!finished(killedLogs.lines), `a kill does not let the JVM's shutdown hooks finish:\n${killedLogs.lines.join('\n')}`);
    });

    test('sendCommand reaches every instance of the program', { timeout: TIMEOUT }, async () => {
      const c = await start(prep(serviceSpec(target, 'tw-command', 2)));
      await c.onRunning();
      await wait(c, '2 running instances', (s) => s.runnables[0].running === 2);
      await c.sendCommand('reload', { runnable: 'web', payload: 'config-v2' });
      await target.checkCommandReceived(c, 'reload', 'config-v2');
      await c.kill();
    });

    test('the resource report lists every instance with its resources and state', { timeout: TIMEOUT }, async (t) => {
      const c = await start(prep(serviceSpec(target, 'tw-report', 2)));
      await c.onRunning();
      await wait(c, '2 running instances', (s) => s.runnables[0].running === 2);
      const report = await c.getResourceReport();
      assert.equal(report.runId, c.runId);
      assert.equal(report.app, 'tw-report');
      assert.equal(report.instances.length, 2);
      for (const entry of report.instances) {
        assert.equal(entry.runnable, 'web');
        assert.equal(entry.state, 'RUNNING');
        assert.equal(entry.cpu, '250m');
        assert.equal(entry.memory, '128Mi');
        assert.ok(entry.host, 'the host or node is reported');
        if (target.live) assert.ok(entry.containerId, 'a container id');
        if (report.usageUnavailable || !target.live) continue;
        assert.ok((entry.usage?.memoryBytes ?? 0) > 1024 * 1024, `measured memory: ${JSON.stringify(entry.usage)}`);
        assert.ok((entry.usage?.cpuMillicores ?? -1) >= 0, 'measured cpu');
      }
      if (!target.live) t.diagnostic(`container ids and usage NOT checked on ${name}: simulated containers have neither`);
      else if (report.usageUnavailable) {
        // Checked less here than where usage is measured: say so, and that the report says why.
        t.diagnostic(`usage NOT checked on ${name}: the report says "${report.usageUnavailable}"`);
        assert.ok(!target.usageMeasured, `this runtime should measure usage: ${report.usageUnavailable}`);
      }
      assert.deepEqual(new Set(report.instances.map((e) => e.instance)).size, 2, 'distinct instance ids');
      await c.kill();
    });

    test('restartInstances restarts one instance while the others keep running', { timeout: TIMEOUT }, async () => {
      const c = await start(prep(serviceSpec(target, 'tw-restart', 2)));
      await c.onRunning();
      const before = await wait(c, '2 running instances', (s) => s.runnables[0].running === 2);
      const [first, second] = before.runnables[0].instances;
      const states: string[] = [];
      c.onChange((s) => states.push(s.state));
      await c.restartInstances('web', [first.id]);
      const after = await wait(c, 'the restarted instance running again', (s) => {
        const list = s.runnables[0].instances;
        const again = list.find((i) => i.id === first.id || (i.name !== first.name && i.name !== second.name));
        return s.runnables[0].running === 2 && !!again && (again.name !== first.name || again.startedAt !== first.startedAt || (again.restarts ?? 0) > (first.restarts ?? 0));
      });
      const kept = after.runnables[0].instances.find((i) => i.id === second.id);
      assert.ok(kept, `instance ${second.id} is still there: ${JSON.stringify(after.runnables[0].instances)}`);
      assert.equal(kept.name, second.name, 'the other instance is the same process/pod');
      assert.equal(kept.startedAt, second.startedAt, 'the other instance was not restarted');
      assert.ok(!states.some((s) => isTerminal(s as RunStatus['state'])), `the run stayed live: ${states.join(' ')}`);
      assert.equal(after.state, 'RUNNING');
      await c.kill();
    });

    test('discovery finds the endpoints of the service the run announced', { timeout: TIMEOUT }, async () => {
      const c = await start(prep(serviceSpec(target, 'tw-discover', 2)));
      await c.onRunning();
      await wait(c, '2 running instances', (s) => s.runnables[0].running === 2);
      const endpoints = await c.discoverService('http');
      assert.ok(endpoints.length > 0, 'at least one endpoint');
      for (const e of endpoints) {
        assert.equal(e.name, 'http');
        assert.ok(e.port > 0);
      }
      await target.checkEndpoints(c, endpoints, 2);
      // lookup finds the live run by app name.
      const found = await target.runner.lookup('tw-discover');
      assert.ok(found.some((x) => x.runId === c.runId), 'lookup(app) finds the run');
      found.forEach((x) => x.release());
      await c.kill();
    });
  });
}
