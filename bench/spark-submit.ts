// On the real node of the test environment (in-cluster networking): the Spark example's SparkPi
// submitted by weft (`weft run --wait` of a spark runnable) and by Spark's own
// `spark-submit --deploy-mode cluster` (run as `java -cp <the Spark jars> SparkSubmit`), with the
// same weft-built image by digest, the same executor count, cores, memory and CPU requests, and the
// same Spark settings. Interleaved, one fresh namespace per sample. For each: submit -> first
// executor pod Running, submit -> driver pod Succeeded (both from a pod watch), and submit -> the
// submitter's exit (`weft run --wait` returns COMPLETED; spark-submit returns once it saw the
// driver end). Prints every sample, then medians and ratios (Spark / weft).
//
// bench/spark-submit.sh brings up the test environment; with KUBECONFIG and WEFT_NODE_REGISTRY set
// (scripts/test.d/50-k8s-up.sh exports both) it runs directly:
//   node dist/bench/spark-submit.js [--runs 3] [--slices 8]
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { CoreV1Api, KubeConfig, RbacAuthorizationV1Api, Watch, type V1Pod } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { DRIVER_RULES, executorMemory, SPARK_JVM_FLAGS } from '../src/runtime/spark/index.js';
import { toolsDir, toolVersion } from '../test/support/tools.js';
import { median } from './stats.js';
import { countFlag, flag } from './args.js';
import { realNodeEnvironment, repo, weftMain } from './real-node.js';

const exec = promisify(execFile);
const RUNS = countFlag('runs', 3);
const SLICES = flag('slices', '8');
const example = join(repo, 'examples', 'spark', 'build');
const { kubeconfig, registry } = realNodeEnvironment('bench/spark-submit.sh');
const sparkVersion = toolVersion('spark', 'scripts/setup.d/25-spark.sh');
if (!existsSync(join(example, 'spark-examples.jar'))) throw new Error('the Spark example is not built: run examples/spark/build.sh (scripts/setup --test does)');
const sparkJars = join(toolsDir(), `spark-${sparkVersion}`, 'jars');

// The same program and sizes for both (examples/spark/weft.yaml).
const MAIN_CLASS = 'com.example.spark.SparkPi';
const DRIVER = { cpu: '500m', memory: '1Gi' };
const EXECUTORS = { instances: 2, cores: 1, cpu: '250m', memory: '768Mi' };
// Settings weft's runs carry too (its defaults, and the example's): given to spark-submit as well.
const SHARED_CONF: Record<string, string> = {
  'spark.scheduler.minRegisteredResourcesRatio': '1.0',
  'spark.ui.enabled': 'false',
  'spark.kubernetes.driver.connectionTimeout': '30000',
  'spark.kubernetes.driver.requestTimeout': '30000',
};
const onRealNode = {
  nodeSelector: { 'weft.io/real-node': 'true' },
  tolerations: [{ key: 'weft.io/real-node', operator: 'Exists' as const, effect: 'NoSchedule' as const }],
};

const kc = new KubeConfig();
kc.loadFromFile(kubeconfig);
const core = kc.makeApiClient(CoreV1Api);
const rbac = kc.makeApiClient(RbacAuthorizationV1Api);

interface Sample {
  firstExecutorRunning: number;
  driverSucceeded: number;
  submitterExit: number;
}

/** Watches a namespace's pods and resolves the two moments the benchmark measures (ms since t0). */
async function watchPods(namespace: string, t0: () => number) {
  let firstExecutor: number | undefined;
  let driverDone: ((ms: number) => void) | undefined;
  let driverFailed: ((e: Error) => void) | undefined;
  const succeeded = new Promise<number>((resolve, reject) => {
    driverDone = resolve;
    driverFailed = reject;
  });
  const request = await new Watch(kc).watch(
    `/api/v1/namespaces/${namespace}/pods`,
    {},
    (_type: string, pod: V1Pod) => {
      const role = pod.metadata?.labels?.['spark-role'];
      const phase = pod.status?.phase;
      if (role === 'executor' && phase === 'Running' && firstExecutor === undefined) firstExecutor = Date.now() - t0();
      if (role === 'driver' && phase === 'Succeeded') driverDone!(Date.now() - t0());
      if (role === 'driver' && phase === 'Failed') driverFailed!(new Error(`driver pod ${pod.metadata?.name} failed: ${JSON.stringify(pod.status?.containerStatuses?.[0]?.state)}`));
    },
    (err: unknown) => {
      if (err) driverFailed!(new Error(`pod watch of ${namespace} ended: ${String(err)}`));
    },
  );
  return { firstExecutor: () => firstExecutor, succeeded, stop: () => request.abort() };
}

async function freshNamespace(): Promise<string> {
  const namespace = `spark-bench-${randomBytes(3).toString('hex')}`;
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  return namespace;
}

async function dropNamespace(namespace: string): Promise<void> {
  await core.deleteNamespace({ name: namespace, body: { gracePeriodSeconds: 0 } }).catch(() => undefined);
  for (let i = 0; i < 240; i++) {
    const ns = await core.readNamespace({ name: namespace }).catch(() => undefined);
    if (!ns) return;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`namespace ${namespace} was not gone 2 minutes after its deletion`);
}

/** Runs a submitter and the pod watch; the sample's times, or an error with the submitter's log tail. */
async function measure(namespace: string, logFile: string, command: string, args: string[], env: NodeJS.ProcessEnv): Promise<Sample> {
  let start = 0;
  const watch = await watchPods(namespace, () => start);
  try {
    const log = createWriteStream(logFile);
    start = Date.now();
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.pipe(log);
    child.stderr.pipe(log);
    const code = await new Promise<number>((resolve) => child.on('exit', (c) => resolve(c ?? 1)));
    const submitterExit = Date.now() - start;
    const fail = async (what: string) => new Error(`${what}; last lines of ${logFile}:\n${(await readFile(logFile, 'utf8')).split('\n').slice(-25).join('\n')}`);
    if (code !== 0) throw await fail(`${command} exited ${code}`);
    const driverSucceeded = await Promise.race([watch.succeeded, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no driver pod Succeeded 60 s after the submitter ended')), 60_000))]).catch(async (e: Error) => {
      throw await fail(e.message);
    });
    const firstExecutorRunning = watch.firstExecutor();
    if (firstExecutorRunning === undefined) throw await fail('no executor pod was seen Running');
    return { firstExecutorRunning, driverSucceeded, submitterExit };
  } finally {
    watch.stop();
  }
}

async function weftSample(image: string, work: string, n: number): Promise<Sample> {
  const namespace = await freshNamespace();
  try {
    const spec = {
      name: 'spark-pi',
      startTimeout: '10m',
      kubernetes: onRealNode,
      runnables: [
        {
          name: 'pi',
          kind: 'spark',
          image,
          args: [SLICES],
          resources: DRIVER,
          spark: {
            mainClass: MAIN_CLASS,
            executors: { instances: EXECUTORS.instances, cores: EXECUTORS.cores, resources: { cpu: EXECUTORS.cpu, memory: EXECUTORS.memory } },
            conf: { 'spark.scheduler.minRegisteredResourcesRatio': '1.0' },
          },
        },
      ],
    };
    const file = join(work, `weft-${n}.yaml`);
    await writeFile(file, stringify(spec));
    return await measure(namespace, join(work, `weft-${n}.log`), process.execPath, [weftMain, 'run', file, '--runtime', 'kubernetes', '--namespace', namespace, '--wait'], { ...process.env, KUBECONFIG: kubeconfig });
  } finally {
    await dropNamespace(namespace);
  }
}

async function sparkSubmitSample(image: string, work: string, n: number, master: string): Promise<Sample> {
  const namespace = await freshNamespace();
  try {
    // What the driver may do (weft's per-run role has the same rules), for a service account of its own.
    await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'spark' } } });
    await rbac.createNamespacedRole({ namespace, body: { metadata: { name: 'spark' }, rules: DRIVER_RULES.map((r) => ({ ...r })) } });
    await rbac.createNamespacedRoleBinding({
      namespace,
      body: { metadata: { name: 'spark' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'spark' }, subjects: [{ kind: 'ServiceAccount', name: 'spark', namespace }] },
    });
    // Spark has no setting for tolerations: a pod template carries them, for the driver and the executors.
    const template = join(work, 'tolerate-real-node.yaml');
    await writeFile(template, stringify({ apiVersion: 'v1', kind: 'Pod', spec: { tolerations: onRealNode.tolerations } }));
    const executor = executorMemory(EXECUTORS.memory);
    // The driver pod's memory limit is spark.driver.memory + its overhead: 1Gi, as weft's.
    const conf: Record<string, string> = {
      ...SHARED_CONF,
      'spark.kubernetes.namespace': namespace,
      'spark.kubernetes.container.image': image,
      'spark.kubernetes.authenticate.driver.serviceAccountName': 'spark',
      'spark.kubernetes.node.selector.weft.io/real-node': 'true',
      'spark.kubernetes.driver.podTemplateFile': template,
      'spark.kubernetes.executor.podTemplateFile': template,
      'spark.driver.memory': '768m',
      'spark.driver.memoryOverhead': '256m',
      'spark.kubernetes.driver.request.cores': DRIVER.cpu,
      'spark.executor.instances': String(EXECUTORS.instances),
      'spark.executor.cores': String(EXECUTORS.cores),
      'spark.executor.memory': `${executor.heapMiB}m`,
      'spark.executor.memoryOverhead': `${executor.overheadMiB}m`,
      'spark.kubernetes.executor.request.cores': EXECUTORS.cpu,
    };
    // The program's classes are in the image's class path (weft explodes the jar into /app/classes):
    // Spark's "spark-internal" resource says just that, and the driver loads the main class from there.
    const args = [
      ...SPARK_JVM_FLAGS,
      '-cp',
      `${sparkJars}/*`,
      'org.apache.spark.deploy.SparkSubmit',
      '--master',
      master,
      '--deploy-mode',
      'cluster',
      '--name',
      'spark-pi',
      '--class',
      MAIN_CLASS,
      ...Object.entries(conf).flatMap(([k, v]) => ['--conf', `${k}=${v}`]),
      'spark-internal',
      SLICES,
    ];
    return await measure(namespace, join(work, `spark-submit-${n}.log`), 'java', args, { ...process.env, KUBECONFIG: kubeconfig });
  } finally {
    await dropNamespace(namespace);
  }
}

const secs = (ms: number) => (ms / 1000).toFixed(1);
const load = () => loadavg()[0]!.toFixed(1);

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'weft-bench-spark-'));
  try {
    const master = `k8s://${kc.getCurrentCluster()!.server}`;
    console.log(`Spark ${sparkVersion}, SparkPi ${SLICES} slices, ${EXECUTORS.instances} executors of ${EXECUTORS.cpu}/${EXECUTORS.memory}, driver ${DRIVER.cpu}/${DRIVER.memory}; ${RUNS} runs each, interleaved; master ${master}`);
    const built = JSON.parse(
      (await exec(process.execPath, [weftMain, 'build', join(example, 'spark-examples.jar'), '--lib', join(example, 'libs'), '--spark', '--output', `docker://${registry}/spark/bench:${randomBytes(4).toString('hex')}`, '--json'], { maxBuffer: 64 << 20 })).stdout,
    ) as { output: string };
    const image = built.output;
    console.log(`image ${image}`);
    // One run of each first, not counted: the node pulls the image, and both JVMs' class caches warm up.
    await weftSample(image, work, 0);
    await sparkSubmitSample(image, work, 0, master);
    const samples: Record<'weft' | 'spark-submit', Sample[]> = { weft: [], 'spark-submit': [] };
    for (let n = 1; n <= RUNS; n++) {
      for (const who of n % 2 ? (['weft', 'spark-submit'] as const) : (['spark-submit', 'weft'] as const)) {
        const s = who === 'weft' ? await weftSample(image, work, n) : await sparkSubmitSample(image, work, n, master);
        samples[who].push(s);
        console.log(`run ${n} ${who.padEnd(12)}: first executor Running ${secs(s.firstExecutorRunning)} s, driver Succeeded ${secs(s.driverSucceeded)} s, submitter exit ${secs(s.submitterExit)} s (load ${load()})`);
      }
    }
    console.log(`medians over ${RUNS} runs (load ${loadavg().map((l) => l.toFixed(1)).join(' ')}):`);
    for (const [key, label] of [
      ['firstExecutorRunning', 'submit -> first executor Running'],
      ['driverSucceeded', 'submit -> driver Succeeded'],
      ['submitterExit', 'submit -> submitter exit'],
    ] as const) {
      const w = median(samples.weft.map((s) => s[key]));
      const k = median(samples['spark-submit'].map((s) => s[key]));
      console.log(`  ${label.padEnd(34)} weft ${secs(w).padStart(6)} s   spark-submit ${secs(k).padStart(6)} s   spark-submit / weft ${(k / w).toFixed(2)}`);
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main();
