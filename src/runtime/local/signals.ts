// Signalling instances from outside weft's process: shell snippets run detached,
// so an escalation to SIGKILL happens even when weft exits first.
import { spawn } from 'node:child_process';
import type { InstanceRecord } from './records.js';

/** A shell test that holds while the instance's current supervisor (pid and start time) is alive. */
export function supervisorAliveTest(inst: Pick<InstanceRecord, 'supervisorPid' | 'supervisorStart'>): string {
  const pid = inst.supervisorPid ?? 0;
  if (!inst.supervisorStart) return `[ -e /proc/${pid} ]`;
  // Field 22 of /proc/<pid>/stat; the supervisor's command name is "sh" (no spaces to shift fields).
  return `[ "$(cut -d' ' -f22 /proc/${pid}/stat 2>/dev/null)" = '${inst.supervisorStart}' ]`;
}

/** Runs a shell snippet detached from this process (it survives weft exiting). */
export function detached(script: string): void {
  const child = spawn('/bin/sh', ['-c', script], { detached: true, stdio: 'ignore' });
  child.on('error', () => undefined);
  child.unref();
}

/** The runc binary and its state root, as every `runc` command of this runtime is given them. */
export interface RuncCommand {
  bin: string;
  root: string;
}

/** What a signal loop needs of an instance: its directory, container and current supervisor. */
export interface SignalTarget {
  dir: string;
  record: Pick<InstanceRecord, 'containerId' | 'supervisorPid' | 'supervisorStart'>;
}

/**
 * A shell loop that waits `afterSeconds`, then sends `runc kill <id> SIG` until the
 * instance has recorded its exit (TERM: until it was delivered once); it ends when the
 * instance ends or its directory is removed, at most 60 s after it starts signalling.
 * It is bound to the attempt it was started for (its supervisor's pid and start time):
 * once that supervisor is gone, a restarted attempt in the same directory is not its target.
 */
export function runcSignalLoop(runc: RuncCommand, target: SignalTarget, sig: 'TERM' | 'KILL', afterSeconds: number): string {
  const kill = `'${runc.bin}' --root '${runc.root}' kill '${target.record.containerId}' ${sig} 2>/dev/null`;
  const alive = `[ -d '${target.dir}' ] && [ ! -e '${target.dir}/exit' ] && ${supervisorAliveTest(target.record)}`;
  return (
    `end=$(( $(date +%s) + ${afterSeconds} )); while ${alive} && [ "$(date +%s)" -lt "$end" ]; do sleep 0.2; done; ` +
    `i=0; while ${alive} && [ $i -lt 300 ]; do if ${kill}; then ${sig === 'TERM' ? 'exit 0' : 'true'}; fi; sleep 0.2; i=$((i+1)); done`
  );
}

/** A watchdog that SIGKILLs a host-mode program `afterSeconds` from now unless its instance ends first. */
export function hostKillWatchdog(target: SignalTarget, pid: number, afterSeconds: number): string {
  return (
    `end=$(( $(date +%s) + ${afterSeconds} )); while [ -d '${target.dir}' ] && [ ! -e '${target.dir}/exit' ] && ${supervisorAliveTest(target.record)}; do ` +
    `if [ "$(date +%s)" -ge "$end" ]; then kill -9 ${pid} 2>/dev/null; exit 0; fi; sleep 0.2; done`
  );
}
