// The Kubernetes backend of the runtime SPI.
import { createInterface } from 'node:readline';
import { PassThrough } from 'node:stream';
import {
  ApiException,
  AppsV1Api,
  BatchV1Api,
  CustomObjectsApi,
  CoreV1Api,
  KubeConfig,
  Log,
  PatchStrategy,
  RbacAuthorizationV1Api,
  setHeaderOptions,
  type V1ConfigMap,
  type V1Pod,
} from '@kubernetes/client-node';
import type {
  Endpoint,
  KubernetesRuntimeOptions,
  LogLine,
  LogOptions,
  ResourceReport,
  RunRequest,
  RunStatus,
  Runtime,
  StatusListener,
} from '../api.js';
import { resolveBuilds } from '../build/index.js';
import { commandAnnotation } from '../contract/index.js';
import { KubeConfigError, loadKubeConfig as loadSharedKubeConfig } from '../../kube-client/index.js';
import { RunIdTakenError } from '../runid.js';
import { startTimeoutOf, type AppSpec } from '../spec.js';
import { isTerminal } from '../state.js';
import { instanceIdOf, podInstance, specOf, type Derived } from './derive.js';
import {
  adopt,
  ANN_EXIT_CODE,
  ANN_MESSAGE,
  ANN_REASON,
  ANN_START_DEADLINE,
  ANN_STATE,
  ANN_STOP,
  ANN_SUBMISSION,
  LABEL_RUN_ID,
  LABEL_RUNNABLE,
  MAIN_CONTAINER,
  MANAGED_SELECTOR,
  renderRun,
  workloadName,
  type RenderedRun,
} from './render.js';
import { Tracker } from './tracker.js';
import { driverPodName, isSparkExecutor } from '../spark/index.js';
import { readPodUsage } from './usage.js';

export class KubeError extends Error {
  override name = 'KubeError';
}

/** The apiserver's own message from an ApiException (its body is a Status object). */
export function apiMessage(error: unknown): string {
  if (error instanceof ApiException) {
    const body = error.body as unknown;
    try {
      const parsed = typeof body === 'string' ? JSON.parse(body) : body;
      if (parsed && typeof parsed === 'object' && 'message' in parsed) return String((parsed as { message: unknown }).message);
    } catch {
      // fall through
    }
    return `HTTP ${error.code}: ${typeof body === 'string' ? body.slice(0, 300) : error.message}`;
  }
  const e = error as { code?: string; message?: string; cause?: { code?: string } };
  return e?.message ?? String(error);
}

function isNotFound(error: unknown): boolean {
  return error instanceof ApiException && error.code === 404;
}

/** A create refused because the name is taken (409 AlreadyExists, not a 409 Conflict on an update). */
function isAlreadyExists(error: unknown): boolean {
  if (!(error instanceof ApiException) || error.code !== 409) return false;
  const body = error.body as unknown;
  try {
    const parsed = typeof body === 'string' ? JSON.parse(body) : body;
    return (parsed as { reason?: string } | undefined)?.reason === 'AlreadyExists';
  } catch {
    return false;
  }
}

/** Loads a kubeconfig the way kubectl does (the shared loader), its errors as KubeErrors. */
export function loadKubeConfig(options: { kubeconfig?: string; context?: string }): KubeConfig {
  try {
    return loadSharedKubeConfig(options);
  } catch (error) {
    throw error instanceof KubeConfigError ? new KubeError(error.message) : error;
  }
}

/** Strips skopeo's docker:// prefix; other transports cannot be pulled by a kubelet. */
export function kubeImage(image: string, runnable: string): string {
  if (image.startsWith('docker://')) return image.slice('docker://'.length);
  if (/^(oci|docker-archive|oci-archive|dir|containers-storage):/.test(image)) {
    throw new KubeError(`runnable ${runnable}: image ${image} is not in a registry; push it first (weft push) and use its registry reference`);
  }
  return image;
}

/** The container whose log is the instance's: weft's main one (a pod made by another controller, like a Spark executor, may name it otherwise). */
function logContainer(pod: V1Pod): string {
  const names = pod.spec?.containers?.map((c) => c.name) ?? [];
  return names.includes(MAIN_CONTAINER) || names.length === 0 ? MAIN_CONTAINER : names[0];
}

/**
 * A registry reference pinned by digest: the digest the registry serves for its tag now. When the
 * registry cannot be asked from here (credentials, network), the tag is kept: the kubelet resolves it.
 */
async function pinImage(image: string): Promise<string> {
  if (image.includes('@sha256:')) return image;
  try {
    const { parseImageReference, formatDockerReference } = await import('../../image/reference.js');
    const { createRemoteTransport } = await import('../../registry/client/index.js');
    const ref = parseImageReference(`docker://${image}`);
    if (ref.transport !== 'docker') return image;
    const handle = await createRemoteTransport().open(ref.ref);
    return formatDockerReference({ ...ref.ref, tag: undefined, digest: handle.manifestDigest });
  } catch (error) {
    if (process.env.WEFT_DEBUG) process.stderr.write(`[weft kube] cannot pin ${image} by digest: ${(error as Error).message}\n`);
    return image;
  }
}

interface Counter {
  total: number;
  byKind: Record<string, number>;
}

export class KubeRuntime implements Runtime {
  readonly name = 'kubernetes' as const;
  readonly namespace: string;
  readonly core: CoreV1Api;
  readonly batch: BatchV1Api;
  readonly apps: AppsV1Api;
  readonly custom: CustomObjectsApi;
  readonly rbac: RbacAuthorizationV1Api;
  readonly tracker: Tracker;
  /** API requests made by this runtime (lists, watches, writes), for benchmarks. */
  readonly requests: Counter = { total: 0, byKind: {} };
  private trackerStarted: Promise<void> | undefined;
  private readonly errors: unknown[] = [];

  constructor(readonly kubeConfig: KubeConfig, options: KubernetesRuntimeOptions) {
    const contextNamespace = kubeConfig.getContextObject(kubeConfig.getCurrentContext())?.namespace;
    this.namespace = options.namespace ?? contextNamespace ?? 'default';
    this.core = kubeConfig.makeApiClient(CoreV1Api);
    this.batch = kubeConfig.makeApiClient(BatchV1Api);
    this.apps = kubeConfig.makeApiClient(AppsV1Api);
    this.custom = kubeConfig.makeApiClient(CustomObjectsApi);
    this.rbac = kubeConfig.makeApiClient(RbacAuthorizationV1Api);
    this.tracker = new Tracker({
      kubeConfig,
      namespace: this.namespace,
      resyncMs: options.resyncMs,
      onRequest: (kind) => this.count(kind),
      onTerminal: (derived, root) => void this.recordTerminal(derived, root),
      onError: (error) => {
        this.errors.push(error);
        if (this.errors.length > 100) this.errors.shift();
        if (process.env.WEFT_DEBUG) process.stderr.write(`[weft kube] ${apiMessage(error)}\n`);
      },
    });
  }

  private count(kind: string): void {
    this.requests.total++;
    this.requests.byKind[kind] = (this.requests.byKind[kind] ?? 0) + 1;
  }

  /** Fails with a clear message when the cluster cannot be reached. */
  async probe(): Promise<void> {
    try {
      this.count('list');
      await this.core.listNamespacedConfigMap({ namespace: this.namespace, limit: 1, labelSelector: MANAGED_SELECTOR });
    } catch (error) {
      const server = this.kubeConfig.getCurrentCluster()?.server;
      throw new KubeError(`cannot reach the Kubernetes API at ${server} (namespace ${this.namespace}): ${apiMessage(error)}`);
    }
  }

  private ensureTracking(): Promise<void> {
    this.trackerStarted ??= this.tracker.start();
    return this.trackerStarted;
  }

  /** The objects `submit` creates for a request (children without their owner reference yet), and the spec as resolved. */
  async render(request: RunRequest): Promise<{ spec: AppSpec; rendered: RenderedRun }> {
    // The Runner resolved build: sections already; this covers callers of the SPI alone (the master).
    const built = await resolveBuilds(request.spec);
    const spec = { ...built, runnables: built.runnables.map((r) => ({ ...r, image: kubeImage(r.image!, r.name) })) };
    // A Spark driver's executors run its image: pinned by digest, so a tag moved meanwhile cannot split them.
    for (const r of spec.runnables) if (r.kind === 'spark') r.image = await pinImage(r.image);
    return { spec, rendered: renderRun({ ...request, spec }, { namespace: this.namespace }) };
  }

  async submit(request: RunRequest): Promise<RunStatus> {
    const { spec, rendered } = await this.render(request);
    const rejected = (message: string): RunStatus => ({
      runId: request.runId,
      app: spec.name,
      runtime: 'kubernetes',
      state: 'REJECTED',
      message,
      namespace: this.namespace,
      runnables: [],
    });
    let root: V1ConfigMap;
    try {
      this.count('create');
      root = await this.core.createNamespacedConfigMap({ namespace: this.namespace, body: rendered.root });
    } catch (error) {
      if (isAlreadyExists(error)) {
        // The same request cut short earlier (its submitter died midway): complete it. Another run's root: never touch it.
        const earlier = request.resumable ? await this.earlierSubmission(request.runId, rendered.root) : undefined;
        if (!earlier) throw new RunIdTakenError(request.runId, `ConfigMap ${request.runId} already exists in namespace ${this.namespace}`);
        root = earlier;
      } else {
        if (isNotFound(error)) return rejected(`namespace ${this.namespace} does not exist: create it (kubectl create namespace ${this.namespace}) or pass --namespace`);
        return rejected(`the cluster refused the run: ${apiMessage(error)}`);
      }
    }
    adopt(rendered, root);
    try {
      const namespace = this.namespace;
      // In dependency order: a Spark driver's account and role before its pod, Services before workloads.
      const creations: Array<() => Promise<unknown>> = [
        ...rendered.serviceAccounts.map((body) => () => this.core.createNamespacedServiceAccount({ namespace, body })),
        ...rendered.roles.map((body) => () => this.rbac.createNamespacedRole({ namespace, body })),
        ...rendered.roleBindings.map((body) => () => this.rbac.createNamespacedRoleBinding({ namespace, body })),
        ...rendered.pods.map((body) => () => this.core.createNamespacedPod({ namespace, body })),
        ...rendered.services.map((body) => () => this.core.createNamespacedService({ namespace, body })),
        ...rendered.statefulSets.map((body) => () => this.apps.createNamespacedStatefulSet({ namespace, body })),
        ...rendered.deployments.map((body) => () => this.apps.createNamespacedDeployment({ namespace, body })),
        ...rendered.jobs.map((body) => () => this.batch.createNamespacedJob({ namespace, body })),
      ];
      for (const create of creations) {
        this.count('create');
        // For a resumable request, an object that exists was created by another attempt at it (its names are the
        // run's own, and the caller's store made the id unique): a dead one's, or a live one's racing this one.
        await create().catch((error) => {
          if (!(request.resumable && isAlreadyExists(error))) throw error;
        });
      }
    } catch (error) {
      // Nothing partial stays behind: the root owns whatever was created. The uid precondition
      // makes sure only this submission's root is deleted, never a run that took the name since.
      await this.deleteRoot(request.runId, 0, root.metadata?.uid).catch(() => undefined);
      // A leftover object of an earlier run with this id (e.g. still being garbage-collected): not ours to adopt.
      if (isAlreadyExists(error)) throw new RunIdTakenError(request.runId, `an object of the run already exists: ${apiMessage(error)}`);
      return rejected(`the cluster refused an object of the run: ${apiMessage(error)}`);
    }
    return {
      runId: request.runId,
      app: spec.name,
      runtime: 'kubernetes',
      state: 'PENDING',
      message: 'submitted',
      createdAt: root.metadata?.annotations?.['weft.io/created'],
      namespace: this.namespace,
      runnables: spec.runnables.map((r) => ({ name: r.name, kind: r.kind, desired: r.instances, running: 0, instances: [] })),
    };
  }

  /**
   * The root an earlier, cut-short submission of the same request created (its digest matches and it is not
   * being deleted), or undefined: then the id belongs to another run.
   */
  private async earlierSubmission(runId: string, wanted: V1ConfigMap): Promise<V1ConfigMap | undefined> {
    const existing = await this.requireRoot(runId).catch(() => undefined);
    const digest = existing?.metadata?.annotations?.[ANN_SUBMISSION];
    if (!existing || existing.metadata?.deletionTimestamp || !digest || digest !== wanted.metadata?.annotations?.[ANN_SUBMISSION]) return undefined;
    return existing;
  }

  async status(runId: string): Promise<RunStatus | undefined> {
    await this.ensureTracking();
    return this.tracker.snapshot(runId);
  }

  async list(filter?: { app?: string; liveOnly?: boolean }): Promise<RunStatus[]> {
    await this.ensureTracking();
    return this.tracker
      .all()
      .filter((s) => (!filter?.app || s.app === filter.app) && (!filter?.liveOnly || !isTerminal(s.state)))
      .sort((a, b) => (a.createdAt ?? '').localeCompare(b.createdAt ?? ''));
  }

  watch(listener: StatusListener): () => void {
    void this.ensureTracking().catch(() => undefined);
    return this.tracker.onStatus(listener);
  }

  private async requireRoot(runId: string): Promise<V1ConfigMap> {
    try {
      this.count('get');
      return await this.core.readNamespacedConfigMap({ name: runId, namespace: this.namespace });
    } catch (error) {
      if (isNotFound(error)) throw new KubeError(`no run ${runId} in namespace ${this.namespace} (weft list shows the runs)`);
      throw new KubeError(`cannot read run ${runId}: ${apiMessage(error)}`);
    }
  }

  private async patchRootAnnotations(runId: string, annotations: Record<string, string | null>): Promise<void> {
    this.count('patch');
    await this.core.patchNamespacedConfigMap(
      { name: runId, namespace: this.namespace, body: { metadata: { annotations } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  private async deleteRoot(runId: string, gracePeriodSeconds?: number, uid?: string): Promise<void> {
    this.count('delete');
    await this.core.deleteNamespacedConfigMap({
      name: runId,
      namespace: this.namespace,
      gracePeriodSeconds,
      propagationPolicy: 'Foreground',
      body: uid ? { preconditions: { uid } } : undefined,
    });
  }

  private async podsOf(runId: string, runnable?: string): Promise<V1Pod[]> {
    this.count('list');
    const selector = `${LABEL_RUN_ID}=${runId}${runnable ? `,${LABEL_RUNNABLE}=${runnable}` : ''}`;
    const list = await this.core.listNamespacedPod({ namespace: this.namespace, labelSelector: selector });
    return list.items;
  }

  private async deletePods(pods: V1Pod[], gracePeriodSeconds?: number): Promise<void> {
    await Promise.all(
      pods.map(async (pod) => {
        try {
          this.count('delete');
          await this.core.deleteNamespacedPod({ name: pod.metadata!.name!, namespace: this.namespace, gracePeriodSeconds });
        } catch (error) {
          if (!isNotFound(error)) throw error;
        }
      }),
    );
  }

  async stop(runId: string, options?: { gracePeriodMs?: number }): Promise<void> {
    await this.requireRoot(runId);
    const grace = options?.gracePeriodMs === undefined ? undefined : Math.ceil(options.gracePeriodMs / 1000);
    await this.patchRootAnnotations(runId, { [ANN_STOP]: new Date().toISOString() });
    if (grace !== undefined) await this.deletePods(await this.podsOf(runId), grace);
    try {
      await this.deleteRoot(runId, grace);
    } catch (error) {
      if (!isNotFound(error)) throw new KubeError(`cannot stop run ${runId}: ${apiMessage(error)}`);
    }
  }

  async kill(runId: string): Promise<void> {
    const root = await this.requireRoot(runId);
    await this.patchRootAnnotations(runId, { [ANN_STOP]: new Date().toISOString() });
    // Grace 0 before anything else: the pod objects go at once and the kubelet gives the program only its
    // 2 s minimum between SIGTERM and SIGKILL (Kubernetes has no way to skip SIGTERM). Scaling first would let
    // the workload's controller delete the pods with their full grace period before this delete arrives.
    const first = await this.podsOf(runId);
    await this.deletePods(first, 0);
    // Then workloads to 0, so no controller keeps replacing them, and replacements made meanwhile go the same way.
    await Promise.all((specOf(root)?.runnables ?? []).filter((r) => r.kind !== 'spark').map((r) => this.scale(runId, r.name, 0).catch(() => undefined)));
    const deleted = new Set(first.map((p) => p.metadata?.uid));
    await this.deletePods((await this.podsOf(runId)).filter((p) => !deleted.has(p.metadata?.uid)), 0);
    try {
      await this.deleteRoot(runId, 0);
    } catch (error) {
      if (!isNotFound(error)) throw new KubeError(`cannot kill run ${runId}: ${apiMessage(error)}`);
    }
  }

  private async runnableKind(runId: string, runnable: string): Promise<{ kind: string; root: V1ConfigMap }> {
    const root = await this.requireRoot(runId);
    const spec = specOf(root);
    const r = spec?.runnables.find((x) => x.name === runnable);
    if (!r) throw new KubeError(`run ${runId} has no runnable "${runnable}"${spec ? `: it has ${spec.runnables.map((x) => x.name).join(', ')}` : ''}`);
    return { kind: r.kind, root };
  }

  async scale(runId: string, runnable: string, instances: number): Promise<void> {
    if (!Number.isInteger(instances) || instances < 0) throw new KubeError(`instances must be a whole number >= 0, got ${instances}`);
    const { kind } = await this.runnableKind(runId, runnable);
    if (kind === 'spark') throw new KubeError(`${runId}/${runnable} is a Spark program: its driver asks for executors itself (spark.executors in the spec; min and max let Spark scale them)`);
    const name = workloadName(runId, runnable);
    const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    this.count('patch');
    try {
      if (kind === 'batch') {
        await this.batch.patchNamespacedJob({ name, namespace: this.namespace, body: { spec: { parallelism: instances, completions: instances } } }, merge);
      } else if (kind === 'service') {
        await this.apps.patchNamespacedDeployment({ name, namespace: this.namespace, body: { spec: { replicas: instances } } }, merge);
      } else {
        await this.apps.patchNamespacedStatefulSet({ name, namespace: this.namespace, body: { spec: { replicas: instances } } }, merge);
      }
    } catch (error) {
      throw new KubeError(`cannot scale ${runId}/${runnable} to ${instances}: ${apiMessage(error)}`);
    }
  }

  async restart(runId: string, runnable: string, instances?: string[]): Promise<void> {
    const { kind } = await this.runnableKind(runId, runnable);
    if (kind === 'batch' || kind === 'spark') {
      throw new KubeError(`restarting instances of a ${kind} runnable is not supported: ${kind === 'batch' ? 'its Job has backoffLimit 0, so a deleted pod counts as a failure' : 'a Spark driver runs once, and Spark replaces lost executors itself'}; stop the run and start it again`);
    }
    let pods = await this.podsOf(runId, runnable);
    if (instances?.length) {
      const wanted = new Set(instances);
      pods = pods.filter((p) => wanted.has(instanceIdOf(p, kind)) || wanted.has(p.metadata?.name ?? ''));
      if (pods.length === 0) throw new KubeError(`no instance ${instances.join(', ')} of ${runId}/${runnable} (weft status ${runId} lists them)`);
    }
    await this.deletePods(pods);
  }

  async suspend(runId: string, suspended: boolean): Promise<void> {
    const root = await this.requireRoot(runId);
    const spec = specOf(root);
    const batch = spec?.runnables.filter((r) => r.kind === 'batch') ?? [];
    if (batch.length === 0) throw new KubeError(`run ${runId} has no batch runnable; only batch runs can be suspended (scale services to 0 instead)`);
    if (!suspended && spec) {
      const ms = Math.max(...batch.map((r) => startTimeoutOf(spec, r)));
      await this.patchRootAnnotations(runId, { [ANN_START_DEADLINE]: new Date(Date.now() + ms).toISOString() });
    }
    const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    for (const r of batch) {
      this.count('patch');
      await this.batch.patchNamespacedJob({ name: workloadName(runId, r.name), namespace: this.namespace, body: { spec: { suspend: suspended } } }, merge);
    }
  }

  async sendCommand(runId: string, command: string, options?: { runnable?: string; payload?: string }): Promise<void> {
    if (!command) throw new KubeError('a command needs a name');
    await this.requireRoot(runId);
    const pods = (await this.podsOf(runId, options?.runnable)).filter((p) => !p.metadata?.deletionTimestamp);
    if (pods.length === 0) throw new KubeError(`run ${runId} has no live instance${options?.runnable ? ` of ${options.runnable}` : ''} to send "${command}" to`);
    const { key, value } = commandAnnotation(command, options?.payload);
    const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    await Promise.all(
      pods.map((pod) => {
        this.count('patch');
        return this.core.patchNamespacedPod({ name: pod.metadata!.name!, namespace: this.namespace, body: { metadata: { annotations: { [key]: value } } } }, merge);
      }),
    );
  }

  async resourceReport(runId: string): Promise<ResourceReport> {
    await this.ensureTracking();
    const status = this.tracker.snapshot(runId);
    const objects = this.tracker.objects(runId);
    if (!status || !objects) throw new KubeError(`no run ${runId} in namespace ${this.namespace}`);
    const spec = specOf(objects.root);
    const report: ResourceReport = { runId, app: status.app, instances: [] };
    const live = objects.pods.filter((p) => !p.metadata?.deletionTimestamp && p.status?.phase === 'Running');
    const measured = live.length ? await readPodUsage({ core: this.core, custom: this.custom }, this.namespace, live, MAIN_CONTAINER) : undefined;
    for (const r of status.runnables) {
      const runnable = spec?.runnables.find((x) => x.name === r.name);
      for (const i of r.instances) {
        const usage = i.name ? measured?.usage.get(i.name) : undefined;
        // A Spark executor has the executors' resources, not the driver's.
        const res = runnable?.kind === 'spark' && i.id !== 'driver' ? runnable.spark?.executors?.resources : runnable?.resources;
        report.instances.push({ runnable: r.name, instance: i.id, host: i.host, containerId: i.containerId, state: i.state, cpu: res?.cpu ?? '?', memory: res?.memory ?? '?', usage });
      }
    }
    if (measured?.unavailable) report.usageUnavailable = measured.unavailable;
    return report;
  }

  async discover(runId: string, service: string): Promise<Endpoint[]> {
    await this.ensureTracking();
    const objects = this.tracker.objects(runId);
    if (!objects) throw new KubeError(`no run ${runId} in namespace ${this.namespace}`);
    const spec = specOf(objects.root);
    const owners = spec?.runnables.filter((r) => r.ports.some((p) => p.name === service)) ?? [];
    if (owners.length === 0) throw new KubeError(`run ${runId} announces no port named "${service}"`);
    const out: Endpoint[] = [];
    for (const r of owners) {
      const port = r.ports.find((p) => p.name === service)!.port;
      for (const pod of objects.pods) {
        if (pod.metadata?.labels?.[LABEL_RUNNABLE] !== r.name || !pod.status?.podIP || pod.metadata?.deletionTimestamp) continue;
        // An endpoint is an instance the status calls RUNNING: its main container runs and, with a
        // readiness probe, is ready (as in the Service's EndpointSlices).
        if (podInstance(pod, r.kind).state === 'RUNNING') out.push({ name: service, host: pod.status.podIP, port });
      }
    }
    return out.sort((a, b) => a.host.localeCompare(b.host));
  }

  logs(runId: string, options: LogOptions = {}): AsyncIterable<LogLine> {
    return this.streamLogs(runId, options);
  }

  private async *streamLogs(runId: string, options: LogOptions): AsyncGenerator<LogLine> {
    await this.ensureTracking();
    const objects = this.tracker.objects(runId);
    if (!objects) throw new KubeError(`no run ${runId} in namespace ${this.namespace}`);
    const spec = specOf(objects.root);
    const kindOf = (pod: V1Pod) => spec?.runnables.find((r) => r.name === pod.metadata?.labels?.[LABEL_RUNNABLE])?.kind ?? 'service';
    const matches = (pod: V1Pod) =>
      (!options.runnable || pod.metadata?.labels?.[LABEL_RUNNABLE] === options.runnable) && (!options.instance || instanceIdOf(pod, kindOf(pod)) === options.instance);
    if (!options.follow) {
      for (const pod of objects.pods.filter(matches)) {
        const runnable = pod.metadata?.labels?.[LABEL_RUNNABLE] ?? '?';
        const instance = instanceIdOf(pod, kindOf(pod));
        let text: string;
        try {
          this.count('log');
          text = await this.core.readNamespacedPodLog({ name: pod.metadata!.name!, namespace: this.namespace, container: logContainer(pod), tailLines: options.tail });
        } catch (error) {
          yield { runnable, instance, line: `(no logs: ${apiMessage(error)})`, stream: 'stderr' };
          continue;
        }
        for (const line of text.split('\n')) if (line) yield { runnable, instance, line };
      }
      return;
    }
    // Followed: one stream per pod, new pods joined as they appear, until the run ends or the signal aborts.
    const queue: LogLine[] = [];
    let wake: (() => void) | undefined;
    const push = (l: LogLine) => {
      queue.push(l);
      wake?.();
    };
    const following = new Map<string, AbortController>();
    let open = 0;
    let ended = false;
    const log = new Log(this.kubeConfig);
    const follow = async (pod: V1Pod) => {
      const name = pod.metadata!.name!;
      if (following.has(name)) return;
      const runnable = pod.metadata?.labels?.[LABEL_RUNNABLE] ?? '?';
      const instance = instanceIdOf(pod, kindOf(pod));
      const sink = new PassThrough();
      const lines = createInterface({ input: sink });
      open++;
      lines.on('line', (line) => push({ runnable, instance, line }));
      lines.on('close', () => {
        open--;
        wake?.();
      });
      following.set(name, new AbortController());
      try {
        this.count('log');
        const ctl = await log.log(this.namespace, name, logContainer(pod), sink, { follow: true, tailLines: options.tail });
        following.set(name, ctl);
      } catch (error) {
        push({ runnable, instance, line: `(no logs: ${apiMessage(error)})`, stream: 'stderr' });
        sink.end();
      }
    };
    const startable = (pod: V1Pod) => matches(pod) && !!pod.status?.containerStatuses?.find((c) => c.name === logContainer(pod) && (c.state?.running || c.state?.terminated));
    const off = this.tracker.onStatus((status) => {
      if (status.runId !== runId) return;
      for (const pod of this.tracker.objects(runId)?.pods ?? []) if (startable(pod)) void follow(pod);
      if (isTerminal(status.state)) {
        ended = true;
        wake?.();
      }
    });
    const abort = () => {
      ended = true;
      for (const ctl of following.values()) ctl.abort();
      wake?.();
    };
    options.signal?.addEventListener('abort', abort);
    try {
      for (const pod of objects.pods) if (startable(pod)) void follow(pod);
      if (isTerminal(this.tracker.snapshot(runId)?.state ?? 'PENDING')) ended = true;
      for (;;) {
        while (queue.length) yield queue.shift()!;
        if (options.signal?.aborted) return;
        if (ended && open === 0) return;
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 1000).unref();
        });
        wake = undefined;
      }
    } finally {
      off();
      options.signal?.removeEventListener('abort', abort);
      for (const ctl of following.values()) ctl.abort();
    }
  }

  /** Records a terminal state on the root (so it survives restarts and vanished pods) and stops what weft failed. */
  private async recordTerminal(derived: Derived, root: V1ConfigMap | undefined): Promise<void> {
    if (!root || root.metadata?.deletionTimestamp || root.metadata?.annotations?.[ANN_STATE]) return;
    if (derived.state !== 'COMPLETED' && derived.state !== 'FAILED') return;
    try {
      await this.patchRootAnnotations(derived.runId, {
        [ANN_STATE]: derived.state,
        [ANN_MESSAGE]: derived.message ?? null,
        [ANN_REASON]: derived.reason ?? null,
        [ANN_EXIT_CODE]: derived.exitCode === undefined ? null : String(derived.exitCode),
      });
      if (specOf(root)?.runnables.some((r) => r.kind === 'spark')) await this.removeLateExecutors(derived.runId);
      if (derived.decidedByWeft) {
        // The workloads would keep trying (image pulls, scheduling): remove them, keep the root with the verdict.
        const name = (r: string) => workloadName(derived.runId, r);
        const spec = specOf(root);
        for (const r of spec?.runnables ?? []) {
          this.count('delete');
          const del = { name: name(r.name), namespace: this.namespace, propagationPolicy: 'Background' };
          const p =
            r.kind === 'spark'
              ? this.core.deleteNamespacedPod({ ...del, name: driverPodName(derived.runId, r.name) })
              : r.kind === 'batch'
                ? this.batch.deleteNamespacedJob(del)
                : r.kind === 'service'
                  ? this.apps.deleteNamespacedDeployment(del)
                  : this.apps.deleteNamespacedStatefulSet(del);
          await p.catch((error) => {
            if (!isNotFound(error)) throw error;
          });
        }
      }
    } catch (error) {
      if (!isNotFound(error) && process.env.WEFT_DEBUG) process.stderr.write(`[weft kube] cannot record the end of ${derived.runId}: ${apiMessage(error)}\n`);
    }
  }

  /**
   * A Spark driver that ended may leave executor pods it asked for late, whose program never
   * started: they would start only to find no driver, so they go. Executors that run end on their
   * own once their driver is gone, and stay with their logs until the run is deleted.
   */
  private async removeLateExecutors(runId: string): Promise<void> {
    const late = (this.tracker.objects(runId)?.pods ?? []).filter(
      (p) => isSparkExecutor(p.metadata?.labels) && !p.metadata?.deletionTimestamp && p.status?.phase === 'Pending',
    );
    if (late.length) await this.deletePods(late);
  }

  async close(): Promise<void> {
    this.tracker.stop();
  }
}

export async function createKubeRuntime(options: KubernetesRuntimeOptions, probe = true): Promise<KubeRuntime> {
  const kc = loadKubeConfig(options);
  const runtime = new KubeRuntime(kc, options);
  if (probe) await runtime.probe();
  return runtime;
}
