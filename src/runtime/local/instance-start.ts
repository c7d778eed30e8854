// Starting one instance: its environment (the in-container contract), its runc bundle or host
// process, and the supervisor (supervisor.ts) that runs it detached, restarts it and records its end.
import { execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { writeFileAtomic } from '../../common/index.js';
import { COMMANDS_FILE, FILES_PATH, instanceEnvironment } from '../contract/index.js';
import { runsToCompletion, type RunnableSpec } from '../spec.js';
import { driverArgs, localSparkConf, requireSpark } from '../spark/index.js';
import { hostProcess, runcConfig } from './bundle.js';
import { LocalRuntimeError } from './errors.js';
import { resolveImageUser } from './image-user.js';
import type { ImageStore } from './images.js';
import { PORT_PROXY_SCRIPT } from './port-proxy.js';
import { processStartTime } from './procfs.js';
import type { InstanceRecord, RunRecord } from './records.js';
import type { RunStore } from './run-store.js';
import { chownTree, privateDir, PRIVATE_FILE, readText } from './state-files.js';
import { SUPERVISOR_SCRIPT } from './supervisor.js';

const execFileAsync = promisify(execFile);

/** What starting an instance needs of the runtime. */
export interface InstanceHost {
  store: RunStore;
  images: ImageStore;
  runc: string;
  runcRoot: string;
  java: string;
  limits: boolean;
  modeNote: string;
}

/** Starts the supervisor of one instance (its program with it); records the supervisor's pid on `inst`. */
export async function startSupervisor(runtime: InstanceHost, record: RunRecord, r: RunnableSpec, inst: InstanceRecord): Promise<void> {
  const runDir = runtime.store.runDir(record.runId);
  const instDir = path.join(runDir, inst.dir);
  for (const f of ['exit', 'child', 'stop', 'started']) await fs.rm(path.join(instDir, f), { force: true });
  const rr = record.runnables[r.name];
  const filesDir = path.join(runDir, 'files', r.name);
  const program = localProgram(r);
  const inContainer = record.mode === 'runc';
  // A host process has no container paths: it is given the host paths of the same files.
  const weftEnv = instanceEnvironment(
    {
      runtime: 'local',
      runId: record.runId,
      app: record.app,
      runnable: r.name,
      instanceCount: r.instances,
      commandsFile: inContainer ? COMMANDS_FILE : path.join(instDir, 'podinfo', 'annotations'),
      filesDir: inContainer ? FILES_PATH : filesDir,
    },
    { instanceId: inst.id, podName: inst.containerId, namespace: runtime.store.runsDir, ports: inst.ports },
  );
  // From the local store: restarts and scale-ups never need the registry again.
  const config = await runtime.images.configOf(rr.image.rootfs).catch(() => runtime.images.prepare(rr.image.reference).then((i) => i.config));
  let command: string[];
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  let cwd = instDir;
  if (inContainer) {
    const bundle = path.join(instDir, 'bundle');
    await fs.mkdir(bundle, { recursive: true });
    const user = await resolveImageUser(rr.image.rootfs, config.config?.User);
    // The run's files are private to weft's user; a container running as another user gets them as its own.
    if (user.uid !== 0) await chownTree(filesDir, user);
    const cfg = runcConfig({
      user,
      config,
      runnable: program,
      rootfs: rr.image.rootfs,
      weftEnv,
      podinfoDir: path.join(instDir, 'podinfo'),
      filesDir,
      hostname: `${r.name}-${inst.id}`,
      cgroupsPath: runtime.limits ? `/weft/${inst.containerId}` : undefined,
      limits: runtime.limits,
      netnsPath: record.network === 'private' ? `/run/netns/${inst.containerId}` : undefined,
    });
    if (record.network === 'private') {
      Object.assign(env, {
        WEFT_NETNS: inst.containerId,
        WEFT_PUBLISH_PORTS: Object.values(inst.ports).join(' '),
        WEFT_NODE: process.execPath,
        WEFT_PORT_PROXY: PORT_PROXY_SCRIPT,
      });
    }
    await fs.writeFile(path.join(bundle, 'config.json'), JSON.stringify(cfg, null, 2), { mode: PRIVATE_FILE });
    await execFileAsync(runtime.runc, ['--root', runtime.runcRoot, 'delete', '--force', inst.containerId]).catch(() => undefined);
    command = [runtime.runc, '--root', runtime.runcRoot, 'run', '--bundle', bundle, inst.containerId];
    env.WEFT_AFTER_EXIT = `'${runtime.runc}' --root '${runtime.runcRoot}' delete --force '${inst.containerId}'`;
  } else {
    const host = hostProcess({ config, runnable: program, rootfs: rr.image.rootfs, weftEnv, podinfoDir: path.join(instDir, 'podinfo'), filesDir, hostJava: runtime.java });
    command = host.argv;
    Object.assign(env, host.env);
    cwd = existsSync(host.cwd) ? host.cwd : rr.image.rootfs;
    await fs.writeFile(path.join(instDir, 'host-process.json'), JSON.stringify({ ...host, note: runtime.modeNote }, null, 2), { mode: PRIVATE_FILE });
  }
  const script = path.join(runtime.store.stateDir, 'supervisor.sh');
  if (readText(script) !== SUPERVISOR_SCRIPT.trim()) {
    await privateDir(runtime.store.stateDir);
    // A temp name of this process's own: two weft processes on one state dir (the CLI twice, two masters) may write it at once.
    await writeFileAtomic(script, SUPERVISOR_SCRIPT, 0o755);
  }
  const log = openSync(path.join(instDir, 'log'), 'a', PRIVATE_FILE);
  try {
    const child = spawn('/bin/sh', [script, instDir, runsToCompletion(r.kind) ? 'never' : 'always', ...command], {
      cwd,
      env,
      detached: true,
      stdio: ['ignore', log, log],
    });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (e) => reject(new LocalRuntimeError(`cannot start the supervisor of ${r.name}/${inst.id}: ${e.message}`)));
    });
    child.unref();
    inst.supervisorPid = child.pid;
    inst.supervisorStart = child.pid ? processStartTime(child.pid) : undefined;
  } finally {
    closeSync(log);
  }
}

/**
 * What an instance of `r` runs: the spec as is, or for a Spark runnable its driver in local[N]
 * mode (weft's launcher in the image takes `driver --conf ... <main> <args>`), on loopback only.
 */
export function localProgram(r: RunnableSpec): RunnableSpec {
  if (r.kind !== 'spark') return r;
  const spark = requireSpark(r);
  return { ...r, args: driverArgs(localSparkConf(r), spark.mainClass, r.args), env: { SPARK_LOCAL_IP: '127.0.0.1', SPARK_LOCAL_HOSTNAME: 'localhost', ...r.env } };
}
