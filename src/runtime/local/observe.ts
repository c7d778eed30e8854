// What the local backend observes of its instances, as the shared derivation
// wants it (../derive). Pure: the runtime reads the files and checks the pids,
// these functions only decide, so the scenario tests feed them by hand.
import type { InstanceStatus } from '../api.js';
import type { RunnableObservation, RunObservation } from '../derive/index.js';
import { runsToCompletion, type RunnableSpec } from '../spec.js';
import type { InstanceState } from '../state.js';
import type { InstanceRecord, RunRecord } from './records.js';

/** How long after its grace period a restart may take before it counts as interrupted. */
export const RESTART_SLACK_MS = 60_000;

export function isTerminalInstance(state: InstanceState): boolean {
  return state === 'COMPLETED' || state === 'FAILED' || state === 'KILLED';
}

/** What the files and pids of one instance say (read by the runtime). */
export interface InstanceFacts {
  kind: RunnableSpec['kind'];
  record: Pick<InstanceRecord, 'supervisorPid' | 'restarting' | 'removed'>;
  /** The current supervisor (pid and start time) is alive. */
  alive: boolean;
  /** The `exit` file: the last attempt's exit code. */
  exitCode?: number;
  /** The `child` file exists: the program (or `runc run`) was started. */
  childStarted: boolean;
  restarts: number;
  /** A stop or kill of the whole run was asked for. */
  runStopping: boolean;
  now: number;
  /** The program's last log line, prefixed with ": " (empty when none); read only when needed. */
  lastLogLine: () => string;
}

export type InstanceVerdict = Pick<InstanceStatus, 'state' | 'reason' | 'message' | 'exitCode'>;

/** The state of one instance from its files and its supervisor. */
export function instanceVerdict(facts: InstanceFacts): InstanceVerdict {
  const { record } = facts;
  const stopping = facts.runStopping || Boolean(record.removed);
  if (record.restarting && !stopping) {
    // Between the old attempt's end and the new one's start: weft's own restart, not a failure.
    const overdue = facts.now > Date.parse(record.restarting.at) + record.restarting.gracePeriodMs + RESTART_SLACK_MS;
    if (!overdue || facts.alive) return { state: 'STARTING', reason: 'Restarting', message: `restarting on request (asked at ${record.restarting.at})` };
    return { state: 'FAILED', reason: 'RestartInterrupted', message: `a restart asked for at ${record.restarting.at} did not complete (the weft process restarting it ended)` };
  }
  const code = facts.exitCode;
  if (code !== undefined) {
    if (facts.alive && !runsToCompletion(facts.kind) && !stopping) {
      return { state: 'STARTING', exitCode: code, reason: 'CrashLoopBackOff', message: `exited with code ${code}; restart ${facts.restarts + 1} pending${facts.lastLogLine()}` };
    }
    if (facts.alive) return { state: 'STOPPING', exitCode: code };
    if (code === 0 && !(stopping && !runsToCompletion(facts.kind))) return { state: 'COMPLETED', exitCode: code, reason: 'Completed' };
    if (stopping) return { state: 'KILLED', exitCode: code, reason: code === 137 ? 'Killed' : 'Stopped', message: `stopped (exit code ${code})` };
    return { state: 'FAILED', exitCode: code, reason: code === 137 ? 'OOMKilled or killed' : 'Error', message: `exited with code ${code}${facts.lastLogLine()}` };
  }
  if (!facts.alive) {
    if (!record.supervisorPid) return { state: 'PENDING' };
    return {
      state: stopping ? 'KILLED' : 'FAILED',
      reason: 'Lost',
      message: `the instance's supervisor (pid ${record.supervisorPid}) ended without recording an exit code`,
    };
  }
  return { state: stopping ? 'STOPPING' : facts.childStarted ? 'RUNNING' : 'STARTING' };
}

/** One instance as observed: its record and its status. */
export interface ObservedInstance {
  runnable: string;
  record: Pick<InstanceRecord, 'id' | 'supervisorPid' | 'removed'>;
  status: InstanceStatus;
}

/**
 * The run as the shared derivation sees it. Instances scaled away leave the status once
 * ended; a failed long-running instance is not replaced here (its supervisor restarts the
 * program in place, so FAILED means it gave up or was lost).
 */
export function runObservation(
  record: Pick<RunRecord, 'spec' | 'runnables' | 'final' | 'stopRequested' | 'suspended' | 'startDeadline' | 'reachedRunning'>,
  instances: ObservedInstance[],
): RunObservation {
  const live = instances.filter((v) => !isTerminalInstance(v.status.state) && v.record.supervisorPid);
  const runnables: RunnableObservation[] = record.spec.runnables.map((r) => ({
    name: r.name,
    kind: r.kind,
    desired: record.runnables[r.name]?.desired ?? r.instances,
    instances: instances.filter((v) => v.runnable === r.name && !(v.record.removed && isTerminalInstance(v.status.state))).map((v) => v.status),
    replacesFailed: false,
  }));
  return {
    runnables,
    recorded: record.final,
    stop: record.stopRequested ? { kind: record.stopRequested.kind, remaining: live.length, ended: live.length === 0 } : undefined,
    suspended: Boolean(record.suspended) && live.length > 0,
    startDeadline: record.startDeadline,
    reachedRunning: record.reachedRunning,
  };
}
