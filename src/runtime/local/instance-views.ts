// What each instance of a run is doing now, read from the files its supervisor writes
// (exit, child, restarts, started) and from /proc (is the program up, does it listen).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { RunnableSpec } from '../spec.js';
import type { InstanceState } from '../state.js';
import { instanceVerdict } from './observe.js';
import { childrenOf, isSameProcess, listensOn } from './procfs.js';
import type { InstanceRecord, RunRecord } from './records.js';
import { readText } from './state-files.js';

export interface InstanceView {
  runnable: string;
  record: InstanceRecord;
  dir: string;
  state: InstanceState;
  exitCode?: number;
  reason?: string;
  message?: string;
  restarts: number;
  childPid?: number;
  startedAt?: string;
}

/** One instance's view, from its files (no /proc readiness check: see instanceViews). */
export function viewInstance(runDir: string, record: RunRecord, runnable: RunnableSpec, inst: InstanceRecord): InstanceView {
  const dir = path.join(runDir, inst.dir);
  const exitText = readText(path.join(dir, 'exit'));
  const childText = readText(path.join(dir, 'child'));
  const restarts = Number(readText(path.join(dir, 'restarts')) ?? 0);
  const started = readText(path.join(dir, 'started'));
  const verdict = instanceVerdict({
    kind: runnable.kind,
    record: inst,
    alive: isSameProcess(inst.supervisorPid, inst.supervisorStart),
    exitCode: exitText !== undefined && exitText !== '' ? Number(exitText) : undefined,
    childStarted: Boolean(childText),
    restarts,
    runStopping: Boolean(record.stopRequested),
    now: Date.now(),
    lastLogLine: () => lastLogLine(dir),
  });
  return {
    runnable: runnable.name,
    record: inst,
    dir,
    ...verdict,
    restarts,
    childPid: childText ? Number(childText) : undefined,
    startedAt: started ? new Date(Number(started)).toISOString() : undefined,
  };
}

function lastLogLine(dir: string): string {
  try {
    const text = readFileSync(path.join(dir, 'log'), 'utf8');
    const lines = text.split('\n').filter((l) => l.trim() && !l.startsWith('[weft]'));
    const last = lines[lines.length - 1];
    return last ? `: ${last.slice(0, 300)}` : '';
  } catch {
    return '';
  }
}

/**
 * Every instance's view. An instance counts as RUNNING once its program
 * runs (runc: the container process exists) and, when it announces ports,
 * once they accept connections (a TCP readiness check, as a Service only
 * lists ready endpoints); before that it is STARTING.
 */
export async function instanceViews(runDir: string, record: RunRecord): Promise<InstanceView[]> {
  const out: InstanceView[] = [];
  for (const r of record.spec.runnables) {
    for (const inst of record.runnables[r.name]?.instances ?? []) out.push(viewInstance(runDir, record, r, inst));
  }
  await Promise.all(
    out.map(async (v) => {
      if (v.state !== 'RUNNING') return;
      const programPid = record.mode === 'runc' ? (v.childPid ? childrenOf(v.childPid)[0] : undefined) : v.childPid;
      if (!programPid) {
        v.state = 'STARTING';
        v.reason = 'ContainerCreating';
        return;
      }
      const ports = Object.values(v.record.ports);
      // The program itself must listen (not just anyone on that port): its socket inodes are matched.
      if (ports.length && !ports.every((p) => listensOn(programPid, p))) {
        v.state = 'STARTING';
        v.reason = 'NotReady';
        v.message = `waiting for port ${ports.join(', ')} to accept connections`;
      }
    }),
  );
  return out;
}
