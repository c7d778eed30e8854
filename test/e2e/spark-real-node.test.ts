// Spark programs on the real Kubernetes node (scripts/k8s-testenv up --real-node --in-cluster): the
// Spark example (examples/spark, built by the set-up from Maven Central jars) as runnables of kind
// spark. weft runs the driver in a pod of the run, the driver asks the API server for executor pods
// (in-cluster networking: kubernetes.default.svc), the executors run its tasks; weft reports the
// driver and every executor, their logs, the driver's end, and removes everything with the run.
// And the same program in local[2] on the local runtime.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CoreV1Api, DiscoveryV1Api, KubeConfig, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { createRunner, parseAppSpec, type AppSpecInput, type RunStatus } from '../../src/runtime/index.js';
import { nodeRegistry, onRealNode } from '../support/real-node.js';
import { mustRun, mustWeft, repoRoot, weft } from './harness.js';

const TIMEOUT = 900_000;
const example = path.join(repoRoot, 'examples', 'spark');
const examplesJar = path.join(example, 'build', 'spark-examples.jar');
const sparkJars = path.join(example, 'build', 'libs');
const wordsFile = path.join(example, 'words.txt');
// The driver starts its first job once both executors are registered (the default waits 30 s, which a
// busy 2-CPU node can miss, and then one executor may do all the work).
const bothExecutors = { 'spark.scheduler.minRegisteredResourcesRatio': '1.0', 'spark.scheduler.maxRegisteredResourcesWaitingTime': '600s' };

/** What WordCount must print for a text: "word<TAB>count", most frequent first, then by word. */
function expectedCounts(text: string): string[] {
  const counts = new Map<string, number>();
  for (const word of text.toLowerCase().split(/[^\p{L}\p{N}']+/u)) if (word) counts.set(word, (counts.get(word) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map(([w, n]) => `${w}\t${n}`);
}

describe('Spark programs on the real node', () => {
  let work: string;
  let namespace: string;
  let kc: KubeConfig;
  let core: CoreV1Api;
  let image: string;

  before(async () => {
    const registry = nodeRegistry();
    for (const f of [examplesJar, sparkJars]) {
      if (!existsSync(f)) throw new Error(`${f} is missing: run scripts/setup --test (or examples/spark/build.sh), which fetches the Spark jars and builds the example`);
    }
    kc = new KubeConfig();
    kc.loadFromFile(process.env.KUBECONFIG!);
    core = kc.makeApiClient(CoreV1Api);
    // A driver reaches the API server through the kubernetes Service and cluster DNS: without
    // in-cluster networking it could not ask for a single executor.
    const slices = await kc.makeApiClient(DiscoveryV1Api).listNamespacedEndpointSlice({ namespace: 'default', labelSelector: 'kubernetes.io/service-name=kubernetes' });
    const dns = await core.readNamespacedService({ name: 'kube-dns', namespace: 'kube-system' }).catch(() => undefined);
    if (!slices.items.some((s) => s.endpoints?.length) || !dns) {
      throw new Error(
        'pods on the real node cannot reach the API server: the kubernetes Service has no endpoints or there is no cluster DNS (kube-system/kube-dns). Start the test environment with in-cluster networking: scripts/k8s-testenv up --real-node --in-cluster (or WEFT_IN_CLUSTER=1)',
      );
    }
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-spark-'));
    namespace = `spark-${randomBytes(3).toString('hex')}`;
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    // weft's Spark image: the example, the Spark jars in their own layer, weft's launcher as entry point.
    const built = await mustWeft(['build', examplesJar, '--lib', sparkJars, '--spark', '--output', `docker://${registry}/spark/examples:${randomBytes(4).toString('hex')}`, '--json'], { timeoutMs: 15 * 60_000 });
    image = (JSON.parse(built.stdout) as { output: string }).output;
  });

  after(async () => {
    if (namespace) await core.deleteNamespace({ name: namespace }).catch(() => undefined);
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  const kubeFlags = () => ['--runtime', 'kubernetes', '--namespace', namespace];

  function sparkApp(name: string, mainClass: string, args: string[], extra: Partial<AppSpecInput['runnables'][number]> = {}): AppSpecInput {
    return {
      name,
      startTimeout: '10m',
      kubernetes: onRealNode,
      runnables: [
        {
          name: 'main',
          kind: 'spark',
          image,
          args,
          resources: { cpu: '250m', memory: '1Gi' },
          spark: { mainClass, executors: { instances: 2, resources: { cpu: '250m', memory: '768Mi' } }, conf: bothExecutors },
          ...extra,
        },
      ],
    };
  }

  async function writeSpec(spec: AppSpecInput): Promise<string> {
    const file = path.join(work, `${spec.name}-${randomBytes(3).toString('hex')}.yaml`);
    await fs.writeFile(file, stringify(spec));
    return file;
  }

  /** `weft run --wait --json`: the final status (the exit code says COMPLETED or not). */
  async function runToEnd(spec: AppSpecInput, files: string[] = []): Promise<RunStatus> {
    const run = await weft(['run', await writeSpec(spec), ...kubeFlags(), ...files.flatMap((f) => ['--file', f]), '--wait', '--json'], { timeoutMs: TIMEOUT - 60_000 });
    const final = JSON.parse(run.stdout) as RunStatus;
    assert.equal(run.code, final.state === 'COMPLETED' ? 0 : 1, `weft run --wait exits 0 only for COMPLETED:\n${run.stderr}`);
    return final;
  }

  /** Everything of a run in the namespace: pods, config maps, service accounts, roles and bindings. */
  async function leftovers(runId: string): Promise<string[]> {
    const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
    const selector = { namespace, labelSelector: `weft.io/run-id=${runId}` };
    const [pods, cms, sas, roles, bindings] = await Promise.all([
      core.listNamespacedPod(selector),
      core.listNamespacedConfigMap(selector),
      core.listNamespacedServiceAccount(selector),
      rbac.listNamespacedRole(selector),
      rbac.listNamespacedRoleBinding(selector),
    ]);
    return [...pods.items, ...cms.items, ...sas.items, ...roles.items, ...bindings.items].map((o) => `${o.kind ?? ''}${o.metadata?.name}`);
  }

  async function waitGone(runId: string): Promise<void> {
    let left: string[] = [];
    for (let i = 0; i < 120; i++) {
      left = await leftovers(runId);
      if (left.length === 0) return;
      await new Promise((r) => setTimeout(r, 1000));
    }
    assert.fail(`objects of run ${runId} are left 2 minutes after it was deleted: ${left.join(', ')}`);
  }

  /** The Spark runnable's status once none of its instances is still starting or running (up to 2 minutes). */
  async function runnableWhenExecutorsEnded(runId: string): Promise<RunStatus['runnables'][number]> {
    let last: RunStatus['runnables'][number] | undefined;
    for (let i = 0; i < 120; i++) {
      const status = JSON.parse((await weft(['status', runId, ...kubeFlags(), '--json'])).stdout) as RunStatus;
      last = status.runnables[0]!;
      if (last.instances.every((inst) => !['PENDING', 'STARTING', 'RUNNING', 'STOPPING'].includes(inst.state))) return last;
      await new Promise((r) => setTimeout(r, 1000));
    }
    assert.fail(`the executors of ${runId} had not ended 2 minutes after the driver: ${JSON.stringify(last?.instances)}`);
  }

  async function logsOf(runId: string): Promise<string[]> {
    const logs = await weft(['logs', runId, ...kubeFlags()]);
    assert.equal(logs.code, 0, logs.stderr);
    return logs.stdout.split('\n');
  }

  test('SparkPi with 2 executors: both run tasks, the run COMPLETES, weft logs shows the driver and every executor, nothing is left once deleted', { timeout: TIMEOUT }, async () => {
    // Built from the build: section, as a weft.yaml of a Spark program would say.
    const spec = sparkApp('spark-pi', 'com.example.spark.SparkPi', ['8']);
    const { image: _prebuilt, ...runnable } = spec.runnables[0];
    spec.runnables[0] = { ...runnable, build: { jar: examplesJar, libs: [sparkJars], target: `docker://${nodeRegistry()}/spark/pi:${randomBytes(3).toString('hex')}` } };
    const final = await runToEnd(spec);
    assert.equal(final.state, 'COMPLETED', final.message);
    assert.equal(final.runnables[0]!.kind, 'spark');
    // The run ends with its driver; the executors end on their own a moment later (Spark tells them to).
    const r = await runnableWhenExecutorsEnded(final.runId);
    assert.deepEqual(r.instances.map((i) => `${i.id}:${i.state}`).sort(), ['driver:COMPLETED', 'exec-1:COMPLETED', 'exec-2:COMPLETED'], JSON.stringify(r.instances));
    const realNodes = (await core.listNode({ labelSelector: 'weft.io/real-node=true' })).items.map((n) => n.metadata?.name);
    for (const i of r.instances) assert.ok(realNodes.includes(i.host), `${i.id} ran on the real node, not ${i.host}`);

    const lines = await logsOf(final.runId);
    const driver = lines.filter((l) => l.startsWith('[main/driver] '));
    assert.ok(driver.some((l) => /Pi is roughly 3\.1\d*/.test(l)), `the driver printed its estimate:\n${driver.slice(-30).join('\n')}`);
    assert.ok(driver.includes('[main/driver] tasks ran on executors [1, 2]'), `the tasks ran on both executors:\n${driver.filter((l) => l.includes('tasks ran')).join('\n')}`);
    for (const id of ['exec-1', 'exec-2']) {
      const own = lines.filter((l) => l.startsWith(`[main/${id}] `));
      assert.ok(own.some((l) => /Executor: Running task \d+\.\d+ in stage/.test(l)), `${id}'s log shows it ran tasks:\n${own.slice(-20).join('\n')}`);
    }

    const stopped = await weft(['stop', final.runId, ...kubeFlags()]);
    assert.equal(stopped.code, 0, stopped.stderr);
    await waitGone(final.runId);
  });

  test('word count is right on the real node, and a driver that throws ends FAILED with its exception', { timeout: TIMEOUT }, async () => {
    // Both at once: the node has room for two drivers and their executors, and the suite stays short.
    const [counted, thrown] = await Promise.all([
      runToEnd(sparkApp('spark-wc', 'com.example.spark.WordCount', ['/etc/weft/files/words.txt', '2']), [wordsFile]),
      runToEnd(sparkApp('spark-throws', 'com.example.spark.WordCount', ['/etc/weft/files/missing.txt'])),
    ]);
    assert.equal(counted.state, 'COMPLETED', counted.message);
    const printed = (await logsOf(counted.runId)).filter((l) => /^\[main\/driver\] [^\s]+\t\d+$/.test(l)).map((l) => l.slice('[main/driver] '.length));
    assert.deepEqual(printed, expectedCounts(await fs.readFile(wordsFile, 'utf8')));

    assert.equal(thrown.state, 'FAILED');
    assert.equal(thrown.exitCode, 1);
    assert.match(thrown.message ?? '', /instance main\/driver failed: exit code 1/);
    assert.match(thrown.message ?? '', /threw java\.nio\.file\.NoSuchFileException: \/etc\/weft\/files\/missing\.txt/, 'the exception is in the message');
    assert.match(thrown.message ?? '', /at com\.example\.spark\.WordCount\.main\(WordCount\.java:\d+\)/, 'so is where the program threw it');
  });

  test('weft stop during a job removes the driver and every executor', { timeout: TIMEOUT }, async () => {
    // Slices enough to keep two executors busy for minutes.
    const started = await weft(['run', await writeSpec(sparkApp('spark-stop', 'com.example.spark.SparkPi', ['100000'])), ...kubeFlags(), '--json']);
    assert.equal(started.code, 0, started.stderr);
    const { runId } = JSON.parse(started.stdout) as { runId: string };
    let status: RunStatus | undefined;
    for (let i = 0; i < 600; i++) {
      const s = await weft(['status', runId, ...kubeFlags(), '--json']);
      status = JSON.parse(s.stdout) as RunStatus;
      const running = status.runnables[0]?.instances.filter((x) => x.state === 'RUNNING').map((x) => x.id) ?? [];
      if (['driver', 'exec-1', 'exec-2'].every((id) => running.includes(id))) break;
      assert.ok(status.state === 'PENDING' || status.state === 'STARTING' || status.state === 'RUNNING', `the run ended before it could be stopped: ${JSON.stringify(status)}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
    assert.equal(status?.state, 'RUNNING', JSON.stringify(status));
    const pods = (await core.listNamespacedPod({ namespace, labelSelector: `weft.io/run-id=${runId}` })).items.map((p) => p.metadata?.name);
    assert.equal(pods.length, 3, `the driver and two executors run: ${pods.join(', ')}`);
    const stopped = await weft(['stop', runId, ...kubeFlags()]);
    assert.equal(stopped.code, 0, stopped.stderr);
    await waitGone(runId);
  });

  test('dynamic allocation (min 1, max 2, shuffle tracking): the run COMPLETES and the executors alive at once stay within the bounds', { timeout: TIMEOUT }, async (t) => {
    // Enough one-core tasks that one executor leaves them backlogged, so Spark asks for more.
    const spec = sparkApp('spark-dyn', 'com.example.spark.SparkPi', ['400']);
    spec.runnables[0].spark = { mainClass: 'com.example.spark.SparkPi', executors: { min: 1, max: 2, resources: { cpu: '250m', memory: '768Mi' } } };
    const started = await weft(['run', await writeSpec(spec), ...kubeFlags(), '--json']);
    assert.equal(started.code, 0, started.stderr);
    const { runId } = JSON.parse(started.stdout) as { runId: string };
    try {
      // Executor pods that are asked for or running (not ended, not being deleted), sampled every second.
      let peak = 0;
      const seen = new Set<string>();
      let status: RunStatus | undefined;
      for (let i = 0; i < 840; i++) {
        const pods = (await core.listNamespacedPod({ namespace, labelSelector: `weft.io/run-id=${runId},spark-role=executor` })).items;
        for (const p of pods) seen.add(p.metadata!.name!);
        const alive = pods.filter((p) => !p.metadata?.deletionTimestamp && (p.status?.phase === 'Pending' || p.status?.phase === 'Running'));
        peak = Math.max(peak, alive.length);
        status = JSON.parse((await weft(['status', runId, ...kubeFlags(), '--json'])).stdout) as RunStatus;
        if (status.state === 'COMPLETED' || status.state === 'FAILED') break;
        await new Promise((r) => setTimeout(r, 1000));
      }
      assert.equal(status?.state, 'COMPLETED', JSON.stringify(status));
      assert.ok(peak >= 1 && peak <= 2, `between 1 and 2 executors alive at once, not ${peak} (executor pods: ${[...seen].join(', ')})`);
      const driver = (await logsOf(runId)).filter((l) => l.startsWith('[main/driver] '));
      assert.ok(driver.some((l) => /Pi is roughly 3\.1\d*/.test(l)), `the driver printed its estimate:\n${driver.slice(-30).join('\n')}`);
      // Spark's allocation manager says what it asks for: never a total above the maximum.
      const desired = driver.flatMap((l) => [...l.matchAll(/new desired total will be (\d+)/g)].map((m) => Number(m[1])));
      assert.ok(desired.every((n) => n >= 1 && n <= 2), `desired executor totals within 1..2: ${desired.join(', ')}`);
      t.diagnostic(`executors alive at once: at most ${peak}; executor pods: ${seen.size}; totals Spark asked for: ${desired.join(', ') || 'none'}`);
      const realNodes = (await core.listNode({ labelSelector: 'weft.io/real-node=true' })).items.map((n) => n.metadata?.name);
      const pods = (await core.listNamespacedPod({ namespace, labelSelector: `weft.io/run-id=${runId},spark-role=executor` })).items;
      for (const p of pods) assert.ok(realNodes.includes(p.spec?.nodeName), `${p.metadata?.name} ran on the real node, not ${p.spec?.nodeName}`);
    } finally {
      await weft(['kill', runId, ...kubeFlags()]);
    }
  });

  test('an executor over its memory limit is reported OOMKilled, with its limit, while the run goes on', { timeout: TIMEOUT }, async () => {
    // A program whose tasks fill memory (test/e2e/fixtures/spark), with a heap the executor's 768Mi cannot hold.
    const src = path.join(repoRoot, 'test', 'e2e', 'fixtures', 'spark');
    const classes = path.join(work, 'oom-classes');
    await mustRun('javac', ['--release', '17', '-nowarn', '-cp', `${sparkJars}/*`, '-d', classes, path.join(src, 'com', 'example', 'oom', 'ExecutorOom.java')]);
    await mustRun('jar', ['--create', '--file', path.join(work, 'oom.jar'), '-C', classes, '.']);
    const built = await mustWeft(['build', path.join(work, 'oom.jar'), '--lib', sparkJars, '--spark', '--output', `docker://${nodeRegistry()}/spark/oom:${randomBytes(3).toString('hex')}`, '--json']);
    const spec = sparkApp('spark-oom', 'com.example.oom.ExecutorOom', [], { image: (JSON.parse(built.stdout) as { output: string }).output });
    spec.runnables[0].spark!.conf = { ...bothExecutors, 'spark.executorEnv.JAVA_TOOL_OPTIONS': '-Xmx2g' };
    const started = await weft(['run', await writeSpec(spec), ...kubeFlags(), '--json']);
    assert.equal(started.code, 0, started.stderr);
    const { runId } = JSON.parse(started.stdout) as { runId: string };
    try {
      let status: RunStatus | undefined;
      let killed: RunStatus['runnables'][number]['instances'][number] | undefined;
      for (let i = 0; i < 600 && !killed; i++) {
        status = JSON.parse((await weft(['status', runId, ...kubeFlags(), '--json'])).stdout) as RunStatus;
        killed = status.runnables[0]?.instances.find((x) => x.id.startsWith('exec-') && x.reason === 'OOMKilled');
        if (!killed) await new Promise((r) => setTimeout(r, 1000));
      }
      assert.ok(killed, `no executor was reported OOMKilled: ${JSON.stringify(status)}`);
      assert.equal(killed.state, 'FAILED');
      assert.equal(killed.exitCode, 137);
      assert.match(killed.message ?? '', /OOMKilled \(exit code 137\).*limit of 768Mi/, 'the message names the limit');
      if (status!.state === 'RUNNING') assert.match(status!.message ?? '', /instance main\/exec-\d+: OOMKilled/, 'the run names the executor while it goes on');
    } finally {
      await weft(['kill', runId, ...kubeFlags()]);
    }
  });
});

describe('the Spark example in local[2] on the local runtime', () => {
  test('word count gives the right counts', { timeout: TIMEOUT }, async () => {
    for (const f of [examplesJar, sparkJars]) if (!existsSync(f)) throw new Error(`${f} is missing: run scripts/setup --test (or examples/spark/build.sh)`);
    const state = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-spark-local-'));
    const runner = await createRunner({ runtime: 'local', stateDir: state });
    try {
      const target = `docker://${nodeRegistry()}/spark/local:${randomBytes(3).toString('hex')}`;
      const spec = parseAppSpec({
        name: 'spark-wc-local',
        startTimeout: '10m',
        runnables: [
          {
            name: 'wc',
            kind: 'spark',
            build: { jar: examplesJar, libs: [sparkJars], target },
            args: ['/etc/weft/files/words.txt', '2'],
            resources: { cpu: '1', memory: '1Gi' },
            spark: { mainClass: 'com.example.spark.WordCount', executors: { instances: 2 } },
          },
        ],
      });
      const c = await runner.prepare(spec).withFiles([wordsFile]).start();
      const end = await c.awaitTerminated(TIMEOUT - 60_000);
      const lines: string[] = [];
      for await (const l of c.logs()) lines.push(`[${l.runnable}/${l.instance}] ${l.line}`);
      assert.equal(end.state, 'COMPLETED', `${end.message}\n${lines.slice(-30).join('\n')}`);
      const printed = lines.filter((l) => /^\[wc\/driver\] [^\s]+\t\d+$/.test(l)).map((l) => l.slice('[wc/driver] '.length));
      assert.deepEqual(printed, expectedCounts(await fs.readFile(wordsFile, 'utf8')));
    } finally {
      await runner.close();
      await fs.rm(state, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
    }
  });
});
