// Derives a run's status from its Kubernetes objects. Pure (time is passed in),
// so every failure explanation is unit-tested with hand-written objects.
import type { V1ConfigMap, V1ContainerStatus, V1Deployment, V1Job, V1Pod, V1StatefulSet } from '@kubernetes/client-node';
import type { InstanceStatus, RunStatus } from '../api.js';
import { deriveRunState, runnableStatuses, type RunnableObservation } from '../derive/index.js';
import type { AppSpec } from '../spec.js';
import { initialExecutors, isSparkExecutor, sparkInstanceId } from '../spark/index.js';
import type { InstanceState, RunState } from '../state.js';
import { ANN_CREATED, ANN_EXIT_CODE, ANN_MESSAGE, ANN_REASON, ANN_START_DEADLINE, ANN_STATE, ANN_STOP, LABEL_APP, LABEL_RUN_ID, LABEL_RUNNABLE, MAIN_CONTAINER, SPEC_KEY } from './render.js';

export interface RunObjects {
  root?: V1ConfigMap;
  jobs: V1Job[];
  deployments: V1Deployment[];
  statefulSets: V1StatefulSet[];
  pods: V1Pod[];
}

export interface Derived extends RunStatus {
  /** Set when weft itself decided the run failed (fail-fast or start deadline): the tracker records it on the root and stops the workloads. */
  decidedByWeft?: boolean;
  /** The start deadline (ms since epoch) while it still matters. */
  deadline?: number;
}

export function specOf(root: V1ConfigMap | undefined): AppSpec | undefined {
  const text = root?.data?.[SPEC_KEY];
  if (!text) return undefined;
  try {
    return JSON.parse(text) as AppSpec;
  } catch {
    return undefined;
  }
}

function mainStatus(pod: V1Pod): V1ContainerStatus | undefined {
  return pod.status?.containerStatuses?.find((c) => c.name === MAIN_CONTAINER) ?? pod.status?.containerStatuses?.[0];
}

export function instanceIdOf(pod: V1Pod, kind: string): string {
  const meta = pod.metadata ?? {};
  if (kind === 'spark') return sparkInstanceId(meta.labels, meta.name);
  if (kind === 'batch') {
    const index = meta.annotations?.['batch.kubernetes.io/job-completion-index'] ?? meta.labels?.['batch.kubernetes.io/job-completion-index'];
    if (index !== undefined) return index;
  }
  if (kind === 'stateful') {
    const index = meta.labels?.['apps.kubernetes.io/pod-index'];
    if (index !== undefined) return index;
    const m = /-(\d+)$/.exec(meta.name ?? '');
    if (m) return m[1];
  }
  return meta.name ?? '?';
}

function explainTermination(t: { exitCode?: number; reason?: string; message?: string; signal?: number }, memory?: string): string {
  const code = t.exitCode;
  if (t.reason === 'OOMKilled' || (code === 137 && !t.reason)) {
    return `OOMKilled (exit code ${code ?? 137}): the program used more memory than its limit${memory ? ` of ${memory}` : ''}; raise resources.memory or lower the JVM heap`;
  }
  let text = `exit code ${code ?? '?'}`;
  if (t.reason) text += ` (${t.reason})`;
  if (t.message) text += `: ${t.message.trim().split('\n').slice(-5).join(' | ')}`;
  return text;
}

/** The state of one pod, decided by its main container (not the pod phase: sidecars keep pods Running). */
export function podInstance(pod: V1Pod, kind: string, memory?: string): InstanceStatus {
  const id = instanceIdOf(pod, kind);
  const cs = mainStatus(pod);
  const base: InstanceStatus = {
    id,
    state: 'PENDING',
    name: pod.metadata?.name,
    host: pod.spec?.nodeName,
    containerId: cs?.containerID,
    restarts: cs?.restartCount,
    startedAt: cs?.state?.running?.startedAt ? new Date(cs.state.running.startedAt).toISOString() : undefined,
  };
  const terminated = cs?.state?.terminated;
  if (pod.metadata?.deletionTimestamp && pod.status?.phase !== 'Succeeded' && pod.status?.phase !== 'Failed') {
    return { ...base, state: 'STOPPING', message: 'being deleted' };
  }
  if (terminated) {
    const ok = terminated.exitCode === 0;
    return {
      ...base,
      state: ok ? 'COMPLETED' : 'FAILED',
      exitCode: terminated.exitCode,
      reason: terminated.reason ?? (ok ? 'Completed' : 'Error'),
      message: ok ? undefined : explainTermination(terminated, memory),
    };
  }
  if (pod.status?.phase === 'Succeeded') return { ...base, state: 'COMPLETED', reason: 'Completed' };
  if (pod.status?.phase === 'Failed') {
    return { ...base, state: 'FAILED', reason: pod.status.reason ?? 'Failed', message: pod.status.message ?? 'the pod failed' };
  }
  if (cs?.state?.running) {
    // With a readiness probe, an instance counts as running once it is ready (a service's
    // instances are not useful before), and the run reaches RUNNING only then.
    const main = pod.spec?.containers?.find((c) => c.name === cs.name);
    if (main?.readinessProbe && !cs.ready) return { ...base, state: 'STARTING', reason: 'NotReady', message: 'running, not yet ready (readiness probe)' };
    return { ...base, state: 'RUNNING' };
  }
  const waiting = cs?.state?.waiting;
  if (waiting) {
    const reason = waiting.reason ?? 'Waiting';
    let message = waiting.message;
    if (reason === 'CrashLoopBackOff') {
      const last = cs?.lastState?.terminated;
      message = `CrashLoopBackOff: the program keeps exiting; last ${last ? explainTermination(last, memory) : 'exit unknown'}`;
      // The last attempt's exit code, as the local runtime reports a crash-looping instance's.
      if (last?.exitCode !== undefined) return { ...base, state: 'STARTING', reason, message, exitCode: last.exitCode };
    } else if (reason === 'ImagePullBackOff' || reason === 'ErrImagePull' || reason === 'InvalidImageName' || reason === 'ErrImageNeverPull') {
      message = `cannot pull image ${cs?.image ?? pod.spec?.containers?.[0]?.image ?? ''}: ${reason}${waiting.message ? `: ${waiting.message}` : ''}; check the image reference, that it was pushed, and imagePullSecrets`;
    } else if (reason === 'CreateContainerConfigError' || reason === 'CreateContainerError' || reason === 'RunContainerError') {
      message = `${reason}: ${waiting.message ?? 'the container could not be created'}; check the env, secrets and config maps it refers to`;
    }
    return { ...base, state: 'STARTING', reason, message };
  }
  const scheduled = pod.status?.conditions?.find((c) => c.type === 'PodScheduled');
  if (scheduled?.status === 'False' && scheduled.reason === 'Unschedulable') {
    return { ...base, state: 'PENDING', reason: 'Unschedulable', message: `not scheduled: ${scheduled.message ?? 'no node fits'}` };
  }
  if (pod.spec?.nodeName) return { ...base, state: 'STARTING', reason: 'ContainerCreating' };
  return base;
}

function jobCondition(job: V1Job, ...types: string[]) {
  return job.status?.conditions?.find((c) => types.includes(c.type) && c.status === 'True');
}

function sortInstances(list: InstanceStatus[]): InstanceStatus[] {
  return list.sort((a, b) => {
    const na = Number(a.id);
    const nb = Number(b.id);
    if (Number.isInteger(na) && Number.isInteger(nb)) return na - nb;
    return a.id.localeCompare(b.id);
  });
}

/** Spark executors in the order of their ids (exec-2 before exec-10). */
function sortExecutors(list: InstanceStatus[]): InstanceStatus[] {
  const n = (i: InstanceStatus) => Number(i.id.replace(/^exec-/, ''));
  return list.sort((a, b) => n(a) - n(b) || a.id.localeCompare(b.id));
}

/**
 * Derives the run state from the run's objects: they are translated into instance
 * observations, and the rules shared with the local backend decide (../derive).
 * `now` decides the start deadline; `reachedRunning` is the tracker's state machine
 * having seen RUNNING. The caller feeds the result through the RunStateMachine,
 * which drops backward moves.
 */
export function deriveRun(runId: string, objects: RunObjects, now: number, options: { reachedRunning?: boolean } = {}): Derived {
  const root = objects.root;
  const spec = specOf(root);
  const ann = root?.metadata?.annotations ?? {};
  const app = spec?.name ?? root?.metadata?.labels?.[LABEL_APP] ?? objects.pods[0]?.metadata?.labels?.[LABEL_APP] ?? '?';
  const specRunnables = spec?.runnables ?? [];
  const kindOf = new Map(specRunnables.map((r) => [r.name, r.kind]));
  const memoryOf = new Map(specRunnables.map((r) => [r.name, r.resources?.memory]));
  const desiredOf = new Map<string, number>(specRunnables.map((r) => [r.name, r.instances]));
  const jobOf = new Map<string, V1Job>();
  for (const j of objects.jobs) {
    const r = j.metadata?.labels?.[LABEL_RUNNABLE];
    if (!r) continue;
    desiredOf.set(r, j.spec?.parallelism ?? j.spec?.completions ?? 1);
    jobOf.set(r, j);
  }
  for (const d of [...objects.deployments, ...objects.statefulSets]) {
    const r = d.metadata?.labels?.[LABEL_RUNNABLE];
    if (r) desiredOf.set(r, d.spec?.replicas ?? 1);
  }
  const names = new Set<string>([...specRunnables.map((r) => r.name), ...desiredOf.keys()]);
  const podsByRunnable = new Map<string, V1Pod[]>();
  for (const pod of objects.pods) {
    const r = pod.metadata?.labels?.[LABEL_RUNNABLE] ?? '?';
    names.add(r);
    if (!podsByRunnable.has(r)) podsByRunnable.set(r, []);
    podsByRunnable.get(r)!.push(pod);
  }
  const observed: RunnableObservation[] = [];
  for (const name of names) {
    const kind = kindOf.get(name) ?? 'service';
    if (kind === 'spark') {
      // The driver is the runnable's instance; the executors its Spark driver made are managed by it.
      const spark = specRunnables.find((r) => r.name === name)?.spark;
      const pods = podsByRunnable.get(name) ?? [];
      const executorMemory = spark?.executors?.resources?.memory;
      observed.push({
        name,
        kind,
        desired: 1,
        instances: pods.filter((p) => !isSparkExecutor(p.metadata?.labels)).map((p) => podInstance(p, kind, memoryOf.get(name))),
        managed: {
          desired: spark?.executors ? initialExecutors(spark.executors) : 0,
          instances: sortExecutors(pods.filter((p) => isSparkExecutor(p.metadata?.labels)).map((p) => podInstance(p, kind, executorMemory))),
        },
      });
      continue;
    }
    const instances = sortInstances((podsByRunnable.get(name) ?? []).map((p) => podInstance(p, kind, memoryOf.get(name))));
    const job = jobOf.get(name);
    const failed = job && jobCondition(job, 'Failed', 'FailureTarget');
    observed.push({
      name,
      kind,
      desired: desiredOf.get(name) ?? instances.length,
      instances,
      // The Job's verdict holds after its pods are gone; a batch runnable without a Job is not done.
      complete: kind === 'batch' ? Boolean(job && jobCondition(job, 'Complete', 'SuccessCriteriaMet')) : undefined,
      failure: failed ? { reason: failed.reason ?? 'JobFailed', message: `job ${job.metadata?.name} failed: ${failed.message ?? failed.reason ?? 'no reason given'}` } : undefined,
      // Deployments and StatefulSets replace a failed pod.
      replacesFailed: kind !== 'batch',
    });
  }

  const recordedState = ann[ANN_STATE] as RunState | undefined;
  const deadline = ann[ANN_START_DEADLINE] ? Date.parse(ann[ANN_START_DEADLINE]) : NaN;
  const hasLongRunning = observed.some((r) => r.kind !== 'batch');
  const verdict = deriveRunState(
    {
      runnables: observed,
      recorded: recordedState ? { state: recordedState, message: ann[ANN_MESSAGE], reason: ann[ANN_REASON], exitCode: ann[ANN_EXIT_CODE] !== undefined ? Number(ann[ANN_EXIT_CODE]) : undefined } : undefined,
      // A stop asked for (annotation), or the root is being deleted or gone: every pod left is still shutting down.
      stop: !root || root.metadata?.deletionTimestamp || ann[ANN_STOP] ? { remaining: objects.pods.length, ended: !root && objects.pods.length === 0 } : undefined,
      suspended: objects.jobs.length > 0 && !hasLongRunning && objects.jobs.every((j) => j.spec?.suspend === true),
      startDeadline: Number.isFinite(deadline) ? deadline : undefined,
      reachedRunning: options.reachedRunning,
    },
    now,
  );
  const status: Derived = {
    runId,
    app,
    runtime: 'kubernetes',
    createdAt: ann[ANN_CREATED] ?? (root?.metadata?.creationTimestamp ? new Date(root.metadata.creationTimestamp).toISOString() : undefined),
    namespace: root?.metadata?.namespace,
    runnables: runnableStatuses(observed),
    ...verdict,
  };
  if (Number.isFinite(deadline) && (verdict.state === 'PENDING' || verdict.state === 'STARTING')) status.deadline = deadline;
  return status;
}

/** The run id of any weft object. */
export function runIdOf(obj: { metadata?: { labels?: Record<string, string> } }): string | undefined {
  return obj.metadata?.labels?.[LABEL_RUN_ID];
}

export function instanceStateIsLive(state: InstanceState): boolean {
  return state === 'PENDING' || state === 'STARTING' || state === 'RUNNING' || state === 'STOPPING';
}
