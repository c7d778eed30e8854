// The application spec (weft.yaml): what to run, validated with zod so every
// mistake is reported with its path and what to write instead.
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { DurationError, formatDuration, parseDurationMs } from '../common/index.js';

export class SpecError extends Error {
  override name = 'SpecError';
}

/** Parses durations like `500ms`, `60s`, `5m`, `1h30m` (or a bare number of seconds) into milliseconds. */
export function parseDuration(text: string | number): number {
  try {
    return parseDurationMs(text);
  } catch (error) {
    throw error instanceof DurationError ? new SpecError(error.message) : error;
  }
}

export { formatDuration };

const labelPattern = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const labelHint = 'use lowercase letters, digits and "-", starting with a letter (a DNS label)';
const dnsLabel = z.string().min(1).max(63).regex(labelPattern, labelHint);
const appName = z.string().min(1).max(40, 'at most 40 characters (it becomes part of Kubernetes object names)').regex(labelPattern, labelHint);
const runnableName = z.string().min(1).max(20, 'at most 20 characters (it becomes part of Kubernetes object names)').regex(labelPattern, labelHint);

const duration = z
  .union([z.string(), z.number()])
  .transform((value, ctx) => {
    try {
      return parseDuration(value);
    } catch (error) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: (error as Error).message });
      return z.NEVER;
    }
  });

const cpuQuantity = z
  .union([z.string(), z.number()])
  .transform((v) => String(v))
  .refine((v) => /^(\d+(\.\d+)?|\d+m)$/.test(v), 'cpu is cores ("1", "0.5") or millicores ("500m")');
const QUANTITY_UNITS: Record<string, number> = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };
/** Largest byte quantity weft accepts (1 PiB): beyond any real machine, and exact as a JavaScript number. */
export const MAX_QUANTITY_BYTES = 1024 ** 5;

/** Converts a Kubernetes byte quantity (256Mi, 1Gi, 500M, 1000) to bytes; throws SpecError on anything else. */
export function parseQuantityBytes(quantity: string): number {
  const match = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(quantity);
  if (!match) throw new SpecError(`invalid quantity "${quantity}": write bytes or a quantity like 256Mi, 1Gi`);
  const bytes = Math.round(Number(match[1]) * (match[2] ? QUANTITY_UNITS[match[2]] : 1));
  if (!Number.isSafeInteger(bytes) || bytes > MAX_QUANTITY_BYTES) throw new SpecError(`quantity "${quantity}" is too large: at most 1024Ti`);
  return bytes;
}

/** The smallest memory limit: runc refuses smaller ones, and 0 would mean no limit at all. */
const MIN_MEMORY_BYTES = 6 * 1024 ** 2;

const byteQuantity = (what: string, min: number, minText: string) =>
  z
    .union([z.string(), z.number()])
    .transform((v) => String(v))
    .superRefine((v, ctx) => {
      let bytes: number;
      try {
        bytes = parseQuantityBytes(v);
      } catch (error) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, message: `${what}: ${(error as Error).message}` });
        return;
      }
      if (bytes < min) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `${what} "${v}" is too small: at least ${minText}` });
    });
const memoryQuantity = byteQuantity('memory', MIN_MEMORY_BYTES, '6Mi (0 would mean no limit)');
const storageQuantity = byteQuantity('storage size', 1, '1 byte');

export const ResourcesSchema = z
  .object({
    cpu: cpuQuantity.default('500m'),
    memory: memoryQuantity.default('256Mi'),
  })
  .strict();

export const PortSchema = z
  .object({
    name: z
      .string()
      .regex(/^[a-z]([-a-z0-9]{0,13}[a-z0-9])?$/, 'a port name is a lowercase DNS label of at most 15 characters'),
    port: z.number().int().min(1).max(65535),
    protocol: z.enum(['TCP', 'UDP']).default('TCP'),
  })
  .strict();

export const BuildSchema = z
  .object({
    /** The program jar (a thin jar with libs, or a fat jar). */
    jar: z.string().min(1),
    libs: z.array(z.string()).default([]),
    base: z.string().optional(),
    mainClass: z.string().optional(),
    /** Where to push the built image (docker://host/repo:tag): a registry the cluster pulls from. */
    target: z.string().optional(),
  })
  .strict();

export const StorageSchema = z
  .object({
    size: storageQuantity.default('1Gi'),
    mountPath: z.string().startsWith('/', 'mountPath must be an absolute path').default('/data'),
    storageClass: z.string().optional(),
  })
  .strict();

export const TolerationSchema = z
  .object({
    key: z.string().optional(),
    operator: z.enum(['Exists', 'Equal']).optional(),
    value: z.string().optional(),
    effect: z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']).optional(),
    tolerationSeconds: z.number().int().optional(),
  })
  .strict()
  .refine((t) => !(t.operator === 'Exists' && t.value !== undefined), 'a toleration with operator Exists takes no value');

/**
 * Kubernetes-only extras for a runnable's pods (ignored by the local runtime). Given for the whole
 * app and per runnable: the runnable's entries win, tolerations add up.
 */
export const KubernetesExtrasSchema = z
  .object({
    podLabels: z.record(z.string()).default({}),
    podAnnotations: z.record(z.string()).default({}),
    nodeSelector: z.record(z.string()).optional(),
    tolerations: z.array(TolerationSchema).optional(),
  })
  .strict();

/**
 * When an instance of a service counts as ready (and so the run as RUNNING): the announced port
 * accepts TCP connections, or answers an HTTP GET of `path` with 2xx/3xx.
 */
export const ReadinessSchema = z
  .object({
    port: z.string().min(1),
    path: z.string().startsWith('/', 'path is an absolute HTTP path like /health').optional(),
    period: duration.default('2s'),
    initialDelay: duration.default('0s'),
    failureThreshold: z.number().int().min(1).max(100).default(3),
  })
  .strict();

/** The smallest memory a Spark driver or executor container gets: Spark wants a heap of 450 MiB, and the heap is 75% of the limit. */
export const SPARK_MIN_MEMORY = '768Mi';
/** Bytes of a quantity, 0 when it is not one (its own check reports that). */
function bytesOrZero(quantity: string): number {
  try {
    return parseQuantityBytes(quantity);
  } catch {
    return 0;
  }
}
const sparkMemory = (what: string) =>
  memoryQuantity.refine((v) => bytesOrZero(v) === 0 || bytesOrZero(v) >= parseQuantityBytes(SPARK_MIN_MEMORY), {
    message: `${what} needs at least ${SPARK_MIN_MEMORY}: Spark refuses a heap under 450 MiB, and the JVM's heap is 75% of the container's memory`,
  });
const javaClassName = z.string().regex(/^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$/, 'a fully qualified Java class name, like com.example.SparkPi');

/**
 * Where a Spark conf key comes from when weft sets it: the user's `conf` may not set these
 * (the spec has a field for each, or weft must set them for the run to work).
 */
export const SPARK_CONF_SET_BY_WEFT: Readonly<Record<string, string>> = {
  'spark.master': 'weft: the cluster the run is on, or local[N] on the local runtime',
  'spark.submit.deployMode': 'weft: the driver runs in its own pod',
  'spark.kubernetes.namespace': "weft: the run's namespace",
  'spark.kubernetes.container.image': "weft: the runnable's image, by digest",
  'spark.kubernetes.driver.pod.name': "weft: the driver's pod",
  'spark.driver.host': "weft: the driver's pod address",
  'spark.executor.instances': 'spark.executors.instances',
  'spark.dynamicAllocation.enabled': 'spark.executors.min and max',
  'spark.dynamicAllocation.minExecutors': 'spark.executors.min',
  'spark.dynamicAllocation.maxExecutors': 'spark.executors.max',
  'spark.executor.cores': 'spark.executors.cores',
  'spark.executor.memory': 'spark.executors.resources.memory',
  'spark.executor.memoryOverhead': 'spark.executors.resources.memory',
  'spark.kubernetes.executor.request.cores': 'spark.executors.resources.cpu',
  'spark.kubernetes.executor.podTemplateFile': "weft: the executors' pod template (tolerations, pull secrets)",
  'spark.kubernetes.executor.podTemplateContainerName': "weft: the executors' pod template",
  'spark.kubernetes.executor.podNamePrefix': 'weft: executor pods are named <run id>-<runnable>-exec-<n>',
  'spark.kubernetes.executor.deleteOnTermination': 'weft: executor pods stay (with their logs) until the run is deleted',
};

export const SparkExecutorsSchema = z
  .object({
    /** A fixed number of executors. */
    instances: z.number().int().min(0).max(1000).optional(),
    /** Dynamic allocation: Spark scales the executors between min and max with the work queued. */
    min: z.number().int().min(0).max(1000).optional(),
    max: z.number().int().min(1).max(1000).optional(),
    /** Task slots per executor (spark.executor.cores). */
    cores: z.number().int().min(1).max(256).default(1),
    /** Each executor pod's CPU request and memory (its limit; Spark's heap and overhead are split from it). */
    resources: z
      .object({ cpu: cpuQuantity.default('500m'), memory: sparkMemory('an executor').default('1Gi') })
      .strict()
      .default({}),
  })
  .strict()
  .superRefine((e, ctx) => {
    const dynamic = e.min !== undefined || e.max !== undefined;
    if (dynamic && e.instances !== undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'give instances (a fixed count) or min and max (dynamic allocation), not both', path: ['instances'] });
    if (dynamic && (e.min === undefined || e.max === undefined)) ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'dynamic allocation needs both min and max', path: [e.min === undefined ? 'min' : 'max'] });
    if (e.min !== undefined && e.max !== undefined && e.min > e.max) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `min (${e.min}) is above max (${e.max})`, path: ['min'] });
  })
  .transform((e) => (e.instances === undefined && e.min === undefined ? { ...e, instances: 2 } : e));

/** A Spark program: its driver is the runnable's one instance (resources, args), and it asks for executors itself. */
export const SparkSchema = z
  .object({
    /** The program's main class (the image's entry point is weft's launcher). */
    mainClass: javaClassName,
    executors: SparkExecutorsSchema.default({}),
    /** Spark configuration (spark.* keys); weft's own keys are refused (SPARK_CONF_SET_BY_WEFT). */
    conf: z.record(z.union([z.string(), z.number(), z.boolean()]).transform(String)).default({}),
    /** Task threads on the local runtime (local[N]); default: executors x cores. */
    localThreads: z.number().int().min(1).max(256).optional(),
  })
  .strict()
  .superRefine((s, ctx) => {
    for (const key of Object.keys(s.conf)) {
      const from = SPARK_CONF_SET_BY_WEFT[key];
      if (from) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `${key} is set by ${from.startsWith('weft') ? from : `weft from ${from}`}: remove it from conf`, path: ['conf', key] });
      else if (key.startsWith('spark.kubernetes.executor.label.weft.io/') || key.startsWith('spark.kubernetes.executor.label.app.kubernetes.io/')) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, message: `${key}: weft's own labels tie the executors to the run: use kubernetes.podLabels for your labels`, path: ['conf', key] });
      }
    }
  });

const RUNNABLE_KINDS = ['batch', 'service', 'stateful', 'spark'] as const;

/** Kinds whose instances run to an end (a batch's instances, a Spark driver) rather than being kept up. */
export function runsToCompletion(kind: string): boolean {
  return kind === 'batch' || kind === 'spark';
}

const RunnableObject = z
  .object({
    name: runnableName,
    kind: z.enum(RUNNABLE_KINDS, {
      errorMap: () => ({ message: `kind must be one of ${RUNNABLE_KINDS.join(', ')}` }),
    }),
    image: z.string().min(1).optional(),
    build: BuildSchema.optional(),
    instances: z.number().int().min(0).max(10_000).default(1),
    resources: z.object({ cpu: cpuQuantity.optional(), memory: memoryQuantity.optional() }).strict().default({}),
    args: z.array(z.union([z.string(), z.number()]).transform(String)).default([]),
    env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'environment variable names are letters, digits and _'), z.union([z.string(), z.number(), z.boolean()]).transform(String)).default({}),
    ports: z.array(PortSchema).default([]),
    startTimeout: duration.optional(),
    storage: StorageSchema.optional(),
    /** Grace period for a graceful stop. */
    stopTimeout: duration.optional(),
    readiness: ReadinessSchema.optional(),
    kubernetes: KubernetesExtrasSchema.optional(),
    /** Only for kind: spark. */
    spark: SparkSchema.optional(),
  })
  .strict();

/** A runnable's resources: cpu 500m, and memory 256Mi (a Spark driver 1Gi: a Spark JVM needs more). */
function withDefaultResources<T extends { kind: string; resources: { cpu?: string; memory?: string } }>(r: T): Omit<T, 'resources'> & { resources: Resources } {
  return { ...r, resources: { cpu: r.resources.cpu ?? '500m', memory: r.resources.memory ?? (r.kind === 'spark' ? '1Gi' : '256Mi') } };
}

export const RunnableSchema = RunnableObject.transform(withDefaultResources)
  .superRefine((r, ctx) => {
    if (r.kind === 'spark') {
      if (!r.spark) ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'a runnable of kind spark needs a spark: section with at least mainClass', path: ['spark'] });
      if (r.instances !== 1) ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'a spark runnable has one instance, its driver: give the executors under spark.executors', path: ['instances'] });
      if (r.ports.length) ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'a spark runnable announces no ports (its driver and executors use their own)', path: ['ports'] });
      const memory = bytesOrZero(r.resources.memory);
      if (memory > 0 && memory < parseQuantityBytes(SPARK_MIN_MEMORY)) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, message: `the Spark driver needs at least ${SPARK_MIN_MEMORY}: Spark refuses a heap under 450 MiB, and the JVM's heap is 75% of the container's memory`, path: ['resources', 'memory'] });
      }
      if (r.build?.mainClass) ctx.addIssue({ code: z.ZodIssueCode.custom, message: "a spark runnable's main class is spark.mainClass (the image's entry point is weft's Spark launcher)", path: ['build', 'mainClass'] });
    } else if (r.spark) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'spark: is only for kind: spark', path: ['spark'] });
    }
    if (r.readiness && !r.ports.some((p) => p.name === r.readiness!.port)) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: `readiness.port "${r.readiness.port}" is not one of this runnable's ports (${r.ports.map((p) => p.name).join(', ') || 'none announced'})`, path: ['readiness', 'port'] });
    }
    if (r.readiness && runsToCompletion(r.kind)) ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'readiness is for kind: service or stateful', path: ['readiness'] });
    if (!r.image && !r.build) ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'give either image: <reference> or a build: section', path: ['image'] });
    if (r.image && r.build) ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'give image or build, not both', path: ['build'] });
    if (r.storage && r.kind !== 'stateful') ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'storage is only for kind: stateful', path: ['storage'] });
    const names = new Set<string>();
    r.ports.forEach((p, i) => {
      if (names.has(p.name)) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `duplicate port name "${p.name}"`, path: ['ports', i, 'name'] });
      names.add(p.name);
    });
  });

export const AppSpecSchema = z
  .object({
    name: appName,
    startTimeout: duration.default('5m'),
    stopTimeout: duration.default('30s'),
    namespace: dnsLabel.optional(),
    serviceAccount: z.string().optional(),
    imagePullSecrets: z.array(z.string()).default([]),
    labels: z.record(z.string()).default({}),
    /** Kubernetes extras for every runnable (each runnable's own `kubernetes:` adds to and overrides these). */
    kubernetes: KubernetesExtrasSchema.optional(),
    runnables: z.array(RunnableSchema).min(1, 'list at least one runnable under runnables:'),
  })
  .strict()
  .superRefine((app, ctx) => {
    const seen = new Set<string>();
    app.runnables.forEach((r, i) => {
      if (seen.has(r.name)) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `duplicate runnable name "${r.name}"`, path: ['runnables', i, 'name'] });
      seen.add(r.name);
    });
  });

export type AppSpec = z.output<typeof AppSpecSchema>;
export type AppSpecInput = z.input<typeof AppSpecSchema>;
export type RunnableSpec = z.output<typeof RunnableSchema>;
export type RunnableKind = RunnableSpec['kind'];
export type PortSpec = z.output<typeof PortSchema>;
export type KubernetesExtras = z.output<typeof KubernetesExtrasSchema>;
export type SparkSpec = z.output<typeof SparkSchema>;
export type SparkExecutors = z.output<typeof SparkExecutorsSchema>;
export type Readiness = z.output<typeof ReadinessSchema>;

/** WEFT_PORT_<NAME>: defined by the in-container contract (./contract), re-exported for importers of the spec. */
export { portEnvName } from './contract/environment.js';

/** The Kubernetes extras that apply to runnable `r`: the app's, then the runnable's on top. */
export function kubernetesExtrasFor(app: AppSpec, r: RunnableSpec): KubernetesExtras {
  const a = app.kubernetes;
  const own = r.kubernetes;
  const nodeSelector = a?.nodeSelector || own?.nodeSelector ? { ...a?.nodeSelector, ...own?.nodeSelector } : undefined;
  const tolerations = a?.tolerations || own?.tolerations ? [...(a?.tolerations ?? []), ...(own?.tolerations ?? [])] : undefined;
  return {
    podLabels: { ...a?.podLabels, ...own?.podLabels },
    podAnnotations: { ...a?.podAnnotations, ...own?.podAnnotations },
    nodeSelector,
    tolerations,
  };
}
export type Resources = z.output<typeof ResourcesSchema>;

function formatIssues(error: z.ZodError, source: string): string {
  const lines = error.issues.map((issue) => {
    const where = issue.path.length ? issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`)).join('').replace(/^\./, '') : '(top level)';
    let message = issue.message;
    if (issue.code === z.ZodIssueCode.unrecognized_keys) message = `unknown field(s) ${issue.keys.map((k) => `"${k}"`).join(', ')}: remove or fix the spelling`;
    if (issue.code === z.ZodIssueCode.invalid_type && issue.received === 'undefined') message = `required: add ${issue.path[issue.path.length - 1] ?? 'it'} (${issue.expected})`;
    return `  ${where}: ${message}`;
  });
  return `invalid app spec ${source}:\n${lines.join('\n')}`;
}

/** Validates a parsed spec object; throws SpecError listing every problem. */
export function parseAppSpec(input: unknown, source = '(inline)'): AppSpec {
  const result = AppSpecSchema.safeParse(input);
  if (!result.success) throw new SpecError(formatIssues(result.error, source));
  return result.data;
}

export function parseAppSpecYaml(text: string, source = '(inline)'): AppSpec {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (error) {
    throw new SpecError(`${source} is not valid YAML: ${(error as Error).message}`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new SpecError(`${source} must be a YAML mapping with name: and runnables:`);
  return parseAppSpec(doc, source);
}

export async function loadAppSpec(file: string): Promise<AppSpec> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new SpecError(`cannot read app spec ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  const spec = parseAppSpecYaml(text, file);
  // Paths in build: sections are relative to the weft.yaml, not to the working directory.
  const base = dirname(resolve(file));
  for (const r of spec.runnables) {
    if (r.build) {
      r.build.jar = resolve(base, r.build.jar);
      r.build.libs = r.build.libs.map((l) => resolve(base, l));
    }
  }
  return spec;
}

/** The start timeout in ms that applies to a runnable. */
export function startTimeoutOf(app: AppSpec, runnable: RunnableSpec): number {
  return runnable.startTimeout ?? app.startTimeout;
}
