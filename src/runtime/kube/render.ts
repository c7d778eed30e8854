// Renders a run into Kubernetes objects. Pure: no API calls, so it is unit-tested directly.
//
// One ConfigMap named after the run id is the ROOT: it holds the spec, the
// run's files and its deadline, and every other object the run creates names
// it in ownerReferences, so deleting the root deletes the whole run.
import { createHash } from 'node:crypto';
import type {
  V1ConfigMap,
  V1Container,
  V1Deployment,
  V1EnvVar,
  V1Job,
  V1ObjectMeta,
  V1OwnerReference,
  V1Pod,
  V1PodTemplateSpec,
  V1Role,
  V1RoleBinding,
  V1ServiceAccount,
  V1Service,
  V1StatefulSet,
  V1Probe,
  V1Volume,
  V1VolumeMount,
} from '@kubernetes/client-node';
import type { RunFile, RunRequest } from '../api.js';
import {
  ANN_COMMAND_PREFIX,
  ANN_KIND,
  COMMANDS_FILE,
  ENV,
  FILES_PATH,
  instanceAnnotations,
  LABEL_APP,
  LABEL_MANAGED_BY,
  LABEL_NAME,
  LABEL_RUN_ID,
  LABEL_RUNNABLE,
  MANAGED_BY,
  PODINFO_PATH,
  portEnvironment,
  runLabels,
  runnableEnvironment,
} from '../contract/index.js';
import { kubernetesExtrasFor, runsToCompletion, startTimeoutOf, type AppSpec, type Readiness, type RunnableSpec } from '../spec.js';
import {
  driverArgs,
  driverPodName,
  DRIVER_RULES,
  EXECUTOR_TEMPLATE_FILE,
  executorPodTemplate,
  kubernetesSparkConf,
  POD_IP_ENV,
  requireSpark,
  SPARK_DIR,
  SPARK_ROLE_LABEL,
} from '../spark/index.js';

// The labels, annotations and paths a program sees are the in-container contract's (one home, ../contract).
export { ANN_COMMAND_PREFIX, ANN_KIND, FILES_PATH, LABEL_APP, LABEL_MANAGED_BY, LABEL_NAME, LABEL_RUN_ID, LABEL_RUNNABLE, MANAGED_BY, PODINFO_PATH, runLabels };
export const LABEL_ROLE = 'weft.io/role';
export const ANN_START_DEADLINE = 'weft.io/start-deadline';
export const ANN_CREATED = 'weft.io/created';
/** A digest of the request a root was created for: a resumed submission must be the same request. */
export const ANN_SUBMISSION = 'weft.io/submission';
export const ANN_STATE = 'weft.io/state';
export const ANN_MESSAGE = 'weft.io/message';
export const ANN_REASON = 'weft.io/reason';
export const ANN_EXIT_CODE = 'weft.io/exit-code';
export const ANN_STOP = 'weft.io/stop-requested';
export const ANN_INSTANCES = 'weft.io/instances';
export const MAIN_CONTAINER = 'main';
export const SPEC_KEY = 'spec.json';
export const MAX_FILES_BYTES = 900 * 1024;

/** Selector matching every object weft creates. */
export const MANAGED_SELECTOR = `${LABEL_MANAGED_BY}=${MANAGED_BY}`;

export interface RenderOptions {
  namespace: string;
  /** Time the run is submitted (ms since epoch); the start deadline counts from it. */
  now?: number;
  /** Image to use per runnable when the spec says `build:` (set after building). */
  images?: Record<string, string>;
}

export interface RenderedRun {
  root: V1ConfigMap;
  jobs: V1Job[];
  deployments: V1Deployment[];
  statefulSets: V1StatefulSet[];
  services: V1Service[];
  /** Spark drivers: bare pods owned by the root (Spark makes each driver's executors its own dependents). */
  pods: V1Pod[];
  /** The Spark drivers' service account and what it may do in the namespace (when the app names no account). */
  serviceAccounts: V1ServiceAccount[];
  roles: V1Role[];
  roleBindings: V1RoleBinding[];
}

export function workloadName(runId: string, runnable: string): string {
  return `${runId}-${runnable}`;
}

function fileKey(file: RunFile): string {
  return `file.${file.runnable ?? '_'}.${file.name}`;
}

/** The root's key holding a Spark runnable's executor pod template. */
export function sparkTemplateKey(runnable: string): string {
  return `spark.${runnable}.${EXECUTOR_TEMPLATE_FILE}`;
}

/** The service account weft makes for a run's Spark drivers. */
export function sparkServiceAccountName(runId: string): string {
  return `${runId}-spark`;
}

/** The owner reference every child carries (filled in once the root exists and has a uid). */
export function ownerReferenceTo(root: V1ConfigMap): V1OwnerReference {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    name: root.metadata!.name!,
    uid: root.metadata!.uid!,
    controller: false,
    blockOwnerDeletion: true,
  };
}

function envFor(app: AppSpec, runId: string, r: RunnableSpec): V1EnvVar[] {
  const field = (fieldPath: string): Pick<V1EnvVar, 'valueFrom'> => ({ valueFrom: { fieldRef: { fieldPath } } });
  // Per-pod values come from the downward API: the pod's index (batch, stateful) or its name.
  const instanceId: Pick<V1EnvVar, 'value' | 'valueFrom'> =
    r.kind === 'batch'
      ? field("metadata.annotations['batch.kubernetes.io/job-completion-index']")
      : r.kind === 'stateful'
        ? field("metadata.labels['apps.kubernetes.io/pod-index']")
        : r.kind === 'spark'
          ? { value: 'driver' }
          : field('metadata.name');
  const shared = runnableEnvironment({ runtime: 'kubernetes', runId, app: app.name, runnable: r.name, instanceCount: r.instances, commandsFile: COMMANDS_FILE, filesDir: FILES_PATH });
  const env: V1EnvVar[] = [
    ...Object.entries(shared).map(([name, value]) => ({ name, value })),
    { name: ENV.instanceId, ...instanceId },
    { name: ENV.podName, ...field('metadata.name') },
    { name: ENV.namespace, ...field('metadata.namespace') },
    ...Object.entries(portEnvironment(Object.fromEntries(r.ports.map((p) => [p.name, p.port])))).map(([name, value]) => ({ name, value })),
  ];
  if (r.kind === 'spark') env.push({ name: POD_IP_ENV, ...field('status.podIP') });
  for (const [name, value] of Object.entries(r.env)) env.push({ name, value });
  return env;
}

function readinessProbe(readiness: Readiness): V1Probe {
  const seconds = (ms: number) => Math.max(1, Math.ceil(ms / 1000));
  return {
    ...(readiness.path ? { httpGet: { port: readiness.port, path: readiness.path } } : { tcpSocket: { port: readiness.port } }),
    periodSeconds: seconds(readiness.period),
    initialDelaySeconds: Math.ceil(readiness.initialDelay / 1000),
    failureThreshold: readiness.failureThreshold,
    timeoutSeconds: 1,
  };
}

function podTemplate(app: AppSpec, req: RunRequest, r: RunnableSpec, image: string, rootName: string): V1PodTemplateSpec {
  const labels = runLabels(req.runId, app.name, r.name);
  const files = req.files.filter((f) => f.runnable === undefined || f.runnable === r.name);
  const volumes: V1Volume[] = [
    {
      name: 'podinfo',
      downwardAPI: { items: [{ path: 'annotations', fieldRef: { fieldPath: 'metadata.annotations' } }, { path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } }] },
    },
  ];
  const mounts: V1VolumeMount[] = [{ name: 'podinfo', mountPath: PODINFO_PATH, readOnly: true }];
  if (files.length) {
    volumes.push({ name: 'files', configMap: { name: rootName, items: files.map((f) => ({ key: fileKey(f), path: f.name })) } });
    mounts.push({ name: 'files', mountPath: FILES_PATH, readOnly: true });
  }
  if (r.kind === 'stateful' && r.storage) mounts.push({ name: 'data', mountPath: r.storage.mountPath });
  const extras = kubernetesExtrasFor(app, r);
  const container: V1Container = {
    name: MAIN_CONTAINER,
    image,
    args: r.args.length ? r.args : undefined,
    env: envFor(app, req.runId, r),
    resources: {
      requests: { cpu: r.resources.cpu, memory: r.resources.memory },
      limits: { memory: r.resources.memory },
    },
    ports: r.ports.length ? r.ports.map((p) => ({ name: p.name, containerPort: p.port, protocol: p.protocol })) : undefined,
    volumeMounts: mounts,
    readinessProbe: r.readiness ? readinessProbe(r.readiness) : undefined,
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
  const stopMs = r.stopTimeout ?? app.stopTimeout;
  return {
    metadata: {
      labels: { ...extras.podLabels, ...labels },
      annotations: { ...extras.podAnnotations, ...instanceAnnotations(r.kind) },
    },
    spec: {
      containers: [container],
      restartPolicy: runsToCompletion(r.kind) ? 'Never' : 'Always',
      nodeSelector: extras.nodeSelector,
      tolerations: extras.tolerations,
      serviceAccountName: app.serviceAccount,
      imagePullSecrets: app.imagePullSecrets.length ? app.imagePullSecrets.map((name) => ({ name })) : undefined,
      terminationGracePeriodSeconds: Math.ceil(stopMs / 1000),
      volumes,
    },
  };
}

function childMeta(app: AppSpec, req: RunRequest, r: RunnableSpec, namespace: string, name: string): V1ObjectMeta {
  return {
    name,
    namespace,
    labels: { ...app.labels, ...runLabels(req.runId, app.name, r.name) },
    annotations: { [ANN_KIND]: r.kind, [ANN_INSTANCES]: String(r.instances) },
  };
}

/**
 * What identifies a request, whenever it is rendered: the run id, the resolved spec and the files' contents
 * (not the time: a resumed submission renders again later).
 */
export function submissionDigest(req: RunRequest): string {
  const files = req.files.map((f) => ({ name: f.name, runnable: f.runnable ?? null, sha256: createHash('sha256').update(f.data).digest('hex') }));
  return `sha256:${createHash('sha256').update(JSON.stringify({ runId: req.runId, spec: req.spec, files })).digest('hex')}`;
}

/** Renders every object of a run. Children have no ownerReferences yet: call `adopt` with the created root. */
export function renderRun(req: RunRequest, options: RenderOptions): RenderedRun {
  const app = req.spec;
  const now = options.now ?? Date.now();
  const ns = options.namespace;
  const rootName = req.runId;
  const deadlineMs = Math.max(...app.runnables.map((r) => startTimeoutOf(app, r)));
  const fileBytes = req.files.reduce((n, f) => n + f.data.length, 0);
  if (fileBytes > MAX_FILES_BYTES) {
    throw new Error(`the run's files total ${fileBytes} bytes; Kubernetes keeps them in a ConfigMap, which holds at most ${MAX_FILES_BYTES} bytes: put large files into the image instead`);
  }
  const binaryData: Record<string, string> = {};
  for (const f of req.files) binaryData[fileKey(f)] = f.data.toString('base64');
  const root: V1ConfigMap = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: rootName,
      namespace: ns,
      labels: { ...app.labels, ...runLabels(req.runId, app.name), [LABEL_ROLE]: 'root' },
      annotations: {
        [ANN_CREATED]: new Date(now).toISOString(),
        [ANN_START_DEADLINE]: new Date(now + deadlineMs).toISOString(),
        [ANN_SUBMISSION]: submissionDigest(req),
      },
    },
    data: { [SPEC_KEY]: JSON.stringify(app) },
    binaryData: Object.keys(binaryData).length ? binaryData : undefined,
  };
  const out: RenderedRun = { root, jobs: [], deployments: [], statefulSets: [], services: [], pods: [], serviceAccounts: [], roles: [], roleBindings: [] };
  for (const r of app.runnables) {
    const image = r.image ?? options.images?.[r.name];
    if (!image) throw new Error(`runnable ${r.name} has a build: section but no image was built for it`);
    const name = workloadName(req.runId, r.name);
    const template = podTemplate(app, req, r, image, rootName);
    const selector = { matchLabels: { [LABEL_RUN_ID]: req.runId, [LABEL_RUNNABLE]: r.name } };
    if (r.kind === 'spark') {
      renderSparkDriver(out, app, req, r, image, template, ns);
    } else if (r.kind === 'batch') {
      out.jobs.push({
        apiVersion: 'batch/v1',
        kind: 'Job',
        metadata: childMeta(app, req, r, ns, name),
        spec: {
          backoffLimit: 0,
          completionMode: 'Indexed',
          completions: r.instances,
          parallelism: r.instances,
          suspend: false,
          template,
        },
      });
    } else if (r.kind === 'service') {
      out.deployments.push({
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: childMeta(app, req, r, ns, name),
        spec: { replicas: r.instances, selector, template },
      });
    } else {
      out.statefulSets.push({
        apiVersion: 'apps/v1',
        kind: 'StatefulSet',
        metadata: childMeta(app, req, r, ns, name),
        spec: {
          replicas: r.instances,
          serviceName: name,
          podManagementPolicy: 'Parallel',
          selector,
          template,
          volumeClaimTemplates: r.storage
            ? [
                {
                  metadata: { name: 'data', labels: runLabels(req.runId, app.name, r.name) },
                  spec: {
                    accessModes: ['ReadWriteOnce'],
                    storageClassName: r.storage.storageClass,
                    resources: { requests: { storage: r.storage.size } },
                  },
                },
              ]
            : undefined,
          persistentVolumeClaimRetentionPolicy: { whenDeleted: 'Delete', whenScaled: 'Retain' },
        },
      });
    }
    if (r.ports.length || r.kind === 'stateful') {
      out.services.push({
        apiVersion: 'v1',
        kind: 'Service',
        metadata: childMeta(app, req, r, ns, name),
        spec: {
          selector: selector.matchLabels,
          clusterIP: r.kind === 'stateful' ? 'None' : undefined,
          publishNotReadyAddresses: r.kind === 'stateful' ? true : undefined,
          ports: r.ports.map((p) => ({ name: p.name, port: p.port, targetPort: p.port, protocol: p.protocol })),
        },
      });
    }
  }
  return out;
}

/**
 * A Spark runnable: its driver as a bare pod (the run's only instance of it; Spark makes the
 * executors it asks for dependents of this pod), the executors' pod template in the root, and,
 * unless the app names a service account, one for the run's drivers with just what Spark needs.
 */
function renderSparkDriver(out: RenderedRun, app: AppSpec, req: RunRequest, r: RunnableSpec, image: string, template: V1PodTemplateSpec, ns: string): void {
  const spark = requireSpark(r);
  const extras = kubernetesExtrasFor(app, r);
  out.root.data![sparkTemplateKey(r.name)] = JSON.stringify(executorPodTemplate(extras, app.imagePullSecrets));
  const conf = kubernetesSparkConf({ runId: req.runId, app: app.name, runnable: r, namespace: ns, image, extras });
  const spec = template.spec!;
  const container = spec.containers[0];
  container.args = driverArgs(conf, spark.mainClass, r.args);
  container.ports = [{ name: 'driver', containerPort: Number(conf['spark.driver.port']) }, { name: 'block-manager', containerPort: Number(conf['spark.driver.blockManager.port']) }];
  container.volumeMounts!.push({ name: 'spark', mountPath: SPARK_DIR, readOnly: true });
  spec.volumes!.push({ name: 'spark', configMap: { name: req.runId, items: [{ key: sparkTemplateKey(r.name), path: EXECUTOR_TEMPLATE_FILE }] } });
  const account = app.serviceAccount ?? sparkServiceAccountName(req.runId);
  spec.serviceAccountName = account;
  if (!app.serviceAccount && out.serviceAccounts.length === 0) {
    const meta = (): V1ObjectMeta => ({ name: account, namespace: ns, labels: { ...app.labels, ...runLabels(req.runId, app.name) } });
    out.serviceAccounts.push({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta() });
    out.roles.push({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: meta(), rules: DRIVER_RULES.map((rule) => ({ ...rule })) });
    out.roleBindings.push({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: meta(),
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: account },
      subjects: [{ kind: 'ServiceAccount', name: account, namespace: ns }],
    });
  }
  out.pods.push({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      ...template.metadata,
      name: driverPodName(req.runId, r.name),
      namespace: ns,
      labels: { ...app.labels, ...template.metadata!.labels, [SPARK_ROLE_LABEL]: 'driver' },
    },
    spec,
  });
}

/** Sets the owner reference to the created root on every child. */
export function adopt(run: RenderedRun, root: V1ConfigMap): void {
  const ref = ownerReferenceTo(root);
  for (const obj of [...run.jobs, ...run.deployments, ...run.statefulSets, ...run.services, ...run.pods, ...run.serviceAccounts, ...run.roles, ...run.roleBindings]) {
    obj.metadata!.ownerReferences = [ref];
  }
}
