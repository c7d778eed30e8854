// Runs a command only while this process leads an election (`weft coord elect
// --name N -- <command>`): it starts when elected, is stopped (SIGTERM, then
// SIGKILL after a grace period) as soon as leadership is lost, and its exit code
// is the result. One term only: after the command ends, this candidate resigns,
// so a supervisor (systemd, Kubernetes) restarts the whole thing as a fresh candidate.
import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import type { LeaderElector } from './types.js';

export interface LeaderCommandOptions {
  /** Election name. */
  name: string;
  /** This candidate's unique id. */
  candidateId: string;
  /** argv of the command. */
  command: string[];
  /** Time between SIGTERM and SIGKILL when the command must stop (default 10 s). */
  gracePeriodMs?: number;
  /** Extra environment (WEFT_LEADER_NAME and WEFT_LEADER_TOKEN are added). */
  env?: NodeJS.ProcessEnv;
  /** Aborting stops the command like a loss of leadership (e.g. on SIGINT/SIGTERM to weft). */
  signal?: AbortSignal;
  onEvent?(event: LeaderCommandEvent): void;
}

export type LeaderCommandEvent =
  | { ev: 'elected'; id: string; token: number; at: number }
  | { ev: 'started'; id: string; pid: number; at: number }
  | { ev: 'stepdown'; id: string; reason: string; at: number }
  | { ev: 'stopping'; id: string; signal: 'SIGTERM' | 'SIGKILL'; at: number }
  | { ev: 'exited'; id: string; code: number; at: number };

export interface LeaderCommandResult {
  /** The command's exit code (128 + n when a signal n ended it); 128 + SIGTERM/SIGINT when aborted before leading. */
  code: number;
  /** Why the command was stopped by weft, when it was (leadership lost, or aborted). */
  stoppedBecause?: string;
  /** Whether the command ran at all. */
  ran: boolean;
}

/** Exit code of a child as a shell reports it. */
function exitCode(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  const n = signal ? constants.signals[signal] : undefined;
  return 128 + (n ?? 1);
}

export async function runWhileLeader(elector: LeaderElector, options: LeaderCommandOptions): Promise<LeaderCommandResult> {
  const { name, candidateId: id, command } = options;
  if (command.length === 0) throw new Error('a command to run while leader is needed (after --)');
  const grace = options.gracePeriodMs ?? 10_000;
  const emit = (e: LeaderCommandEvent) => options.onEvent?.(e);
  let child: ChildProcess | undefined;
  let stoppedBecause: string | undefined;
  let settle!: (result: LeaderCommandResult | Error) => void;
  const done = new Promise<LeaderCommandResult | Error>((resolve) => (settle = resolve));

  /** Signals the command's whole process group (it runs in its own), so its children stop too. */
  const signalGroup = (sig: 'SIGTERM' | 'SIGKILL') => {
    if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return;
    emit({ ev: 'stopping', id, signal: sig, at: Date.now() });
    try {
      process.kill(-child.pid, sig);
    } catch {
      // already gone
    }
  };
  const stop = (why: string) => {
    stoppedBecause ??= why;
    if (!child) {
      // Not leading yet: nothing runs, give up the candidacy.
      settle({ code: 128 + constants.signals.SIGTERM, stoppedBecause, ran: false });
      return;
    }
    if (child.exitCode !== null || child.signalCode !== null) return;
    signalGroup('SIGTERM');
    const timer = setTimeout(() => signalGroup('SIGKILL'), grace);
    child.once('exit', () => clearTimeout(timer));
  };

  const handle = await elector.electLeader(name, id, {
    onElected(token) {
      emit({ ev: 'elected', id, token, at: Date.now() });
      if (child || stoppedBecause) return; // one term only
      child = spawn(command[0]!, command.slice(1), {
        stdio: 'inherit',
        detached: true, // own process group: a stop reaches everything the command started
        env: { ...process.env, ...options.env, WEFT_LEADER_NAME: name, WEFT_LEADER_TOKEN: String(token) },
      });
      child.once('error', (e) => settle(new Error(`cannot run ${command[0]}: ${e.message}`)));
      child.once('spawn', () => emit({ ev: 'started', id, pid: child!.pid!, at: Date.now() }));
      child.once('exit', (code, signal) => {
        const result = exitCode(code, signal);
        emit({ ev: 'exited', id, code: result, at: Date.now() });
        settle({ code: result, stoppedBecause, ran: true });
      });
    },
    onStepDown(reason) {
      emit({ ev: 'stepdown', id, reason, at: Date.now() });
      if (child) stop(`leadership lost: ${reason}`);
    },
  });
  const onAbort = () => stop('asked to stop');
  if (options.signal?.aborted) onAbort();
  else options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const result = await done;
    if (result instanceof Error) throw result;
    return result;
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    await handle.resign();
  }
}
