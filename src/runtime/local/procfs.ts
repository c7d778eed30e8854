// Reading processes from /proc: identity (pid + start time, so a recycled pid
// is never mistaken for ours), cpu time and resident memory.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
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

/** True when `pid` is the host-mode program of that instance (its environment names it). */
export function isProgramOf(pid: number, runId: string, runnable: string, instance: string): boolean {
  try {
    const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    return env.includes(`WEFT_RUN_ID=${runId}`) && env.includes(`WEFT_RUNNABLE=${runnable}`) && env.includes(`WEFT_INSTANCE_ID=${instance}`);
  } catch {
    return false;
  }
}

/** Child pids of a process (for `runc run`: the container's init). */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      for (const c of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/)) if (c) out.push(Number(c));
    }
  } catch {
    // gone
  }
  return out;
}

/** Inodes of sockets listening on a TCP port (any address, IPv4 or IPv6) in the network namespace of `pid`. */
function listeningInodes(pid: number, port: number): Set<string> {
  const inodes = new Set<string>();
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  for (const file of [`/proc/${pid}/net/tcp`, `/proc/${pid}/net/tcp6`]) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A') continue;
      if (f[1].endsWith(`:${hex}`)) inodes.add(f[9]);
    }
  }
  return inodes;
}

/** True when process `pid` holds a socket listening on `port`. */
export function listensOn(pid: number, port: number): boolean {
  const inodes = listeningInodes(pid, port);
  if (inodes.size === 0) return false;
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m && inodes.has(m[1])) return true;
    }
  } catch {
    // gone
  }
  return false;
}
