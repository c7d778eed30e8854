// Spark runnables without a cluster: the spec (defaults, what is refused and why), the objects a
// run renders into (driver pod, service account and role, the executors' pod template and conf),
// the run state from a driver and its executors (the shared derivation), the local runtime's
// local[N] driver, and weft's launcher taking the driver args of `spark-submit --deploy-mode cluster`
// (a real JVM with the Spark jars, in local[2]).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { V1ConfigMap, V1ContainerStatus, V1Pod } from '@kubernetes/client-node';
import { parseAppSpecYaml, SpecError } from '../../src/runtime/index.js';
import { adopt, deriveRun, renderRun } from '../../src/runtime/kube/index.js';
import { slimPod, slimRoot } from '../../src/runtime/kube/tracker.js';
import { localProgram } from '../../src/runtime/local/runtime.js';
import { driverArgs, executorMemory, IN_CLUSTER_MASTER, SPARK_JVM_FLAGS, SPARK_LAUNCHER_MAIN, sparkLauncherJar } from '../../src/runtime/spark/index.js';
import { repoRoot, runCommand } from '../support/command.js';
import { sparkJrePreset } from '../../src/runtime/spark/image.js';

const yaml = `
name: pi
startTimeout: 5m
kubernetes:
  nodeSelector: { weft.io/real-node: "true" }
  tolerations: [{ key: weft.io/real-node, operator: Exists, effect: NoSchedule }]
  podLabels: { team: data }
runnables:
  - name: pi
    kind: spark
    image: registry.example/spark-examples@sha256:${'a'.repeat(64)}
    args: ["8"]
    spark:
      mainClass: com.example.spark.SparkPi
      executors: { instances: 2, resources: { cpu: 250m, memory: 768Mi } }
      conf: { spark.scheduler.minRegisteredResourcesRatio: "1.0" }
`;

test('spec: a Spark driver gets 1Gi and two executors of 1Gi unless told; its conf keys are its own', () => {
  const spec = parseAppSpecYaml(`
name: s
runnables:
  - { name: d, kind: spark, image: r/x:1, spark: { mainClass: a.B } }
`);
  const r = spec.runnables[0];
  assert.deepEqual(r.resources, { cpu: '500m', memory: '1Gi' });
  assert.equal(r.instances, 1);
  assert.equal(r.spark!.executors.instances, 2);
  assert.deepEqual(r.spark!.executors.resources, { cpu: '500m', memory: '1Gi' });
  // A plain runnable keeps its 256Mi default.
  assert.equal(parseAppSpecYaml('name: b\nrunnables: [{ name: b, kind: batch, image: r/x:1 }]').runnables[0].resources.memory, '256Mi');
});

test('spec: what a Spark runnable may not say, each with what to do instead', () => {
  const refused = (runnable: string, expected: RegExp) => {
    assert.throws(() => parseAppSpecYaml(`name: s\nrunnables:\n  - ${runnable}\n`), (e: unknown) => e instanceof SpecError && expected.test(e.message), runnable);
  };
  refused('{ name: d, kind: spark, image: r/x:1 }', /needs a spark: section with at least mainClass/);
  refused('{ name: d, kind: spark, image: r/x:1, spark: { mainClass: "not a class" } }', /fully qualified Java class name/);
  refused('{ name: d, kind: spark, image: r/x:1, instances: 2, spark: { mainClass: a.B } }', /one instance, its driver/);
  refused('{ name: d, kind: spark, image: r/x:1, resources: { memory: 512Mi }, spark: { mainClass: a.B } }', /driver needs at least 768Mi/);
  refused('{ name: d, kind: spark, image: r/x:1, spark: { mainClass: a.B, executors: { resources: { memory: 256Mi } } } }', /executor needs at least 768Mi/);
  refused('{ name: d, kind: spark, image: r/x:1, spark: { mainClass: a.B, executors: { instances: 2, min: 1, max: 3 } } }', /not both/);
  refused('{ name: d, kind: spark, image: r/x:1, spark: { mainClass: a.B, executors: { min: 1 } } }', /needs both min and max/);
  refused('{ name: d, kind: spark, image: r/x:1, spark: { mainClass: a.B, conf: { spark.master: "local[2]" } } }', /spark.master is set by weft/);
  refused('{ name: d, kind: spark, image: r/x:1, spark: { mainClass: a.B, conf: { spark.executor.instances: 3 } } }', /spark.executor.instances is set by weft from spark.executors.instances/);
  refused('{ name: d, kind: batch, image: r/x:1, spark: { mainClass: a.B } }', /only for kind: spark/);
  refused('{ name: d, kind: spark, build: { jar: a.jar, mainClass: a.B, target: "docker://r/x:1" }, spark: { mainClass: a.B } }', /main class is spark.mainClass/);
});

test('render: the driver is a pod of the run with weft launcher args; executors get the run labels, node selection, tolerations', () => {
  const spec = parseAppSpecYaml(yaml);
  const out = renderRun({ runId: 'pi-0123', spec, files: [] }, { namespace: 'ns1', now: 0 });
  assert.equal(out.jobs.length + out.deployments.length + out.statefulSets.length, 0);
  const [driver] = out.pods;
  assert.equal(driver.metadata!.name, 'pi-0123-pi-driver');
  assert.equal(driver.metadata!.labels!['weft.io/run-id'], 'pi-0123');
  assert.equal(driver.metadata!.labels!['spark-role'], 'driver');
  assert.equal(driver.metadata!.labels!.team, 'data');
  const pod = driver.spec!;
  assert.equal(pod.restartPolicy, 'Never');
  assert.equal(pod.serviceAccountName, 'pi-0123-spark');
  assert.deepEqual(pod.nodeSelector, { 'weft.io/real-node': 'true' });
  const c = pod.containers[0];
  assert.deepEqual(c.resources, { requests: { cpu: '500m', memory: '1Gi' }, limits: { memory: '1Gi' } });
  const args = c.args!;
  assert.equal(args[0], 'driver');
  assert.deepEqual(args.slice(-2), ['com.example.spark.SparkPi', '8']);
  const conf = Object.fromEntries(args.filter((_, i) => args[i - 1] === '--conf').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  assert.equal(conf['spark.master'], IN_CLUSTER_MASTER);
  assert.equal(conf['spark.kubernetes.namespace'], 'ns1');
  assert.equal(conf['spark.kubernetes.container.image'], spec.runnables[0].image);
  assert.equal(conf['spark.kubernetes.driver.pod.name'], '$(WEFT_POD_NAME)');
  assert.equal(conf['spark.driver.host'], '$(WEFT_POD_IP)');
  assert.equal(conf['spark.executor.instances'], '2');
  assert.equal(conf['spark.executor.memory'], '576m');
  assert.equal(conf['spark.executor.memoryOverhead'], '192m');
  assert.equal(conf['spark.kubernetes.executor.request.cores'], '250m');
  assert.equal(conf['spark.kubernetes.executor.label.weft.io/run-id'], 'pi-0123');
  assert.equal(conf['spark.kubernetes.executor.label.weft.io/runnable'], 'pi');
  assert.equal(conf['spark.kubernetes.executor.label.app.kubernetes.io/managed-by'], 'weft');
  assert.equal(conf['spark.kubernetes.node.selector.weft.io/real-node'], 'true');
  assert.equal(conf['spark.scheduler.minRegisteredResourcesRatio'], '1.0');
  assert.equal(conf['spark.ui.enabled'], 'false');
  const env = Object.fromEntries(c.env!.map((e) => [e.name, e.value ?? e.valueFrom?.fieldRef?.fieldPath]));
  assert.equal(env.WEFT_POD_IP, 'status.podIP');
  assert.equal(env.WEFT_POD_NAME, 'metadata.name');
  assert.equal(env.WEFT_INSTANCE_ID, 'driver');
  // The executors' pod template rides in the root and is mounted into the driver.
  const template = JSON.parse(out.root.data![`spark.pi.executor-pod.json`]) as V1Pod;
  assert.deepEqual(template.spec!.tolerations, [{ key: 'weft.io/real-node', operator: 'Exists', effect: 'NoSchedule' }]);
  assert.equal(template.spec!.containers[0].name, 'main');
  assert.equal(conf['spark.kubernetes.executor.podTemplateFile'], '/etc/weft/spark/executor-pod.json');
  assert.ok(c.volumeMounts!.some((m) => m.mountPath === '/etc/weft/spark'));
  // A service account with just the driver's verbs, all owned by the root.
  assert.equal(out.serviceAccounts[0].metadata!.name, 'pi-0123-spark');
  assert.deepEqual(out.roles[0].rules!.map((r) => r.resources), [['pods'], ['configmaps', 'services', 'persistentvolumeclaims']]);
  assert.deepEqual(out.roleBindings[0].subjects, [{ kind: 'ServiceAccount', name: 'pi-0123-spark', namespace: 'ns1' }]);
  adopt(out, { ...out.root, metadata: { ...out.root.metadata, uid: 'u1' } });
  for (const o of [driver, out.serviceAccounts[0], out.roles[0], out.roleBindings[0]]) assert.equal(o.metadata!.ownerReferences![0].uid, 'u1');
});

test('render: an app that names its service account gets no account or role of weft', () => {
  const spec = parseAppSpecYaml(yaml.replace('name: pi\n', 'name: pi\nserviceAccount: spark-runner\n'));
  const out = renderRun({ runId: 'pi-1', spec, files: [] }, { namespace: 'n', now: 0 });
  assert.equal(out.pods[0].spec!.serviceAccountName, 'spark-runner');
  assert.equal(out.serviceAccounts.length + out.roles.length + out.roleBindings.length, 0);
});

test('executor memory: the pod limit splits into Spark heap (75%) and overhead', () => {
  assert.deepEqual(executorMemory('768Mi'), { heapMiB: 576, overheadMiB: 192 });
  assert.deepEqual(executorMemory('1Gi'), { heapMiB: 768, overheadMiB: 256 });
});

// ---------------------------------------------------------------------------------------------
// Run state from the driver and its executors

const spec = parseAppSpecYaml(yaml);
const rendered = renderRun({ runId: 'pi-1', spec, files: [] }, { namespace: 'ns', now: 0 });
const root: V1ConfigMap = slimRoot({ ...rendered.root, metadata: { ...rendered.root.metadata, uid: 'u' } });
const runningStatus = (): V1ContainerStatus => ({ name: 'main', image: 'i', imageID: '', ready: true, restartCount: 0, state: { running: { startedAt: new Date(1000) } } });
const terminatedStatus = (exitCode: number, reason: string, message?: string): V1ContainerStatus => ({
  name: 'main',
  image: 'i',
  imageID: '',
  ready: false,
  restartCount: 0,
  state: { terminated: { exitCode, reason, message } },
});
function sparkPod(role: 'driver' | 'executor', status: V1Pod['status'], id?: number): V1Pod {
  const name = role === 'driver' ? 'pi-1-pi-driver' : `pi-1-pi-exec-${id}`;
  const labels: Record<string, string> = { 'weft.io/run-id': 'pi-1', 'weft.io/runnable': 'pi', 'spark-role': role };
  if (id !== undefined) labels['spark-exec-id'] = String(id);
  return slimPod({ metadata: { name, labels }, spec: { nodeName: 'vm', containers: [{ name: 'main' }] }, status });
}
const derive = (pods: V1Pod[]) => deriveRun('pi-1', { root, jobs: [], deployments: [], statefulSets: [], pods }, 2000);

test('state: PENDING before the driver, RUNNING once it runs, with the executors as instances', () => {
  assert.equal(derive([]).state, 'PENDING');
  const driver = sparkPod('driver', { phase: 'Running', containerStatuses: [runningStatus()] });
  const s = derive([driver]);
  assert.equal(s.state, 'RUNNING');
  assert.equal(s.runnables[0].kind, 'spark');
  assert.equal(s.runnables[0].desired, 3, 'the driver and the two executors it asks for');
  const withExecutors = derive([driver, sparkPod('executor', { phase: 'Running', containerStatuses: [runningStatus()] }, 2), sparkPod('executor', { phase: 'Pending' }, 1)]);
  assert.deepEqual(
    withExecutors.runnables[0].instances.map((i) => `${i.id}:${i.state}`),
    ['driver:RUNNING', 'exec-1:STARTING', 'exec-2:RUNNING'],
  );
  assert.equal(withExecutors.state, 'RUNNING');
  assert.equal(withExecutors.runnables[0].running, 2);
});

test('state: an executor OOM-killed or unschedulable is named (with the limit, or the scheduler\'s words), the run goes on', () => {
  const driver = sparkPod('driver', { phase: 'Running', containerStatuses: [runningStatus()] });
  const oom = sparkPod('executor', { phase: 'Failed', containerStatuses: [terminatedStatus(137, 'OOMKilled')] }, 1);
  const s = derive([driver, oom]);
  assert.equal(s.state, 'RUNNING');
  assert.equal(s.reason, 'OOMKilled');
  assert.match(s.message!, /instance pi\/exec-1: OOMKilled \(exit code 137\).*limit of 768Mi/);
  const stuck = sparkPod('executor', { phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/4 nodes are available: 1 Insufficient memory.' }] }, 2);
  const u = derive([driver, stuck]);
  assert.equal(u.state, 'RUNNING');
  assert.equal(u.reason, 'Unschedulable');
  assert.match(u.message!, /instance pi\/exec-2: not scheduled: 0\/4 nodes are available: 1 Insufficient memory\./);
});

test('state: the driver decides the end: COMPLETED, or FAILED with its exception', () => {
  const done = sparkPod('driver', { phase: 'Succeeded', containerStatuses: [terminatedStatus(0, 'Completed')] });
  const executorLost = sparkPod('executor', { phase: 'Failed', containerStatuses: [terminatedStatus(1, 'Error')] }, 1);
  assert.equal(derive([done, executorLost]).state, 'COMPLETED', 'an executor that ended badly does not fail a driver that succeeded');
  const report = "the driver's main (com.example.spark.WordCount) threw java.nio.file.NoSuchFileException: /etc/weft/files/missing.txt\nat com.example.spark.WordCount.main(WordCount.java:27)";
  const failed = sparkPod('driver', { phase: 'Failed', containerStatuses: [terminatedStatus(1, 'Error', report)] });
  const f = derive([failed]);
  assert.equal(f.state, 'FAILED');
  assert.equal(f.exitCode, 1);
  assert.match(f.message!, /^instance pi\/driver failed: exit code 1 \(Error\): the driver's main \(com.example.spark.WordCount\) threw java.nio.file.NoSuchFileException: \/etc\/weft\/files\/missing.txt \| at com.example.spark.WordCount/);
});

test('local runtime: the driver runs the same image in local[N] on loopback', () => {
  const r = parseAppSpecYaml(yaml).runnables[0];
  const program = localProgram(r);
  assert.equal(program.args[0], 'driver');
  assert.ok(program.args.includes('spark.master=local[2]'), 'two executors of one core: local[2]');
  assert.ok(program.args.includes('spark.driver.bindAddress=127.0.0.1'));
  assert.deepEqual(program.args.slice(-2), ['com.example.spark.SparkPi', '8']);
  assert.equal(program.env.SPARK_LOCAL_IP, '127.0.0.1');
  assert.deepEqual(driverArgs({ a: '1' }, 'x.Y', ['z']), ['driver', '--conf', 'a=1', 'x.Y', 'z']);
});

test('images: the launcher is the entry point; the spark preset adds the modules and host libraries Spark needs', () => {
  assert.equal(SPARK_LAUNCHER_MAIN, 'io.weft.spark.Launcher');
  const preset = sparkJrePreset();
  for (const m of ['java.base', 'java.desktop', 'jdk.management', 'java.security.jgss', 'jdk.security.auth', 'java.instrument']) assert.ok(preset.modules.includes(m), m);
  assert.ok(preset.hostLibraries.includes('libpthread.so.0'));
});

// ---------------------------------------------------------------------------------------------
// The launcher as the driver of `spark-submit --deploy-mode cluster`: Spark's driver pod runs the
// image with `driver --properties-file <file> --class <main> <resource> <args>` and the pod's IP in
// SPARK_DRIVER_BIND_ADDRESS. Here the same args run the real launcher and Spark jars in a JVM, with
// a properties file that says local[2] (no cluster needed for the argument handling).

const exampleBuild = path.join(repoRoot, 'examples', 'spark', 'build');

async function launchSubmittedDriver(args: string[], env: Record<string, string>) {
  for (const f of [path.join(exampleBuild, 'spark-examples.jar'), path.join(exampleBuild, 'libs')]) {
    if (!existsSync(f)) throw new Error(`${f} is missing: run scripts/setup --test (or examples/spark/build.sh), which fetches the Spark jars and builds the example`);
  }
  const classPath = [sparkLauncherJar(), path.join(exampleBuild, 'spark-examples.jar'), `${path.join(exampleBuild, 'libs')}/*`].join(':');
  return runCommand('java', [...SPARK_JVM_FLAGS, '-cp', classPath, SPARK_LAUNCHER_MAIN, 'driver', ...args], { env: { SPARK_DRIVER_BIND_ADDRESS: undefined, ...env }, timeoutMs: 240_000 });
}

test('launcher: the driver args of spark-submit --deploy-mode cluster run SparkSubmit in client mode, bound to the pod address, with the properties file', { timeout: 300_000 }, async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-spark-submitted-'));
  try {
    const props = path.join(dir, 'spark.properties');
    await fs.writeFile(props, 'spark.master=local[2]\nspark.ui.enabled=false\n');
    const args = ['--properties-file', props, '--class', 'com.example.spark.SparkPi', 'spark-internal', '2'];
    const run = await launchSubmittedDriver(args, { SPARK_DRIVER_BIND_ADDRESS: '127.0.0.1' });
    assert.equal(run.code, 0, run.stderr.split('\n').slice(-30).join('\n'));
    assert.match(run.stdout, /Pi is roughly 3\.1\d*/, 'the program ran, with the master from the properties file');
    const said = run.stderr.split('\n').find((l) => l.startsWith('[weft spark] driver of spark-submit --deploy-mode cluster: '));
    assert.equal(
      said?.slice(said.indexOf(': ') + 2),
      ['org.apache.spark.deploy.SparkSubmit', '--conf', 'spark.driver.bindAddress=127.0.0.1', '--conf', 'spark.executorEnv.SPARK_DRIVER_POD_IP=127.0.0.1', '--deploy-mode', 'client', ...args].join(' '),
      'client mode inside the pod, bound to its address, then the pod args unchanged',
    );
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('launcher: a submitted driver whose main throws fails with the exception in the termination log', { timeout: 300_000 }, async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-spark-submitted-'));
  try {
    const props = path.join(dir, 'spark.properties');
    await fs.writeFile(props, 'spark.master=local[2]\nspark.ui.enabled=false\n');
    const terminationLog = path.join(dir, 'termination-log');
    await fs.writeFile(terminationLog, '');
    const missing = path.join(dir, 'missing.txt');
    const run = await launchSubmittedDriver(['--properties-file', props, '--class', 'com.example.spark.WordCount', 'spark-internal', missing], {
      SPARK_DRIVER_BIND_ADDRESS: '127.0.0.1',
      WEFT_TERMINATION_LOG: terminationLog,
    });
    assert.equal(run.code, 1, run.stderr.split('\n').slice(-30).join('\n'));
    const report = await fs.readFile(terminationLog, 'utf8');
    assert.match(report, new RegExp(`^the driver's main \\(com\\.example\\.spark\\.WordCount\\) threw java\\.nio\\.file\\.NoSuchFileException: ${missing.replace(/[.]/g, '\\.')}`));
    assert.match(report, /\nat com\.example\.spark\.WordCount\.main\(WordCount\.java:\d+\)/);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('launcher: submitted driver args it cannot run are refused with what is missing', async () => {
  const refused = async (args: string[], env: Record<string, string>, expected: RegExp) => {
    const run = await launchSubmittedDriver(args, env);
    assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
    assert.match(run.stderr, expected, args.join(' '));
  };
  const bind = { SPARK_DRIVER_BIND_ADDRESS: '10.0.0.5' };
  await refused(['--properties-file', '/p', 'spark-internal'], bind, /the driver's args name no --class: weft's Spark images run JVM programs only/);
  await refused(['--properties-file', '--class', 'a.B', 'spark-internal'], bind, /--properties-file needs a file/);
  await refused(['--properties-file', '/p', '--class', 'a.B', 'spark-internal'], {}, /SPARK_DRIVER_BIND_ADDRESS is not set: spark-submit --deploy-mode cluster gives the driver pod its IP/);
});
