// Reading processes from /proc: identity (pid + start time, so a recycled pid
// is never mistaken for ours), cpu time and resident memory.
import { readFileSync } from 'node:fs';
import { promises as fs } from 'node:fs';

export const CLOCK_TICKS = 100; // USER_HZ on Linux

function statFields(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    const close = text.lastIndexOf(')');
    return text.slice(close + 2).trim().split(/\s+/);
  } catch {
    return undefined;
  }
}

/** The process start time in clock ticks since boot (field 22 of /proc/pid/stat), or undefined when the pid is gone. */
export function processStartTime(pid: number): string | undefined {
  const fields = statFields(pid);
  if (!fields) return undefined;
  // fields[0] is field 3 (state); start time is field 22 -> index 19.
  if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
  return fields[19];
}

/** True when `pid` is alive and is the same process as the one recorded with `startTime`. */
export function isSameProcess(pid: number | undefined, startTime: string | undefined): boolean {
  if (!pid) return false;
  const now = processStartTime(pid);
  return now !== undefined && (startTime === undefined || now === startTime);
}

/** utime + stime in clock ticks. */
export function cpuTicks(pid: number): number | undefined {
  const fields = statFields(pid);
  if (!fields) return undefined;
  return Number(fields[11]) + Number(fields[12]);
}

export async function residentBytes(pid: number): Promise<number | undefined> {
  try {
    const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Memory charged to a cgroup (v2 memory.current or v1 memory.usage_in_bytes), when readable. */
export async function cgroupMemoryBytes(cgroupsPath: string): Promise<number | undefined> {
  for (const file of [`/sys/fs/cgroup${cgroupsPath}/memory.current`, `/sys/fs/cgroup/memory${cgroupsPath}/memory.usage_in_bytes`]) {
    try {
      const value = Number((await fs.readFile(file, 'utf8')).trim());
      if (Number.isFinite(value)) return value;
    } catch {
      // try the next layout
    }
  }
  return undefined;
}

/** Samples cpu usage of several pids over `ms`, in millicores. */
export async function sampleCpu(pids: number[], ms = 250): Promise<Map<number, number>> {
  const before = new Map<number, number>();
  for (const pid of pids) {
    const t = cpuTicks(pid);
    if (t !== undefined) before.set(pid, t);
  }
  const start = process.hrtime.bigint();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  const out = new Map<number, number>();
  for (const [pid, t0] of before) {
    const t1 = cpuTicks(pid);
    if (t1 === undefined) continue;
    out.set(pid, Math.round(((t1 - t0) / CLOCK_TICKS / elapsed) * 1000));
  }
  return out;
}
