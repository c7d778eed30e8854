// The one derivation of a run's state from what a backend observes of its
// instances. Both backends translate their own facts (pods and Jobs, or
// supervisor files and pids) into InstanceStatus lists and a few run-level
// facts; every rule that turns those into a run state lives here, once.
// Pure (time is passed in), so each rule is unit-tested for both backends'
// observations (test/runtime/derive-scenarios.test.ts). The contract is in
// docs/run-state.md.
import type { InstanceStatus, RunnableStatus } from '../api.js';
import { runsToCompletion } from '../spec.js';
import { isTerminal, type RunState } from '../state.js';

export interface RunnableObservation {
  name: string;
  kind: RunnableStatus['kind'];
  /** Instances asked for (the current count: a scale changes it). */
  desired: number;
  instances: InstanceStatus[];
  /**
   * The backend's own verdict that this batch runnable is done (a Job's Complete condition,
   * which holds after its pods are gone). Absent: done when `desired` instances exist and
   * every instance exited 0.
   */
  complete?: boolean;
  /** A failure of the runnable as a whole, already worded (a Job's Failed condition). */
  failure?: { reason: string; message: string };
  /**
   * True when the backend replaces a failed long-running instance by a new one (a Deployment
   * or StatefulSet does); then such a failure is trouble to report, not the end of the run.
   * A failed batch instance always fails the run (retries are the user's).
   */
  replacesFailed?: boolean;
  /**
   * Instances the runnable's own program starts and manages (a Spark driver's executors): listed
   * with the runnable's instances, and named while the run is RUNNING when one is in trouble
   * (failed, OOM-killed, unschedulable, crash-looping), but the program replaces them or gives up
   * on its own, so they never decide the run's state. `desired` is how many it asks for.
   */
  managed?: { desired: number; instances: InstanceStatus[] };
}

export interface RunObservation {
  runnables: RunnableObservation[];
  /** A terminal state weft recorded earlier: it wins over anything observed now. */
  recorded?: { state: RunState; message?: string; reason?: string; exitCode?: number };
  /**
   * A stop or kill was asked for (or the run's root object is going): `remaining` instances
   * have not ended yet; `ended` once the backend holds nothing of the run any more (local: no
   * live instance; Kubernetes: the root object and every pod are gone).
   */
  stop?: { kind?: 'stop' | 'kill'; remaining: number; ended: boolean };
  /** The run's batch instances are suspended (and some are left to resume). */
  suspended?: boolean;
  /** ms since the epoch: a run not RUNNING by then fails. */
  startDeadline?: number;
  /** The run was RUNNING before: an instance restarting or a scale-up in progress keeps it RUNNING. */
  reachedRunning?: boolean;
}

export interface RunVerdict {
  state: RunState;
  message?: string;
  reason?: string;
  exitCode?: number;
  /** weft itself decided the run failed (fail-fast or start deadline): the backend stops what is left. */
  decidedByWeft?: boolean;
}

/** Waiting reasons that never fix themselves: the run fails at once. */
export const FATAL_WAITING_REASONS: ReadonlySet<string> = new Set([
  'ImagePullBackOff',
  'ErrImagePull',
  'InvalidImageName',
  'ErrImageNeverPull',
  'CreateContainerConfigError',
  'CreateContainerError',
  'RunContainerError',
]);

/** Reasons a managed instance (a Spark executor) is in trouble while its program goes on. */
const MANAGED_TROUBLE: ReadonlySet<string> = new Set(['CrashLoopBackOff', 'Unschedulable', ...FATAL_WAITING_REASONS]);

export const COMPLETED_MESSAGE = 'every instance exited with code 0';
export const SUSPENDED_MESSAGE = 'suspended: resume it to start its instances again';

/** How a run message names an instance. */
export function instanceLabel(runnable: string, instance: string): string {
  return `instance ${runnable}/${instance}`;
}

/** Instances that are up for the RUNNING rule: running, and for a batch (or Spark driver) also done. */
function upCount(r: RunnableObservation): number {
  return r.instances.filter((i) => i.state === 'RUNNING' || (runsToCompletion(r.kind) && i.state === 'COMPLETED')).length;
}

function isComplete(r: RunnableObservation): boolean {
  if (r.complete !== undefined) return r.complete;
  return r.instances.length >= r.desired && r.instances.every((i) => i.state === 'COMPLETED');
}

/**
 * The rules, in order; the first that applies decides:
 * 1. a recorded terminal state; 2. a stop: STOPPING until nothing of the run is left, then KILLED;
 * 3. failures: a failed batch instance (or a failed long-running one nobody replaces),
 * a waiting reason that never fixes itself, a failed runnable; 4. every runnable batch and
 * complete: COMPLETED; 5. SUSPENDED; 6. every runnable has its instances up (or the run was
 * RUNNING before): RUNNING, naming an instance in trouble; 7. otherwise PENDING or STARTING
 * with what blocks it, and FAILED once the start deadline has passed.
 */
export function deriveRunState(observation: RunObservation, now: number): RunVerdict {
  const { runnables } = observation;
  const recorded = observation.recorded;
  if (recorded && isTerminal(recorded.state)) {
    return { state: recorded.state, message: recorded.message, reason: recorded.reason, exitCode: recorded.exitCode };
  }

  const stop = observation.stop;
  if (stop) {
    const reason = stop.kind === 'kill' ? 'Killed' : 'Stopped';
    if (stop.ended) return { state: 'KILLED', reason, message: stop.kind === 'kill' ? 'killed on request' : 'stopped on request' };
    return { state: 'STOPPING', reason, message: stop.remaining > 0 ? `stopping: ${stop.remaining} instance(s) still shutting down` : 'stopping' };
  }

  const all = runnables.flatMap((runnable) => runnable.instances.map((instance) => ({ runnable, instance })));
  const describe = (x: { runnable: RunnableObservation; instance: InstanceStatus }) =>
    `${instanceLabel(x.runnable.name, x.instance.id)}: ${x.instance.message ?? x.instance.reason}`;

  const failed = all.find((x) => x.instance.state === 'FAILED' && (runsToCompletion(x.runnable.kind) || !x.runnable.replacesFailed));
  if (failed) {
    return {
      state: 'FAILED',
      reason: failed.instance.reason,
      exitCode: failed.instance.exitCode,
      message: `${instanceLabel(failed.runnable.name, failed.instance.id)} failed: ${failed.instance.message ?? failed.instance.reason}`,
    };
  }
  const stuck = all.find((x) => x.instance.reason !== undefined && FATAL_WAITING_REASONS.has(x.instance.reason));
  if (stuck) return { state: 'FAILED', reason: stuck.instance.reason, message: describe(stuck), decidedByWeft: true };
  const broken = runnables.find((r) => r.failure);
  if (broken?.failure) return { state: 'FAILED', reason: broken.failure.reason, message: broken.failure.message };

  if (runnables.length > 0 && runnables.every((r) => runsToCompletion(r.kind) && isComplete(r))) {
    return { state: 'COMPLETED', message: COMPLETED_MESSAGE, exitCode: 0 };
  }

  if (observation.suspended) return { state: 'SUSPENDED', reason: 'Suspended', message: SUSPENDED_MESSAGE };

  const managed = runnables.flatMap((runnable) => (runnable.managed?.instances ?? []).map((instance) => ({ runnable, instance })));
  const troubled =
    all.find((x) => x.instance.reason === 'CrashLoopBackOff' || x.instance.state === 'FAILED') ??
    managed.find((x) => x.instance.state === 'FAILED' || (x.instance.reason !== undefined && MANAGED_TROUBLE.has(x.instance.reason)));
  const satisfied = runnables.length > 0 && runnables.every((r) => upCount(r) >= r.desired);
  if (satisfied || observation.reachedRunning) {
    if (!troubled) return { state: 'RUNNING' };
    return { state: 'RUNNING', reason: troubled.instance.reason, message: describe(troubled) };
  }

  const started = all.some((x) => x.instance.state !== 'PENDING');
  const blocker =
    all.find((x) => x.instance.reason === 'Unschedulable') ?? all.find((x) => x.instance.reason === 'CrashLoopBackOff') ?? all.find((x) => x.instance.message);
  const verdict: RunVerdict = { state: started ? 'STARTING' : 'PENDING' };
  if (blocker) {
    verdict.reason = blocker.instance.reason;
    verdict.message = describe(blocker);
  } else {
    verdict.message = started ? 'instances are starting' : all.length ? 'waiting for the scheduler' : 'waiting for instances to be created';
  }

  const deadline = observation.startDeadline;
  if (deadline !== undefined && Number.isFinite(deadline) && now >= deadline) {
    const failedVerdict: RunVerdict = {
      state: 'FAILED',
      reason: blocker?.instance.reason ?? 'StartTimeout',
      decidedByWeft: true,
      message: `did not start before its start deadline ${new Date(deadline).toISOString()}${blocker ? ` (${verdict.message})` : ''}`,
    };
    if (blocker?.instance.exitCode !== undefined) failedVerdict.exitCode = blocker.instance.exitCode;
    return failedVerdict;
  }
  return verdict;
}

/** Instances of a run as the RunnableStatus list a status snapshot shows. */
export function runnableStatuses(runnables: RunnableObservation[]): RunnableStatus[] {
  return runnables.map((r) => {
    const instances = [...r.instances, ...(r.managed?.instances ?? [])];
    return {
      name: r.name,
      kind: r.kind,
      desired: r.desired + (r.managed?.desired ?? 0),
      running: instances.filter((i) => i.state === 'RUNNING').length,
      instances,
    };
  });
}
