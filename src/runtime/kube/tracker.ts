// Tracks every weft run in one namespace with ONE shared informer per kind
// (root ConfigMaps, Jobs, Deployments, StatefulSets, Pods), never one watch
// per run. Each run's state goes through a RunStateMachine, so late events
// cannot move it backwards. A new process rebuilds every run from the cluster.
import type { KubeConfig, KubernetesObject, V1ConfigMap, V1Deployment, V1Job, V1ObjectMeta, V1Pod, V1StatefulSet } from '@kubernetes/client-node';
import { AppsV1Api, BatchV1Api, CoreV1Api } from '@kubernetes/client-node';
import type { RunStatus, StatusListener } from '../api.js';
import { isTerminal, RunStateMachine } from '../state.js';
import { deriveRun, runIdOf, type Derived, type RunObjects } from './derive.js';
import { Informer, type ListPage } from '../../kube-client/index.js';
import { LABEL_ROLE, MANAGED_SELECTOR } from './render.js';

interface RunEntry {
  runId: string;
  root?: V1ConfigMap;
  rootSeen: boolean;
  jobs: Map<string, V1Job>;
  deployments: Map<string, V1Deployment>;
  statefulSets: Map<string, V1StatefulSet>;
  pods: Map<string, V1Pod>;
  machine?: RunStateMachine;
  status?: RunStatus;
  fingerprint?: string;
  timer?: NodeJS.Timeout;
  goneAt?: number;
  finalized?: boolean;
}

export interface TrackerOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  resyncMs?: number;
  onRequest?: (kind: string) => void;
  /** Called once when a run first reaches a terminal state, with the derivation (to record it and clean up). */
  onTerminal?: (derived: Derived, root: V1ConfigMap | undefined) => void;
  onError?: (error: unknown) => void;
  /** How long runs that vanished from the cluster stay queryable (ms). */
  retainGoneMs?: number;
}

type Kind = 'root' | 'jobs' | 'deployments' | 'statefulSets' | 'pods';

const nameOf = (o: KubernetesObject) => o.metadata?.name ?? '';

// What the tracker keeps of each object: only the fields deriveRun and the runtime read (see
// derive.ts and runtime.ts). managedFields, pod specs, workload pod templates and the run's files
// are most of an object's bytes, and client-node's list models carry a property for every field of
// the schema; plain slim objects keep tracking 10,000 runs well inside a few hundred MB.
function slimMeta(m: V1ObjectMeta | undefined): V1ObjectMeta {
  return {
    name: m?.name,
    namespace: m?.namespace,
    uid: m?.uid,
    resourceVersion: m?.resourceVersion,
    creationTimestamp: m?.creationTimestamp,
    deletionTimestamp: m?.deletionTimestamp,
    labels: m?.labels,
    annotations: m?.annotations,
  };
}

/** The root without its files (binaryData): the spec and the annotations are all that is read. */
export function slimRoot(cm: V1ConfigMap): V1ConfigMap {
  return { metadata: slimMeta(cm.metadata), data: cm.data };
}

export function slimJob(job: V1Job): V1Job {
  const spec = job.spec;
  return {
    metadata: slimMeta(job.metadata),
    spec: spec && ({ parallelism: spec.parallelism, completions: spec.completions, suspend: spec.suspend } as V1Job['spec']),
    status: job.status && { conditions: job.status.conditions },
  };
}

export function slimWorkload<T extends V1Deployment | V1StatefulSet>(workload: T): T {
  return { metadata: slimMeta(workload.metadata), spec: workload.spec && { replicas: workload.spec.replicas } } as T;
}

// A probe is kept only as a marker: derivation needs to know one exists (then RUNNING waits for ready).
export function slimPod(pod: V1Pod): V1Pod {
  const status = pod.status;
  return {
    metadata: slimMeta(pod.metadata),
    spec: pod.spec && { nodeName: pod.spec.nodeName, containers: pod.spec.containers?.map((c) => ({ name: c.name, image: c.image, ...(c.readinessProbe ? { readinessProbe: {} } : {}) })) },
    status: status && {
      phase: status.phase,
      reason: status.reason,
      message: status.message,
      podIP: status.podIP,
      conditions: status.conditions?.map((c) => ({ type: c.type, status: c.status, reason: c.reason, message: c.message })),
      containerStatuses: status.containerStatuses,
    },
  };
}

export class Tracker {
  private readonly runs = new Map<string, RunEntry>();
  private readonly listeners = new Set<StatusListener>();
  private readonly informers: Array<Informer<KubernetesObject>> = [];
  private readonly dirty = new Set<string>();
  private flushScheduled = false;
  private started: Promise<void> | undefined;
  private synced = false;
  private gcTimer: NodeJS.Timeout | undefined;
  /** Count of events handled, per kind (for benchmarks). */
  readonly eventCounts: Record<Kind, number> = { root: 0, jobs: 0, deployments: 0, statefulSets: 0, pods: 0 };

  constructor(private readonly options: TrackerOptions) {}

  start(): Promise<void> {
    if (this.started) return this.started;
    const { kubeConfig: kc, namespace } = this.options;
    const core = kc.makeApiClient(CoreV1Api);
    const batch = kc.makeApiClient(BatchV1Api);
    const apps = kc.makeApiClient(AppsV1Api);
    const common = {
      kubeConfig: kc,
      resyncMs: this.options.resyncMs,
      onRequest: this.options.onRequest,
      onError: this.options.onError,
    };
    const add = <T extends KubernetesObject>(
      kind: Kind,
      path: string,
      selector: string,
      list: (p: { labelSelector?: string; limit: number; _continue?: string }) => Promise<ListPage<T>>,
      transform: (obj: T) => T,
    ) => {
      const informer = new Informer<T>({ ...common, path, labelSelector: selector, list, transform });
      informer.on((event, obj) => this.onEvent(kind, event, obj));
      this.informers.push(informer as unknown as Informer<KubernetesObject>);
      return informer;
    };
    const ns = encodeURIComponent(namespace);
    add<V1ConfigMap>('root', `/api/v1/namespaces/${ns}/configmaps`, `${MANAGED_SELECTOR},${LABEL_ROLE}=root`, (p) => core.listNamespacedConfigMap({ namespace, ...p }) as Promise<ListPage<V1ConfigMap>>, slimRoot);
    add<V1Job>('jobs', `/apis/batch/v1/namespaces/${ns}/jobs`, MANAGED_SELECTOR, (p) => batch.listNamespacedJob({ namespace, ...p }) as Promise<ListPage<V1Job>>, slimJob);
    add<V1Deployment>('deployments', `/apis/apps/v1/namespaces/${ns}/deployments`, MANAGED_SELECTOR, (p) => apps.listNamespacedDeployment({ namespace, ...p }) as Promise<ListPage<V1Deployment>>, slimWorkload);
    add<V1StatefulSet>('statefulSets', `/apis/apps/v1/namespaces/${ns}/statefulsets`, MANAGED_SELECTOR, (p) => apps.listNamespacedStatefulSet({ namespace, ...p }) as Promise<ListPage<V1StatefulSet>>, slimWorkload);
    add<V1Pod>('pods', `/api/v1/namespaces/${ns}/pods`, MANAGED_SELECTOR, (p) => core.listNamespacedPod({ namespace, ...p }) as Promise<ListPage<V1Pod>>, slimPod);
    this.started = (async () => {
      await Promise.all(this.informers.map((i) => i.start()));
      this.synced = true;
      for (const runId of this.runs.keys()) this.dirty.add(runId);
      this.flush();
      this.gcTimer = setInterval(() => this.collectGone(), 60_000);
      this.gcTimer.unref();
    })();
    this.started.catch(() => undefined);
    return this.started;
  }

  stop(): void {
    for (const informer of this.informers) informer.stop();
    for (const entry of this.runs.values()) if (entry.timer) clearTimeout(entry.timer);
    if (this.gcTimer) clearInterval(this.gcTimer);
  }

  get relists(): number {
    return this.informers.reduce((n, i) => n + i.relists, 0);
  }

  onStatus(listener: StatusListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  snapshot(runId: string): RunStatus | undefined {
    return this.runs.get(runId)?.status;
  }

  all(): RunStatus[] {
    return [...this.runs.values()].flatMap((e) => (e.status ? [e.status] : []));
  }

  objects(runId: string): RunObjects | undefined {
    const e = this.runs.get(runId);
    if (!e) return undefined;
    return { root: e.root, jobs: [...e.jobs.values()], deployments: [...e.deployments.values()], statefulSets: [...e.statefulSets.values()], pods: [...e.pods.values()] };
  }

  private entry(runId: string): RunEntry {
    let e = this.runs.get(runId);
    if (!e) {
      e = { runId, rootSeen: false, jobs: new Map(), deployments: new Map(), statefulSets: new Map(), pods: new Map() };
      this.runs.set(runId, e);
    }
    return e;
  }

  private onEvent(kind: Kind, event: 'add' | 'update' | 'delete', obj: KubernetesObject): void {
    const runId = runIdOf(obj);
    if (!runId) return;
    this.eventCounts[kind]++;
    const e = this.entry(runId);
    if (kind === 'root') {
      if (event === 'delete') e.root = undefined;
      else {
        e.root = obj as V1ConfigMap;
        e.rootSeen = true;
      }
    } else {
      const map = e[kind] as Map<string, KubernetesObject>;
      if (event === 'delete') map.delete(nameOf(obj));
      else map.set(nameOf(obj), obj);
    }
    this.markDirty(runId);
  }

  private markDirty(runId: string): void {
    this.dirty.add(runId);
    if (!this.synced || this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    const ids = [...this.dirty];
    this.dirty.clear();
    for (const runId of ids) this.recompute(runId);
  }

  private recompute(runId: string): void {
    const e = this.runs.get(runId);
    if (!e) return;
    const now = Date.now();
    // A run the machine saw RUNNING stays RUNNING through a pod's restart (the shared rule, as on the local runtime).
    const seen = { reachedRunning: e.machine?.state === 'RUNNING' };
    let derived: Derived;
    if (!e.root) {
      if (!e.rootSeen) {
        // Children seen before their root (separate watch streams), or leftovers of a run whose root is long gone.
        if (e.pods.size === 0 && e.jobs.size === 0 && e.deployments.size === 0 && e.statefulSets.size === 0) this.runs.delete(runId);
        return;
      }
      // The root is gone: the run was stopped (or cleaned up). KILLED once no instance is left.
      derived = deriveRun(runId, this.objects(runId)!, now, seen);
      derived.app = e.status?.app ?? derived.app;
      derived.createdAt = e.status?.createdAt ?? derived.createdAt;
      derived.namespace = this.options.namespace;
      if (e.pods.size === 0) {
        derived.state = 'KILLED';
        derived.message = 'stopped: every instance is gone';
        e.goneAt ??= now;
      }
    } else {
      derived = deriveRun(runId, this.objects(runId)!, now, seen);
    }
    if (!e.machine) e.machine = new RunStateMachine(derived.state === 'STOPPING' || isTerminal(derived.state) || derived.state === 'SUSPENDED' ? derived.state : 'PENDING');
    const before = e.machine.state;
    e.machine.offer(derived.state, derived.message);
    const state = e.machine.state;
    const previous = e.status;
    const status: RunStatus = {
      ...derived,
      state,
      message: derived.state === state ? derived.message : previous?.message,
      reason: derived.state === state ? derived.reason : previous?.reason,
      exitCode: derived.state === state ? derived.exitCode : previous?.exitCode,
    };
    delete (status as Derived).decidedByWeft;
    delete (status as Derived).deadline;
    if (isTerminal(state) && !status.finishedAt) status.finishedAt = previous?.finishedAt ?? new Date(now).toISOString();
    if (isTerminal(before) && previous) {
      // Terminal runs only refresh their instances.
      status.message = previous.message;
      status.reason = previous.reason;
      status.exitCode = previous.exitCode;
      status.finishedAt = previous.finishedAt;
    }
    // Start deadline: recompute when it passes.
    if (e.timer) clearTimeout(e.timer);
    e.timer = undefined;
    if (derived.deadline && (state === 'PENDING' || state === 'STARTING')) {
      const wait = Math.max(0, derived.deadline - now) + 50;
      e.timer = setTimeout(() => this.markDirty(runId), Math.min(wait, 2_147_000_000));
      e.timer.unref();
    }
    const fingerprint = JSON.stringify(status);
    if (fingerprint === e.fingerprint) return;
    e.fingerprint = fingerprint;
    e.status = status;
    if (isTerminal(state) && !e.finalized) {
      e.finalized = true;
      if (!isTerminal(before) || derived.state === state) this.options.onTerminal?.({ ...derived, state, message: status.message }, e.root);
    }
    for (const listener of [...this.listeners]) {
      try {
        listener(status);
      } catch (error) {
        this.options.onError?.(error);
      }
    }
  }

  private collectGone(): void {
    const keep = this.options.retainGoneMs ?? 600_000;
    const now = Date.now();
    for (const [runId, e] of this.runs) {
      if (e.goneAt && now - e.goneAt > keep && !e.root && e.pods.size === 0) this.runs.delete(runId);
    }
  }
}
