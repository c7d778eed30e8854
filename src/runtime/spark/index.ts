// Spark programs as runnables (kind: spark): what weft puts into their images and the Spark
// configuration each runtime gives the driver. Pure, so it is unit-tested directly; the Kubernetes
// objects are rendered by ../kube/render.ts, the local instance by ../local/runtime.ts.
//
// The driver is the runnable's one instance. It runs weft's launcher (a small Java class,
// ./launcher, compiled at set-up) as the image's main class: `driver --conf k=v ... <main> <args>`.
// On Kubernetes, Spark's driver creates the executor pods itself, with the same image and the args
// `executor`, which the launcher turns into Spark's executor backend in the same JVM: no shell is
// needed in the image. See docs/spark.md.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { V1Pod, V1Toleration } from '@kubernetes/client-node';
import { ENV, runLabels } from '../contract/index.js';
import { parseQuantityBytes, type KubernetesExtras, type RunnableSpec, type SparkExecutors, type SparkSpec } from '../spec.js';

export class SparkError extends Error {
  override name = 'SparkError';
}

/** The launcher's main class: the entry point of every Spark image weft builds. */
export const SPARK_LAUNCHER_MAIN = 'io.weft.spark.Launcher';

/** JRE modules Spark needs beyond weft's default base (`weft base jre --preset spark` adds them). */
export const SPARK_JRE_MODULES: readonly string[] = [
  'java.desktop', // java.beans, which Spark's logging set-up loads (ClassNotFoundException: java.beans.PropertyChangeEvent without it)
  'java.instrument',
  'java.security.jgss', // Hadoop's security classes, loaded by Spark's file system code even without Kerberos
  'jdk.management', // com.sun.management (executor metrics)
  'jdk.security.auth',
];

/**
 * Host libraries the native code in Spark's jars links against (zstd-jni, snappy-java,
 * netty-tcnative and netty's epoll transport for linux-x86_64: found with ldd on the .so files in
 * the Spark 4.0.1 jars). The JRE itself needs only some of them; without libpthread.so.0 the
 * driver fails to send map output locations (zstd), and every shuffle with it.
 */
export const SPARK_HOST_LIBRARIES: readonly string[] = ['libdl.so.2', 'libgcc_s.so.1', 'libm.so.6', 'libpthread.so.0', 'librt.so.1', 'libstdc++.so.6'];

/**
 * The packages Spark reaches into by reflection: the --add-opens its driver also hands every
 * executor (SPARK_JAVA_OPT_<n>). An executor runs in the image's JVM, so the image opens them all.
 */
const OPENED_PACKAGES = [
  'java.base/java.io',
  'java.base/java.lang',
  'java.base/java.lang.invoke',
  'java.base/java.lang.reflect',
  'java.base/java.net',
  'java.base/java.nio',
  'java.base/java.util',
  'java.base/java.util.concurrent',
  'java.base/java.util.concurrent.atomic',
  'java.base/jdk.internal.ref',
  'java.base/sun.nio.ch',
  'java.base/sun.nio.cs',
  'java.base/sun.security.action',
  'java.base/sun.util.calendar',
  'java.security.jgss/sun.security.krb5',
];

/** JVM flags of a Spark image's entry point (driver and executors share it). */
export const SPARK_JVM_FLAGS: readonly string[] = [
  ...OPENED_PACKAGES.map((p) => `--add-opens=${p}=ALL-UNNAMED`),
  '-Djdk.reflect.useDirectMethodHandle=false',
  '-Dio.netty.tryReflectionSetAccessible=true',
];

/** Fixed driver ports: the driver has its pod's address to itself. */
export const DRIVER_PORT = 7078;
export const DRIVER_BLOCK_MANAGER_PORT = 7079;
/** Where the driver finds the executors' pod template (a key of the run's root ConfigMap). */
export const SPARK_DIR = '/etc/weft/spark';
export const EXECUTOR_TEMPLATE_FILE = 'executor-pod.json';
/** The executors' container: named like every weft container, so logs and status find it the same way. */
export const EXECUTOR_CONTAINER = 'main';
/** The master URL of the cluster a driver pod runs in (the in-cluster address of the API server). */
export const IN_CLUSTER_MASTER = 'k8s://https://kubernetes.default.svc:443';
const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
/** Spark's own labels on the pods it makes (and weft's driver pod). */
export const SPARK_ROLE_LABEL = 'spark-role';
export const SPARK_EXEC_ID_LABEL = 'spark-exec-id';
/** The env var the driver pod gets its address from (downward API), expanded by Kubernetes in its args. */
export const POD_IP_ENV = 'WEFT_POD_IP';

/**
 * The launcher jar compiled by the set-up (scripts/build-spark-launcher.sh), beside the compiled
 * code: dist/spark-launcher/weft-spark-launcher.jar. $WEFT_SPARK_LAUNCHER_JAR overrides it.
 */
export function sparkLauncherJar(env: NodeJS.ProcessEnv = process.env): string {
  const jar = env.WEFT_SPARK_LAUNCHER_JAR || path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'spark-launcher', 'weft-spark-launcher.jar');
  if (!existsSync(jar)) {
    throw new SparkError(`weft's Spark launcher is not built (no ${jar}): run scripts/setup (or scripts/build-spark-launcher.sh), which compiles it with javac`);
  }
  return jar;
}

const MiB = 1024 * 1024;

/**
 * Spark's executor memory split from the pod's memory: Spark makes the pod's limit
 * spark.executor.memory + spark.executor.memoryOverhead, and the executor's JVM sizes its heap
 * from the limit (75%, the image's -XX:MaxRAMPercentage), so the heap gets 75% and the rest is
 * overhead.
 */
export function executorMemory(memory: string): { heapMiB: number; overheadMiB: number } {
  const total = Math.floor(parseQuantityBytes(memory) / MiB);
  const heapMiB = Math.floor(total * 0.75);
  return { heapMiB, overheadMiB: total - heapMiB };
}

/** The executors a run asks for at first: the fixed count, or dynamic allocation's minimum. */
export function initialExecutors(executors: SparkExecutors): number {
  return executors.instances ?? executors.min ?? 0;
}

/** Task threads on the local runtime: local[N]. */
export function localThreads(spark: SparkSpec): number {
  const e = spark.executors;
  return spark.localThreads ?? Math.max(1, (e.instances ?? e.max ?? 1) * e.cores);
}

export function requireSpark(r: RunnableSpec): SparkSpec {
  if (r.kind !== 'spark' || !r.spark) throw new SparkError(`runnable ${r.name} is not a Spark runnable`);
  return r.spark;
}

/** Spark settings weft gives every driver unless the spec's conf says otherwise. */
const SPARK_DEFAULTS: Readonly<Record<string, string>> = {
  // The web UI costs start-up time and a port nobody reaches.
  'spark.ui.enabled': 'false',
};

/** And on Kubernetes: the driver's API client waits 30 s (Spark's 10 s fail a driver on a busy node before it asks for executors). */
const KUBERNETES_DEFAULTS: Readonly<Record<string, string>> = {
  'spark.kubernetes.driver.connectionTimeout': '30000',
  'spark.kubernetes.driver.requestTimeout': '30000',
};

function executorConf(e: SparkExecutors): Record<string, string> {
  const { heapMiB, overheadMiB } = executorMemory(e.resources.memory);
  const conf: Record<string, string> = {
    'spark.executor.cores': String(e.cores),
    'spark.executor.memory': `${heapMiB}m`,
    'spark.executor.memoryOverhead': `${overheadMiB}m`,
  };
  if (e.instances !== undefined) {
    conf['spark.executor.instances'] = String(e.instances);
  } else {
    // Dynamic allocation on Kubernetes has no external shuffle service: Spark tracks shuffle files instead.
    Object.assign(conf, {
      'spark.dynamicAllocation.enabled': 'true',
      'spark.dynamicAllocation.shuffleTracking.enabled': 'true',
      'spark.dynamicAllocation.minExecutors': String(e.min),
      'spark.dynamicAllocation.maxExecutors': String(e.max),
      'spark.dynamicAllocation.initialExecutors': String(e.min),
    });
  }
  return conf;
}

export interface KubernetesSparkInput {
  runId: string;
  app: string;
  runnable: RunnableSpec;
  namespace: string;
  /** The image, by digest when weft could resolve it (the executors run the driver's image). */
  image: string;
  extras: KubernetesExtras;
}

/** The name prefix of the executor pods: <run id>-<runnable>-exec-<n>. */
export function executorPodPrefix(runId: string, runnable: string): string {
  return `${runId}-${runnable}`;
}

export function driverPodName(runId: string, runnable: string): string {
  return `${runId}-${runnable}-driver`;
}

/** The driver's Spark configuration on Kubernetes: defaults, then the spec's conf, then what weft must set. */
export function kubernetesSparkConf(input: KubernetesSparkInput): Record<string, string> {
  const { runnable: r, extras } = input;
  const spark = requireSpark(r);
  const conf: Record<string, string> = { ...SPARK_DEFAULTS, ...KUBERNETES_DEFAULTS, 'spark.app.name': r.name, ...spark.conf };
  Object.assign(conf, {
    'spark.master': IN_CLUSTER_MASTER,
    'spark.submit.deployMode': 'client',
    'spark.kubernetes.namespace': input.namespace,
    'spark.kubernetes.container.image': input.image,
    // Kubernetes expands $(VAR) in args from the container's env: the pod's own name and address.
    'spark.kubernetes.driver.pod.name': `$(${ENV.podName})`,
    'spark.driver.host': `$(${POD_IP_ENV})`,
    'spark.driver.port': conf['spark.driver.port'] ?? String(DRIVER_PORT),
    'spark.driver.blockManager.port': conf['spark.driver.blockManager.port'] ?? String(DRIVER_BLOCK_MANAGER_PORT),
    // The driver talks to the API server as the pod's service account.
    'spark.kubernetes.authenticate.caCertFile': conf['spark.kubernetes.authenticate.caCertFile'] ?? `${SERVICE_ACCOUNT_DIR}/ca.crt`,
    'spark.kubernetes.authenticate.oauthTokenFile': conf['spark.kubernetes.authenticate.oauthTokenFile'] ?? `${SERVICE_ACCOUNT_DIR}/token`,
    'spark.kubernetes.executor.podNamePrefix': executorPodPrefix(input.runId, r.name),
    'spark.kubernetes.executor.podTemplateFile': `${SPARK_DIR}/${EXECUTOR_TEMPLATE_FILE}`,
    'spark.kubernetes.executor.podTemplateContainerName': EXECUTOR_CONTAINER,
    // Executor pods stay, with their logs, until the run is deleted (they are owned by the driver pod).
    'spark.kubernetes.executor.deleteOnTermination': 'false',
    'spark.kubernetes.executor.request.cores': spark.executors.resources.cpu,
    ...executorConf(spark.executors),
  });
  // The executors carry the run's labels (the tracker finds them by these) and the user's pod labels and annotations.
  for (const [k, v] of Object.entries({ ...extras.podLabels, ...runLabels(input.runId, input.app, r.name) })) conf[`spark.kubernetes.executor.label.${k}`] = v;
  for (const [k, v] of Object.entries(extras.podAnnotations)) conf[`spark.kubernetes.executor.annotation.${k}`] = v;
  for (const [k, v] of Object.entries(extras.nodeSelector ?? {})) conf[`spark.kubernetes.node.selector.${k}`] = v;
  return conf;
}

/** The driver's Spark configuration on the local runtime: local[N], everything on loopback. */
export function localSparkConf(r: RunnableSpec): Record<string, string> {
  const spark = requireSpark(r);
  return {
    ...SPARK_DEFAULTS,
    'spark.app.name': r.name,
    ...spark.conf,
    'spark.master': `local[${localThreads(spark)}]`,
    'spark.driver.host': '127.0.0.1',
    'spark.driver.bindAddress': '127.0.0.1',
  };
}

/** The launcher's arguments for the driver: `driver --conf k=v ... <main class> <program args>`. */
export function driverArgs(conf: Record<string, string>, mainClass: string, args: readonly string[]): string[] {
  return ['driver', ...Object.entries(conf).flatMap(([k, v]) => ['--conf', `${k}=${v}`]), mainClass, ...args];
}

/**
 * The executors' pod template (Spark merges its own pod into it): what Spark's settings cannot
 * say, the app's tolerations and pull secrets, and a container named like every weft container
 * that reports its last log lines when it fails.
 */
export function executorPodTemplate(extras: KubernetesExtras, imagePullSecrets: readonly string[]): V1Pod {
  const tolerations: V1Toleration[] | undefined = extras.tolerations?.length ? extras.tolerations : undefined;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    spec: {
      containers: [{ name: EXECUTOR_CONTAINER, terminationMessagePolicy: 'FallbackToLogsOnError' }],
      tolerations,
      imagePullSecrets: imagePullSecrets.length ? imagePullSecrets.map((name) => ({ name })) : undefined,
    },
  };
}

/** A Spark pod's instance id: "driver", or "exec-<Spark's executor id>". */
export function sparkInstanceId(labels: Record<string, string> | undefined, podName: string | undefined): string {
  if (labels?.[SPARK_ROLE_LABEL] === 'executor') {
    const id = labels[SPARK_EXEC_ID_LABEL];
    if (id) return `exec-${id}`;
    const m = /-exec-(\d+)$/.exec(podName ?? '');
    return m ? `exec-${m[1]}` : podName ?? '?';
  }
  return 'driver';
}

export function isSparkExecutor(labels: Record<string, string> | undefined): boolean {
  return labels?.[SPARK_ROLE_LABEL] === 'executor';
}

/** The verbs a Spark driver needs in its namespace: it creates, watches and deletes its executors and their config maps, services and volume claims. */
export const DRIVER_RULES: ReadonlyArray<{ apiGroups: string[]; resources: string[]; verbs: string[] }> = [
  { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch', 'create', 'delete', 'deletecollection', 'patch'] },
  { apiGroups: [''], resources: ['configmaps', 'services', 'persistentvolumeclaims'], verbs: ['get', 'list', 'watch', 'create', 'delete', 'deletecollection'] },
];

