// Derives a run's status from its Kubernetes objects. Pure (time is passed in),
// so every failure explanation is unit-tested with hand-written objects.
import type { V1ConfigMap, V1ContainerStatus, V1Deployment, V1Job, V1Pod, V1StatefulSet } from '@kubernetes/client-node';
import type { InstanceStatus, RunnableStatus, RunStatus } from '../api.js';
import type { AppSpec } from '../spec.js';
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

/** Waiting reasons that never fix themselves: the run fails at once. */
const FATAL_WAITING = new Set(['ImagePullBackOff', 'ErrImagePull', 'InvalidImageName', 'ErrImageNeverPull', 'CreateContainerConfigError', 'CreateContainerError', 'RunContainerError']);

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

/**
 * Derives the run state. `now` decides the start deadline. The caller feeds
 * the result through the RunStateMachine, which drops backward moves.
 */
export function deriveRun(runId: string, objects: RunObjects, now: number): Derived {
  const root = objects.root;
  const spec = specOf(root);
  const ann = root?.metadata?.annotations ?? {};
  const app = spec?.name ?? root?.metadata?.labels?.[LABEL_APP] ?? objects.pods[0]?.metadata?.labels?.[LABEL_APP] ?? '?';
  const runnables: RunnableStatus[] = [];
  const specRunnables = spec?.runnables ?? [];
  const kindOf = new Map(specRunnables.map((r) => [r.name, r.kind]));
  const memoryOf = new Map(specRunnables.map((r) => [r.name, r.resources?.memory]));
  const desiredOf = new Map<string, number>(specRunnables.map((r) => [r.name, r.instances]));
  for (const j of objects.jobs) {
    const r = j.metadata?.labels?.[LABEL_RUNNABLE];
    if (r) desiredOf.set(r, j.spec?.parallelism ?? j.spec?.completions ?? 1);
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
  for (const name of names) {
    const kind = kindOf.get(name) ?? 'service';
    const instances = sortInstances((podsByRunnable.get(name) ?? []).map((p) => podInstance(p, kind, memoryOf.get(name))));
    // A replaced pod (restart, or a Job retry) can leave two pods with the same index: keep the newest live one.
    runnables.push({
      name,
      kind,
      desired: desiredOf.get(name) ?? instances.length,
      running: instances.filter((i) => i.state === 'RUNNING').length,
      instances,
    });
  }

  const status: Derived = {
    runId,
    app,
    runtime: 'kubernetes',
    state: 'PENDING',
    createdAt: ann[ANN_CREATED] ?? (root?.metadata?.creationTimestamp ? new Date(root.metadata.creationTimestamp).toISOString() : undefined),
    namespace: root?.metadata?.namespace,
    runnables,
  };

  // 1. A final state recorded on the root wins (weft's own decisions survive restarts and vanished pods).
  const recorded = ann[ANN_STATE] as RunState | undefined;
  if (recorded && ['COMPLETED', 'FAILED', 'KILLED', 'REJECTED'].includes(recorded)) {
    status.state = recorded;
    status.message = ann[ANN_MESSAGE];
    status.reason = ann[ANN_REASON];
    if (ann[ANN_EXIT_CODE] !== undefined) status.exitCode = Number(ann[ANN_EXIT_CODE]);
    return status;
  }

  // 2. Stopping: requested (annotation) or the root is being deleted.
  if (!root || root.metadata?.deletionTimestamp || ann[ANN_STOP]) {
    const left = objects.pods.length;
    status.state = 'STOPPING';
    status.message = left ? `stopping: ${left} instance(s) still shutting down` : 'stopping';
    return status;
  }

  const allInstances = runnables.flatMap((r) => r.instances.map((i) => ({ runnable: r, instance: i })));
  const describeInstance = (r: RunnableStatus, i: InstanceStatus) => `${r.name}/${i.id}`;

  // 3. Failures: a failed batch instance (restartPolicy Never, backoffLimit 0), or a fatal waiting reason anywhere.
  for (const { runnable, instance } of allInstances) {
    if (instance.state === 'FAILED' && runnable.kind === 'batch') {
      status.state = 'FAILED';
      status.reason = instance.reason;
      status.exitCode = instance.exitCode;
      status.message = `instance ${describeInstance(runnable, instance)} failed: ${instance.message ?? instance.reason}`;
      return status;
    }
  }
  for (const { runnable, instance } of allInstances) {
    if (instance.reason && FATAL_WAITING.has(instance.reason)) {
      status.state = 'FAILED';
      status.reason = instance.reason;
      status.message = `instance ${describeInstance(runnable, instance)}: ${instance.message ?? instance.reason}`;
      status.decidedByWeft = true;
      return status;
    }
  }
  for (const job of objects.jobs) {
    const failed = jobCondition(job, 'Failed', 'FailureTarget');
    if (failed) {
      status.state = 'FAILED';
      status.reason = failed.reason ?? 'JobFailed';
      status.message = `job ${job.metadata?.name} failed: ${failed.message ?? failed.reason ?? 'no reason given'}`;
      return status;
    }
  }

  // 4. Completion: every runnable is batch and every Job is complete.
  const hasLongRunning = runnables.some((r) => r.kind !== 'batch');
  if (!hasLongRunning && objects.jobs.length > 0 && objects.jobs.length >= runnables.filter((r) => r.kind === 'batch').length) {
    if (objects.jobs.every((j) => jobCondition(j, 'Complete', 'SuccessCriteriaMet'))) {
      status.state = 'COMPLETED';
      status.message = 'every instance exited with code 0';
      status.exitCode = 0;
      return status;
    }
  }

  // 5. Suspended batch runs.
  if (objects.jobs.length > 0 && objects.jobs.every((j) => j.spec?.suspend === true) && !hasLongRunning) {
    status.state = 'SUSPENDED';
    status.message = 'suspended: resume it to start its instances again';
    return status;
  }

  // 6. Running: every runnable has all its wanted instances running (batch: running or done).
  const satisfied = (r: RunnableStatus) => {
    const up = r.instances.filter((i) => i.state === 'RUNNING' || (r.kind === 'batch' && i.state === 'COMPLETED')).length;
    return up >= Math.max(r.desired, r.desired === 0 ? 0 : 1);
  };
  const allRunning = runnables.length > 0 && runnables.every(satisfied);
  if (allRunning) {
    status.state = 'RUNNING';
    const troubled = allInstances.find((x) => x.instance.reason === 'CrashLoopBackOff' || x.instance.state === 'FAILED');
    if (troubled) status.message = `instance ${describeInstance(troubled.runnable, troubled.instance)}: ${troubled.instance.message ?? troubled.instance.reason}`;
    return status;
  }

  const started = allInstances.some((x) => x.instance.state !== 'PENDING');
  status.state = started ? 'STARTING' : 'PENDING';
  const blocker =
    allInstances.find((x) => x.instance.reason === 'Unschedulable') ??
    allInstances.find((x) => x.instance.reason === 'CrashLoopBackOff') ??
    allInstances.find((x) => x.instance.message);
  if (blocker) {
    status.reason = blocker.instance.reason;
    status.message = `instance ${describeInstance(blocker.runnable, blocker.instance)}: ${blocker.instance.message ?? blocker.instance.reason}`;
  } else {
    status.message = started ? 'instances are starting' : objects.pods.length ? 'waiting for the scheduler' : 'waiting for instances to be created';
  }

  // 7. The start deadline: still not running when it passes -> FAILED, with the reason it is stuck.
  const deadline = ann[ANN_START_DEADLINE] ? Date.parse(ann[ANN_START_DEADLINE]) : NaN;
  if (Number.isFinite(deadline)) {
    status.deadline = deadline;
    if (now >= deadline) {
      status.state = 'FAILED';
      status.reason = blocker?.instance.reason ?? 'StartTimeout';
      status.decidedByWeft = true;
      status.message = `did not start before its start deadline ${new Date(deadline).toISOString()}${blocker ? ` (${status.message})` : ''}`;
      const exit = blocker?.instance.exitCode;
      if (exit !== undefined) status.exitCode = exit;
    }
  }
  return status;
}

/** The run id of any weft object. */
export function runIdOf(obj: { metadata?: { labels?: Record<string, string> } }): string | undefined {
  return obj.metadata?.labels?.[LABEL_RUN_ID];
}

export function instanceStateIsLive(state: InstanceState): boolean {
  return state === 'PENDING' || state === 'STARTING' || state === 'RUNNING' || state === 'STOPPING';
}
