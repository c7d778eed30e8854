// The OCI runtime bundle (config.json) of one instance, and the host-process
// equivalent (argv, env, cwd) for machines where runc cannot run.
import os from 'node:os';
import path from 'node:path';
import type { ImageConfig } from '../../image/index.js';
import { parseQuantityBytes, type RunnableSpec } from '../spec.js';
import type { ImageUser } from './image-user.js';
import { defaultSeccomp } from './seccomp.js';

import { FILES_PATH, PODINFO_PATH } from '../contract/index.js';

export { FILES_PATH, PODINFO_PATH };

/** Converts a Kubernetes quantity to bytes (256Mi, 1Gi, 500M, 1000); the spec's own parser, so both agree. */
export function memoryBytes(quantity: string): number {
  return parseQuantityBytes(quantity);
}

/** Converts a cpu quantity ("500m", "1", "0.5") to millicores. */
export function cpuMillicores(quantity: string): number {
  return quantity.endsWith('m') ? Number(quantity.slice(0, -1)) : Math.round(Number(quantity) * 1000);
}

/** The process argv Kubernetes would run: the image Entrypoint, then the spec's args or else the image Cmd. */
export function processArgs(config: ImageConfig, r: RunnableSpec): string[] {
  const entrypoint = config.config?.Entrypoint ?? [];
  const cmd = r.args.length > 0 ? r.args : (config.config?.Cmd ?? []);
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) throw new Error(`runnable ${r.name}: the image has no Entrypoint or Cmd and the spec gives no args`);
  return args;
}

/** Merges KEY=value lists; later entries win, order of first appearance kept. */
export function mergeEnv(...lists: Array<string[] | Record<string, string>>): string[] {
  const map = new Map<string, string>();
  for (const list of lists) {
    const entries = Array.isArray(list) ? list.map((e) => [e.slice(0, e.indexOf('=') < 0 ? e.length : e.indexOf('=')), e.slice(e.indexOf('=') + 1)] as const) : Object.entries(list);
    for (const [k, v] of entries) map.set(k, v);
  }
  return [...map].map(([k, v]) => `${k}=${v}`);
}

export interface BundleInput {
  config: ImageConfig;
  runnable: RunnableSpec;
  rootfs: string;
  /** Environment added by weft (WEFT_*), before the spec's env. */
  weftEnv: Record<string, string>;
  podinfoDir: string;
  filesDir?: string;
  hostname: string;
  cgroupsPath?: string;
  /** Apply cpu/memory limits through cgroups. */
  limits: boolean;
  /** The image's User, resolved (default root). */
  user?: ImageUser;
  /** A network namespace to join (private network); without it the host's network is shared. */
  netnsPath?: string;
}

/** Capabilities of local containers (a subset of podman's defaults; see docs/security.md). */
export const CONTAINER_CAPABILITIES = ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'];

/** Paths podman masks (empty/null) and makes read-only in /proc and /sys by default. */
export const MASKED_PATHS = [
  '/proc/acpi',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/fs/selinux',
  '/sys/dev/block',
  '/sys/devices/virtual/powercap',
];
/** podman's default `pids_limit`. */
export const PIDS_LIMIT = 2048;

export const READONLY_PATHS = ['/proc/asound', '/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/**
 * A runc config.json: the image's process (entry point, env, working dir, its
 * User), host networking (announced ports reachable on 127.0.0.1), a read-only
 * root with a private /tmp, the podinfo directory (commands) and the run's files
 * bind-mounted read-only, no process.rlimits (hosts such as the test machines
 * forbid raising them), memory/cpu limits from the spec, podman's default
 * seccomp filter and masked paths, and a cgroup namespace with the container's
 * own cgroup mounted read-only (so a JVM sizes its heap from the container's limit).
 */
export function runcConfig(input: BundleInput): Record<string, unknown> {
  const { config, runnable: r } = input;
  const env = mergeEnv(['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], config.config?.Env ?? [], input.weftEnv, r.env);
  const mounts: Array<Record<string, unknown>> = [
    { destination: '/proc', type: 'proc', source: 'proc' },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777'] },
    // With the cgroup namespace: the container's own cgroups as the root, read-only.
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
    // Name resolution from the host, as host networking implies.
    { destination: '/etc/resolv.conf', type: 'bind', source: '/etc/resolv.conf', options: ['rbind', 'ro'] },
    { destination: '/etc/hosts', type: 'bind', source: '/etc/hosts', options: ['rbind', 'ro'] },
    { destination: PODINFO_PATH, type: 'bind', source: input.podinfoDir, options: ['rbind', 'ro'] },
  ];
  if (input.filesDir) mounts.push({ destination: FILES_PATH, type: 'bind', source: input.filesDir, options: ['rbind', 'ro'] });
  const resources: Record<string, unknown> = { devices: [{ allow: false, access: 'rwm' }] };
  if (input.limits) {
    // podman's default pids limit: a fork bomb stays inside the container.
    resources.pids = { limit: PIDS_LIMIT };
    resources.memory = { limit: memoryBytes(r.resources.memory) };
    const millis = cpuMillicores(r.resources.cpu);
    if (millis > 0) resources.cpu = { quota: Math.max(1000, millis * 100), period: 100_000 };
  }
  const seccomp = defaultSeccomp(CONTAINER_CAPABILITIES);
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: input.user ?? { uid: 0, gid: 0 },
      args: processArgs(config, r),
      env,
      cwd: config.config?.WorkingDir || '/',
      capabilities: Object.fromEntries(['bounding', 'effective', 'permitted'].map((k) => [k, CONTAINER_CAPABILITIES])),
      noNewPrivileges: true,
    },
    root: { path: input.rootfs, readonly: true },
    hostname: input.hostname,
    mounts,
    linux: {
      resources,
      ...(input.cgroupsPath ? { cgroupsPath: input.cgroupsPath } : {}),
      // Without netnsPath no network namespace: host networking (docs/security.md says why).
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'cgroup' }, ...(input.netnsPath ? [{ type: 'network', path: input.netnsPath }] : [])],
      maskedPaths: MASKED_PATHS,
      readonlyPaths: READONLY_PATHS,
      ...(seccomp ? { seccomp } : {}),
    },
  };
}

export interface HostProcess {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  notes: string[];
}

/**
 * The host-process equivalent: the image's program run with this machine's
 * JVM, every `/app` path (weft's image layout) rewritten into the unpacked
 * rootfs, and the image's JAVA_HOME/PATH replaced by the host's.
 */
export function hostProcess(input: Omit<BundleInput, 'limits' | 'hostname' | 'cgroupsPath'> & { hostJava: string }): HostProcess {
  const { config, runnable: r, rootfs } = input;
  const notes: string[] = [];
  const rewrite = (s: string): string => s.replace(/(^|[:=\s])\/app(?=\/|$|:)/g, (_m, lead: string) => `${lead}${path.join(rootfs, 'app')}`);
  const argv = processArgs(config, r).map(rewrite);
  const exe = argv[0];
  if (exe === 'java' || exe.endsWith('/bin/java')) {
    if (exe !== input.hostJava) notes.push(`java: ${exe} -> ${input.hostJava} (the host's JVM)`);
    argv[0] = input.hostJava;
  } else {
    notes.push(`the entry point ${exe} is not java: it is run from the host's PATH`);
  }
  const imageEnv = Object.fromEntries(
    mergeEnv(config.config?.Env ?? [])
      .map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)])
      .filter(([k]) => k !== 'PATH' && k !== 'JAVA_HOME' && k !== 'HOME'),
  );
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? os.homedir(),
    ...imageEnv,
    ...input.weftEnv,
    ...Object.fromEntries(Object.entries(r.env).map(([k, v]) => [k, rewrite(v)])),
  };
  // Normalised as an absolute path first, so `..` in the image's WorkingDir stops at the rootfs.
  const workdir = path.posix.normalize(`/${config.config?.WorkingDir || '/'}`);
  const cwd = path.join(rootfs, workdir);
  return { argv, env, cwd, notes };
}
