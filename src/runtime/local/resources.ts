// The resource report of a run: each live instance's requests and limits beside what it uses
// (CPU sampled from /proc, memory from its cgroup in runc mode with limits, else its resident set).
import { execFile } from 'node:child_process';
import os from 'node:os';
import { promisify } from 'node:util';
import type { ResourceReport, ResourceReportEntry } from '../api.js';
import type { InstanceView } from './instance-views.js';
import { isTerminalInstance } from './observe.js';
import { cgroupMemoryBytes, residentBytes, sampleCpu } from './procfs.js';
import type { RunRecord } from './records.js';
import type { RuncCommand } from './signals.js';

const execFileAsync = promisify(execFile);

export async function resourceReport(record: RunRecord, all: InstanceView[], host: { runc: RuncCommand; limits: boolean }): Promise<ResourceReport> {
  const views = all.filter((v) => !(v.record.removed && isTerminalInstance(v.state)));
  const pids = new Map<InstanceView, number>();
  for (const v of views) {
    if (v.state !== 'RUNNING' && v.state !== 'STOPPING') continue;
    const pid = record.mode === 'runc' ? await containerPid(host.runc, v.record.containerId) : v.childPid;
    if (pid) pids.set(v, pid);
  }
  const cpu = await sampleCpu([...pids.values()]);
  const entries: ResourceReportEntry[] = [];
  for (const v of views) {
    const r = record.spec.runnables.find((x) => x.name === v.runnable)!;
    const pid = pids.get(v);
    let memoryBytes: number | undefined;
    if (pid) {
      memoryBytes = record.mode === 'runc' && host.limits ? await cgroupMemoryBytes(`/weft/${v.record.containerId}`) : undefined;
      memoryBytes ??= await residentBytes(pid);
    }
    const entry: ResourceReportEntry & { pid?: number } = {
      runnable: v.runnable,
      instance: v.record.id,
      host: os.hostname(),
      containerId: record.mode === 'runc' ? v.record.containerId : pid ? `pid-${pid}` : undefined,
      state: v.state,
      cpu: r.resources.cpu,
      memory: r.resources.memory,
      usage: pid ? { cpuMillicores: cpu.get(pid), memoryBytes } : undefined,
    };
    if (pid) entry.pid = pid;
    entries.push(entry);
  }
  return { runId: record.runId, app: record.app, instances: entries };
}

async function containerPid(runc: RuncCommand, containerId: string): Promise<number | undefined> {
  try {
    const { stdout } = await execFileAsync(runc.bin, ['--root', runc.root, 'state', containerId]);
    const state = JSON.parse(stdout) as { pid?: number; status?: string };
    return state.status === 'running' && state.pid ? state.pid : undefined;
  } catch {
    return undefined;
  }
}
