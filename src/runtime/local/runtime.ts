// The local backend: runs an app spec's images on this machine with runc (or,
// where runc cannot run, as host processes with the host's JVM). All state is
// in files under the state directory, so a restarted weft process finds every
// run, verifies its processes, and carries on.
import { execFile, spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type {
  Endpoint,
  InstanceStatus,
  LocalRuntimeOptions,
  LogLine,
  LogOptions,
  ResourceReport,
  ResourceReportEntry,
  RunnableStatus,
  RunRequest,
  RunStatus,
  Runtime,
  StatusListener,
} from '../api.js';
import { RunIdTakenError } from '../runid.js';
import { runsToCompletion, type AppSpec, type RunnableSpec } from '../spec.js';
import { driverArgs, localSparkConf, requireSpark } from '../spark/index.js';
import { COMMANDS_FILE, commandAnnotation, FILES_PATH, formatAnnotations, instanceAnnotations, instanceEnvironment, parseAnnotations, portEnvName, runLabels } from '../contract/index.js';
import { isTerminal, type InstanceState, type RunState } from '../state.js';
import { hostProcess, runcConfig } from './bundle.js';
import { ImageError, ImageStore } from './images.js';
import { withFileLock } from './run-lock.js';
import { PORT_PROXY_SCRIPT } from './port-proxy.js';
import { resolveImageUser } from './image-user.js';
import { cgroupMemoryBytes, childrenOf, isProgramOf, isSameProcess, listensOn, processStartTime, residentBytes, sampleCpu } from './procfs.js';
import { freePort, portIsFree } from './ports.js';
import { chownTree, privateDir, PRIVATE_DIR, PRIVATE_FILE, readText } from './state-files.js';
import { detached, hostKillWatchdog, runcSignalLoop, type RuncCommand } from './signals.js';
import { streamLogs } from './logs.js';
import { which } from './which.js';
import { weftStateDir, writeFileAtomic } from '../../common/index.js';
import { SUPERVISOR_SCRIPT } from './supervisor.js';
import { instanceVerdict, isTerminalInstance, runObservation, type ObservedInstance } from './observe.js';
import type { InstanceRecord, LocalMode, LocalNetwork, RunnableRecord, RunRecord } from './records.js';
import { deriveRunState, runnableStatuses } from '../derive/index.js';
import { resolveBuilds } from '../build/index.js';

export type { LocalMode, LocalNetwork } from './records.js';

const execFileAsync = promisify(execFile);

export class LocalRuntimeError extends Error {
  override name = 'LocalRuntimeError';
}

/** The local backend's options (typed in the backend SPI, ../api.ts). */
export type LocalOptions = LocalRuntimeOptions;

export function defaultStateDir(): string {
  return weftStateDir('local');
}






export { formatAnnotations, parseAnnotations, portEnvName };


// ---------------------------------------------------------------------------

interface InstanceView {
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

export class LocalRuntime implements Runtime {
  readonly name = 'local' as const;
  readonly stateDir: string;
  readonly runsDir: string;
  readonly runcRoot: string;
  readonly mode: LocalMode;
  readonly modeNote: string;
  readonly network: LocalNetwork;
  private readonly images: ImageStore;
  private readonly runc: string;
  private readonly runcCommand: RuncCommand;
  private readonly java: string;
  private readonly pollMs: number;
  private readonly limits: boolean;
  private readonly listeners = new Set<StatusListener>();
  private timer: NodeJS.Timeout | undefined;
  private readonly lastSent = new Map<string, string>();
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private polling = false;
  /** Ports handed out recently by this process (their programs may not listen yet): port -> expiry. */
  private readonly recentPorts = new Map<number, number>();

  constructor(options: LocalOptions) {
    this.stateDir = options.stateDir ?? process.env.WEFT_LOCAL_STATE_DIR ?? defaultStateDir();
    this.runsDir = path.join(this.stateDir, 'runs');
    this.runcRoot = path.join(this.stateDir, 'runc');
    this.images = new ImageStore(options.imageDir ?? path.join(this.stateDir, 'images'));
    this.runc = options.runc ?? which('runc') ?? 'runc';
    this.runcCommand = { bin: this.runc, root: this.runcRoot };
    this.java = options.java ?? (process.env.JAVA_HOME ? path.join(process.env.JAVA_HOME, 'bin', 'java') : which('java') ?? 'java');
    this.pollMs = options.pollMs ?? 300;
    this.limits = options.limits ?? true;
    const network = options.network ?? (process.env.WEFT_LOCAL_NETWORK as LocalNetwork | undefined) ?? 'private';
    if (network !== 'host' && network !== 'private') throw new LocalRuntimeError(`unknown local network "${network}": use host or private`);
    this.network = network;
    const wanted = options.mode ?? (process.env.WEFT_LOCAL_MODE as LocalMode | 'auto' | undefined) ?? 'auto';
    if (wanted !== 'runc' && wanted !== 'host' && wanted !== 'auto') throw new LocalRuntimeError(`unknown local mode "${wanted}": use runc, host or auto`);
    const probe = this.probeRunc();
    if (wanted === 'runc') {
      if (!probe.ok) throw new LocalRuntimeError(`runc cannot run here: ${probe.why} (use --local-mode host, or install runc and run as root)`);
      this.mode = 'runc';
      this.modeNote = 'containers run with runc';
    } else if (wanted === 'host' || !probe.ok) {
      this.mode = 'host';
      this.modeNote =
        wanted === 'host'
          ? "host-process mode (asked for): programs run from the image's layers with this machine's JVM, without container isolation"
          : `host-process mode: ${probe.why}; programs run from the image's layers with this machine's JVM, without container isolation`;
    } else {
      this.mode = 'runc';
      this.modeNote = 'containers run with runc';
    }
  }

  private probeRunc(): { ok: boolean; why?: string } {
    const result = spawnSync(this.runc, ['--version'], { encoding: 'utf8' });
    if (result.error) return { ok: false, why: `runc is not installed (${(result.error as NodeJS.ErrnoException).code})` };
    if (result.status !== 0) return { ok: false, why: `runc --version failed: ${result.stderr.trim()}` };
    if (process.getuid?.() !== 0) return { ok: false, why: 'runc needs root here (weft does not set up rootless runc yet)' };
    return { ok: true };
  }

  // -------------------------------------------------------------------------
  // Records

  private runDir(runId: string): string {
    if (!/^[a-z0-9][-a-z0-9]*$/.test(runId)) throw new LocalRuntimeError(`invalid run id "${runId}"`);
    return path.join(this.runsDir, runId);
  }

  private async load(runId: string): Promise<RunRecord | undefined> {
    let text: string;
    try {
      text = await fs.readFile(path.join(this.runDir(runId), 'run.json'), 'utf8');
    } catch {
      return undefined;
    }
    return JSON.parse(text) as RunRecord;
  }

  private async mustLoad(runId: string): Promise<RunRecord> {
    const record = await this.load(runId);
    if (!record) throw new LocalRuntimeError(`no local run ${runId} in ${this.runsDir}: see weft list --runtime local`);
    return record;
  }

  private save(record: RunRecord): Promise<void> {
    return writeFileAtomic(path.join(this.runDir(record.runId), 'run.json'), JSON.stringify(record, null, 2), PRIVATE_FILE);
  }

  /**
   * Serialises read-modify-write of one run's record: within this process (a queue per run)
   * and across weft processes (the run's lock file), on a record read after the lock is taken.
   */
  private async withRun<T>(runId: string, fn: (record: RunRecord) => Promise<T>): Promise<T> {
    const previous = this.locks.get(runId) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(async () => {
      await this.mustLoad(runId);
      return withFileLock(path.join(this.runDir(runId), 'lock'), async () => fn(await this.mustLoad(runId)));
    });
    this.locks.set(runId, next);
    try {
      return await next;
    } finally {
      if (this.locks.get(runId) === next) this.locks.delete(runId);
    }
  }

  // -------------------------------------------------------------------------
  // Submit

  async submit(request: RunRequest): Promise<RunStatus> {
    const { runId } = request;
    // The Runner resolved build: sections already; this covers callers of the SPI alone (the master).
    const spec = await resolveBuilds(request.spec);
    const dir = this.runDir(runId);
    // Checked again atomically below; this early check only saves preparing images for nothing.
    if (existsSync(dir)) throw new RunIdTakenError(runId, `${dir} already exists`);
    const now = Date.now();
    const record: RunRecord = {
      version: 1,
      runId,
      app: spec.name,
      spec,
      mode: this.mode,
      modeNote: this.modeNote,
      network: this.mode === 'runc' ? this.network : undefined,
      createdAt: new Date(now).toISOString(),
      startDeadline: now + spec.startTimeout,
      runnables: {},
    };
    // Images first: a bad reference is reported before anything is written.
    const images: Record<string, RunnableRecord['image']> = {};
    try {
      for (const r of spec.runnables) {
        if (!r.image) throw new LocalRuntimeError(`runnable ${r.name} has no image`);
        const unpacked = await this.images.prepare(r.image);
        images[r.name] = { reference: r.image, digest: unpacked.digest, rootfs: unpacked.rootfs };
      }
    } catch (error) {
      // A run that cannot start is still a run: recorded with its reason, so status, list and --wait find it.
      const message = (error as Error).message;
      const reason = error instanceof LocalRuntimeError ? 'InvalidSpec' : error instanceof ImageError ? error.reason : 'ErrImagePull';
      return this.recordNotStarted(record, images, reason === 'InvalidSpec' ? 'REJECTED' : 'FAILED', reason, message);
    }
    await this.privateStateDirs();
    // Claim the id: a plain mkdir fails when another submission (this or another process) got there
    // first, where a check-then-create would let both write into one run directory.
    try {
      await fs.mkdir(dir, { mode: PRIVATE_DIR });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw new RunIdTakenError(runId, `${dir} already exists`);
      throw error;
    }
    await privateDir(dir);
    for (const r of spec.runnables) {
      record.runnables[r.name] = { desired: r.instances, instances: [], nextId: 0, image: images[r.name] };
      const filesDir = path.join(dir, 'files', r.name);
      await privateDir(filesDir);
      for (const f of request.files.filter((x) => x.runnable === undefined || x.runnable === r.name)) {
        await fs.writeFile(path.join(filesDir, f.name), f.data, { mode: PRIVATE_FILE });
      }
    }
    await this.save(record);
    await this.withRun(runId, async (rec) => {
      try {
        for (const r of rec.spec.runnables) {
          for (let i = 0; i < r.instances; i++) await this.launch(rec, r);
        }
      } catch (error) {
        // Instances already started are stopped: a run that could not start holds nothing.
        rec.final = { state: 'FAILED', reason: 'StartError', message: `cannot start the run: ${(error as Error).message}`, finishedAt: new Date().toISOString() };
        await this.save(rec);
        await this.cleanUpInstances(rec);
        return;
      }
      await this.save(rec);
    });
    const status = await this.status(runId);
    this.kick();
    return status!;
  }

  /** Records a run that ended before any instance started (REJECTED or FAILED, with its reason). */
  private async recordNotStarted(record: RunRecord, images: Record<string, RunnableRecord['image']>, state: RunState, reason: string, message: string): Promise<RunStatus> {
    for (const r of record.spec.runnables) {
      record.runnables[r.name] = { desired: r.instances, instances: [], nextId: 0, image: images[r.name] ?? { reference: r.image ?? '', digest: '', rootfs: '' } };
    }
    record.final = { state, reason, message, finishedAt: new Date().toISOString() };
    await this.privateStateDirs();
    await privateDir(this.runDir(record.runId));
    await this.save(record);
    return this.derive(record);
  }

  /** The state dir and its runs dir, private to weft's user (see PRIVATE_DIR). */
  private async privateStateDirs(): Promise<void> {
    await privateDir(this.stateDir);
    await privateDir(this.runsDir);
  }

  /** Ports of every instance of every live run in the state dir, plus those handed out in the last minute. */
  private async reservedPorts(current: RunRecord): Promise<Set<number>> {
    const taken = new Set<number>();
    const now = Date.now();
    for (const [port, expiry] of this.recentPorts) {
      if (expiry < now) this.recentPorts.delete(port);
      else taken.add(port);
    }
    const records = [current];
    for (const name of await fs.readdir(this.runsDir).catch(() => [] as string[])) {
      if (name === current.runId) continue;
      const r = await this.load(name).catch(() => undefined);
      if (r && !r.final) records.push(r);
    }
    for (const r of records) {
      for (const rr of Object.values(r.runnables)) for (const i of rr.instances) if (!i.removed) Object.values(i.ports).forEach((p) => taken.add(p));
    }
    return taken;
  }

  /** Creates and starts one new instance of a runnable (the record is saved by the caller). */
  private async launch(record: RunRecord, r: RunnableSpec): Promise<InstanceRecord> {
    const rr = record.runnables[r.name];
    // A Spark runnable's one instance is its driver (named as on Kubernetes).
    const id = r.kind === 'spark' ? 'driver' : String(rr.nextId++);
    const containerId = `weft-${record.runId}-${r.name}-${id}`;
    const relDir = path.join('instances', `${r.name}-${id}`);
    const instDir = path.join(this.runDir(record.runId), relDir);
    await fs.rm(instDir, { recursive: true, force: true });
    await privateDir(instDir);
    await fs.mkdir(path.join(instDir, 'podinfo'), { recursive: true });
    // The same files a pod's downward API gives (the contract's labels and annotations).
    await fs.writeFile(path.join(instDir, 'podinfo', 'annotations'), formatAnnotations(instanceAnnotations(r.kind)));
    await fs.writeFile(path.join(instDir, 'podinfo', 'labels'), formatAnnotations(runLabels(record.runId, record.app, r.name)));
    const ports: Record<string, number> = {};
    const taken = await this.reservedPorts(record);
    for (const p of r.ports) {
      // The first instance gets the spec's port when it is free; the others (and a busy port) get a free one.
      ports[p.name] = !taken.has(p.port) && (await portIsFree(p.port)) ? p.port : await freePort();
      taken.add(ports[p.name]);
      this.recentPorts.set(ports[p.name], Date.now() + 60_000);
    }
    const inst: InstanceRecord = { id, dir: relDir, containerId, ports, createdAt: new Date().toISOString() };
    rr.instances.push(inst);
    await this.startSupervisor(record, r, inst);
    return inst;
  }

  private async startSupervisor(record: RunRecord, r: RunnableSpec, inst: InstanceRecord): Promise<void> {
    const runDir = this.runDir(record.runId);
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
      { instanceId: inst.id, podName: inst.containerId, namespace: this.runsDir, ports: inst.ports },
    );
    // From the local store: restarts and scale-ups never need the registry again.
    const config = await this.images.configOf(rr.image.rootfs).catch(() => this.images.prepare(rr.image.reference).then((i) => i.config));
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
        cgroupsPath: this.limits ? `/weft/${inst.containerId}` : undefined,
        limits: this.limits,
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
      await execFileAsync(this.runc, ['--root', this.runcRoot, 'delete', '--force', inst.containerId]).catch(() => undefined);
      command = [this.runc, '--root', this.runcRoot, 'run', '--bundle', bundle, inst.containerId];
      env.WEFT_AFTER_EXIT = `'${this.runc}' --root '${this.runcRoot}' delete --force '${inst.containerId}'`;
    } else {
      const host = hostProcess({ config, runnable: program, rootfs: rr.image.rootfs, weftEnv, podinfoDir: path.join(instDir, 'podinfo'), filesDir, hostJava: this.java });
      command = host.argv;
      Object.assign(env, host.env);
      cwd = existsSync(host.cwd) ? host.cwd : rr.image.rootfs;
      await fs.writeFile(path.join(instDir, 'host-process.json'), JSON.stringify({ ...host, note: this.modeNote }, null, 2), { mode: PRIVATE_FILE });
    }
    const script = path.join(this.stateDir, 'supervisor.sh');
    if (readText(script) !== SUPERVISOR_SCRIPT.trim()) {
      await privateDir(this.stateDir);
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

  // -------------------------------------------------------------------------
  // Status

  private viewInstance(record: RunRecord, runnable: RunnableSpec, inst: InstanceRecord): InstanceView {
    const dir = path.join(this.runDir(record.runId), inst.dir);
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
      lastLogLine: () => this.lastLogLine(dir),
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

  private lastLogLine(dir: string): string {
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
  private async views(record: RunRecord): Promise<InstanceView[]> {
    const out: InstanceView[] = [];
    for (const r of record.spec.runnables) {
      for (const inst of record.runnables[r.name]?.instances ?? []) out.push(this.viewInstance(record, r, inst));
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

  /**
   * Derives the run state from its instances; records terminal states (and acts on them) once.
   * A terminal state is decided again under the run's lock on a fresh record (`locked`): another
   * process may have restarted, stopped or ended the run between this record's read and now.
   */
  private async derive(record: RunRecord, locked = false): Promise<RunStatus> {
    const views = await this.views(record);
    const observed: ObservedInstance[] = views.map((v) => ({
      runnable: v.runnable,
      record: v.record,
      status: {
        id: v.record.id,
        state: v.state,
        name: v.record.containerId,
        host: os.hostname(),
        containerId: record.mode === 'runc' ? v.record.containerId : v.childPid ? `pid-${v.childPid}` : undefined,
        restarts: v.restarts,
        exitCode: v.exitCode,
        reason: v.reason,
        message: v.message,
        startedAt: v.startedAt,
      },
    }));
    const observation = runObservation(record, observed);
    const status: RunStatus = {
      runId: record.runId,
      app: record.app,
      runtime: 'local',
      state: 'PENDING',
      createdAt: record.createdAt,
      namespace: this.runsDir,
      runnables: runnableStatuses(observation.runnables),
    };
    if (record.final) {
      return { ...status, state: record.final.state, message: record.final.message, reason: record.final.reason, exitCode: record.final.exitCode, finishedAt: record.final.finishedAt };
    }
    const verdict = deriveRunState(observation, Date.now());
    const state = verdict.state;
    const { reason, exitCode } = verdict;
    let message = verdict.message;
    if (record.mode === 'host' && !message && !isTerminal(state)) message = record.modeNote;
    Object.assign(status, { state, message, reason, exitCode });
    if (isTerminal(state) && !locked) {
      const decided = await this.withRun(record.runId, (fresh) => this.derive(fresh, true)).catch(() => undefined);
      return decided ?? status;
    }
    if (state === 'RUNNING' && !record.reachedRunning) {
      if (locked) record.reachedRunning = true;
      else await this.update(record.runId, (rec) => void (rec.reachedRunning = true));
    }
    if (isTerminal(state)) {
      const finishedAt = new Date().toISOString();
      status.finishedAt = finishedAt;
      record.final = { state, message, reason, exitCode, finishedAt };
      await this.save(record);
      // A failed batch (like a Job with backoffLimit 0) takes its other instances down; containers
      // whose supervisor was lost are removed too.
      await this.cleanUpInstances(record, views);
    }
    return status;
  }

  /**
   * Ends whatever is left of a run's instances: a live supervisor gets its stop marker and its
   * program SIGKILL; in runc mode a container without a supervisor is deleted (`runc delete
   * --force` kills what is left). Used when a run becomes terminal, and by stop/kill on a
   * terminal run (leftovers of a record written by an older weft, or of a crash).
   */
  private async cleanUpInstances(record: RunRecord, known?: InstanceView[]): Promise<void> {
    const views = known ?? (await this.views(record));
    const supervised = views.filter((v) => isSameProcess(v.record.supervisorPid, v.record.supervisorStart));
    if (supervised.length > 0) await this.signalAll(record, supervised, 'SIGKILL');
    for (const v of views.filter((x) => !supervised.includes(x))) {
      await fs.writeFile(path.join(v.dir, 'stop'), 'SIGKILL').catch(() => undefined);
      if (record.mode === 'runc') {
        await execFileAsync(this.runc, ['--root', this.runcRoot, 'delete', '--force', v.record.containerId]).catch(() => undefined);
        // A supervisor that was killed could not delete its network namespace.
        if (record.network === 'private') await execFileAsync('ip', ['netns', 'delete', v.record.containerId]).catch(() => undefined);
      } else {
        const pid = v.childPid;
        // A host program outlives a killed supervisor: end it if that pid is still this instance's program.
        if (pid && isProgramOf(pid, record.runId, v.runnable, v.record.id)) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // gone meanwhile
          }
        }
      }
    }
  }

  private async update(runId: string, fn: (record: RunRecord) => void): Promise<void> {
    await this.withRun(runId, async (rec) => {
      fn(rec);
      await this.save(rec);
    }).catch(() => undefined);
  }

  async status(runId: string): Promise<RunStatus | undefined> {
    if (!/^[a-z0-9][-a-z0-9]*$/.test(runId)) return undefined;
    const record = await this.load(runId);
    return record ? this.derive(record) : undefined;
  }

  async list(filter: { app?: string; liveOnly?: boolean } = {}): Promise<RunStatus[]> {
    let names: string[];
    try {
      names = await fs.readdir(this.runsDir);
    } catch {
      return [];
    }
    const out: RunStatus[] = [];
    for (const name of names.sort()) {
      const record = await this.load(name).catch(() => undefined);
      if (!record || (filter.app && record.app !== filter.app)) continue;
      if (filter.liveOnly && record.final) continue;
      const status = await this.derive(record);
      if (filter.liveOnly && isTerminal(status.state)) continue;
      out.push(status);
    }
    return out;
  }

  watch(listener: StatusListener): () => void {
    this.listeners.add(listener);
    this.kick();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0 && this.timer) {
        clearTimeout(this.timer);
        this.timer = undefined;
      }
    };
  }

  /** Polls run records while anyone listens (files are the source of truth, written by supervisors in other processes). */
  private kick(): void {
    if (this.listeners.size === 0 || this.timer || this.polling) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.polling = true;
      void this.poll().finally(() => {
        this.polling = false;
        this.kick();
      });
    }, this.pollMs);
  }

  private async poll(): Promise<void> {
    let names: string[];
    try {
      names = await fs.readdir(this.runsDir);
    } catch {
      return;
    }
    for (const name of names) {
      const record = await this.load(name).catch(() => undefined);
      if (!record) continue;
      if (record.final && this.lastSent.has(name) && isTerminal(JSON.parse(this.lastSent.get(name)!).state)) continue;
      const status = await this.derive(record).catch(() => undefined);
      if (!status) continue;
      const key = JSON.stringify({ ...status, finishedAt: undefined });
      if (this.lastSent.get(name) === key) continue;
      this.lastSent.set(name, key);
      for (const listener of [...this.listeners]) {
        try {
          listener(status);
        } catch {
          // a listener's error is its own
        }
      }
    }
  }

  // -------------------------------------------------------------------------
  // Control

  private async signalAll(record: RunRecord, views: InstanceView[], signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    await Promise.all(views.map((v) => this.signalInstance(record, v, signal)));
  }

  private async signalInstance(record: RunRecord, view: InstanceView, signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    // The stop marker keeps the supervisor from restarting (also when it sleeps between attempts).
    await fs.writeFile(path.join(view.dir, 'stop'), signal).catch(() => undefined);
    if (record.mode === 'runc') {
      // Never signal the runc process itself: killed while it creates the container, it would
      // orphan the container. `runc kill` is retried until the container exists and has ended.
      detached(runcSignalLoop(this.runcCommand, view, signal === 'SIGKILL' ? 'KILL' : 'TERM', 0));
      return;
    }
    const pid = view.childPid ?? Number(readText(path.join(view.dir, 'child')) ?? 0);
    if (pid > 0) {
      try {
        process.kill(pid, signal);
      } catch {
        // already gone
      }
    }
  }

  /** Signals instances with SIGTERM and escalates to SIGKILL after the grace period (also when this process exits first). */
  private async stopInstances(record: RunRecord, views: InstanceView[], gracePeriodMs: number): Promise<void> {
    const live = views.filter((v) => !isTerminalInstance(v.state));
    if (gracePeriodMs <= 0) {
      await this.signalAll(record, live, 'SIGKILL');
      return;
    }
    await this.signalAll(record, live, 'SIGTERM');
    const seconds = Math.ceil(gracePeriodMs / 1000);
    for (const v of live) {
      // A detached watchdog carries out the escalation even if this weft process exits in the meantime;
      // it polls, so it ends as soon as the instance does (or its directory is removed).
      if (record.mode === 'runc') {
        detached(runcSignalLoop(this.runcCommand, v, 'KILL', seconds));
      } else if (v.childPid) {
        detached(hostKillWatchdog(v, v.childPid, seconds));
      }
    }
  }

  /** A frozen instance cannot act on SIGTERM: resume it first. */
  private async thaw(record: RunRecord): Promise<void> {
    if (!record.suspended) return;
    for (const v of await this.views(record)) {
      if (record.mode === 'runc') await execFileAsync(this.runc, ['--root', this.runcRoot, 'resume', v.record.containerId]).catch(() => undefined);
      else if (v.childPid) {
        try {
          process.kill(v.childPid, 'SIGCONT');
        } catch {
          // gone
        }
      }
    }
  }

  async stop(runId: string, options: { gracePeriodMs?: number } = {}): Promise<void> {
    await this.withRun(runId, async (record) => {
      if (record.final) return this.cleanUpInstances(record);
      const grace = options.gracePeriodMs ?? record.spec.stopTimeout;
      record.stopRequested ??= { at: new Date().toISOString(), kind: grace <= 0 ? 'kill' : 'stop', gracePeriodMs: grace };
      await this.save(record);
      await this.thaw(record);
      await this.stopInstances(record, await this.views(record), grace);
    });
    this.kick();
  }

  async kill(runId: string): Promise<void> {
    await this.withRun(runId, async (record) => {
      if (record.final) return this.cleanUpInstances(record);
      record.stopRequested = { at: new Date().toISOString(), kind: 'kill', gracePeriodMs: 0 };
      await this.save(record);
      await this.thaw(record);
      await this.stopInstances(record, await this.views(record), 0);
    });
    this.kick();
  }

  private runnableOf(record: RunRecord, runnable: string): RunnableSpec {
    const r = record.spec.runnables.find((x) => x.name === runnable);
    if (!r) throw new LocalRuntimeError(`run ${record.runId} has no runnable "${runnable}": it has ${record.spec.runnables.map((x) => x.name).join(', ')}`);
    return r;
  }

  private requireLive(record: RunRecord, what: string): void {
    if (record.final || record.stopRequested) throw new LocalRuntimeError(`cannot ${what}: run ${record.runId} is ${record.final?.state ?? 'STOPPING'}`);
  }

  async scale(runId: string, runnable: string, instances: number): Promise<void> {
    if (!Number.isInteger(instances) || instances < 0) throw new LocalRuntimeError(`instances must be a whole number >= 0, got ${instances}`);
    await this.withRun(runId, async (record) => {
      this.requireLive(record, `scale ${runnable}`);
      const r = this.runnableOf(record, runnable);
      if (r.kind === 'spark') throw new LocalRuntimeError(`${runId}/${runnable} is a Spark program: it runs in local[N] here, with spark.localThreads (or the executors' count x cores) task threads`);
      const rr = record.runnables[runnable];
      rr.desired = instances;
      const active = rr.instances.filter((i) => !i.removed);
      const grace = r.stopTimeout ?? record.spec.stopTimeout;
      if (instances < active.length) {
        // Like a Deployment/StatefulSet: the highest instance ids go first.
        const drop = [...active].sort((a, b) => Number(b.id) - Number(a.id)).slice(0, active.length - instances);
        for (const inst of drop) inst.removed = true;
        await this.save(record);
        await this.stopInstances(record, drop.map((i) => this.viewInstance(record, r, i)), grace);
      } else {
        for (let i = active.length; i < instances; i++) await this.launch(record, r);
      }
      await this.save(record);
    });
    this.kick();
  }

  /**
   * Restarts instances in three steps. Under the run's lock: mark them restarting (so their
   * exit is not read as a failure by anyone) and stop them. Unlocked: wait for their
   * supervisors to end, so status reads, stops and kills are not held up. Under the lock
   * again, on a fresh record: start them anew, unless the run ended or is stopping meanwhile
   * (then nothing is started, so nothing can outlive the run).
   */
  async restart(runId: string, runnable: string, instances?: string[]): Promise<void> {
    const stopped = await this.withRun(runId, async (record) => {
      this.requireLive(record, `restart ${runnable}`);
      const r = this.runnableOf(record, runnable);
      if (r.kind === 'spark') throw new LocalRuntimeError('restarting a Spark driver is not supported: it runs once; stop the run and start it again');
      const active = record.runnables[runnable].instances.filter((i) => !i.removed);
      const targets = instances ? instances.map((id) => {
        const inst = active.find((i) => i.id === id);
        if (!inst) throw new LocalRuntimeError(`runnable ${runnable} of run ${runId} has no instance ${id}: it has ${active.map((i) => i.id).join(', ') || 'none'}`);
        return inst;
      }) : active;
      const grace = r.stopTimeout ?? record.spec.stopTimeout;
      const views = targets.map((inst) => this.viewInstance(record, r, inst));
      const at = new Date().toISOString();
      for (const inst of targets) inst.restarting = { at, gracePeriodMs: grace };
      await this.save(record);
      await this.stopInstances(record, views, grace);
      return { grace, targets: views.map((v) => ({ id: v.record.id, dir: v.dir, restarts: v.restarts, pid: v.record.supervisorPid, start: v.record.supervisorStart })) };
    });
    // The KILL watchdog ends each old attempt after the grace period; its supervisor then exits.
    const deadline = Date.now() + stopped.grace + 10_000;
    for (const t of stopped.targets) while (isSameProcess(t.pid, t.start) && Date.now() < deadline) await sleep(100);
    await this.withRun(runId, async (record) => {
      const r = this.runnableOf(record, runnable);
      const stuck: string[] = [];
      try {
        for (const t of stopped.targets) {
          const inst = record.runnables[runnable].instances.find((i) => i.id === t.id);
          if (!inst) continue;
          delete inst.restarting;
          if (record.final || record.stopRequested || inst.removed) continue;
          if (isSameProcess(t.pid, t.start)) {
            stuck.push(t.id);
            continue;
          }
          await fs.writeFile(path.join(t.dir, 'restarts'), String(t.restarts + 1));
          await this.startSupervisor(record, r, inst);
        }
      } finally {
        await this.save(record);
      }
      if (stuck.length) throw new LocalRuntimeError(`instance ${stuck.join(', ')} of ${runnable} did not stop within ${Math.round(stopped.grace / 1000) + 10}s; not restarted`);
    });
    this.kick();
  }

  /**
   * Suspends (freezes) or resumes a run's batch instances: `runc pause`/`runc resume`
   * (the cgroup freezer) in runc mode, SIGSTOP/SIGCONT in host-process mode. Like
   * Job suspend on Kubernetes, only batch runnables can be suspended.
   */
  async suspend(runId: string, suspended: boolean): Promise<void> {
    await this.withRun(runId, async (record) => {
      this.requireLive(record, suspended ? 'suspend' : 'resume');
      const batch = record.spec.runnables.filter((r) => r.kind === 'batch').map((r) => r.name);
      if (batch.length === 0) throw new LocalRuntimeError(`run ${runId} has no batch runnable; only batch runs can be suspended (scale services to 0 instead)`);
      if (Boolean(record.suspended) === suspended) return;
      const views = (await this.views(record)).filter((v) => batch.includes(v.runnable) && !isTerminalInstance(v.state));
      for (const v of views) {
        if (record.mode === 'runc') {
          try {
            await execFileAsync(this.runc, ['--root', this.runcRoot, suspended ? 'pause' : 'resume', v.record.containerId]);
          } catch (error) {
            throw new LocalRuntimeError(`cannot ${suspended ? 'pause' : 'resume'} ${v.runnable}/${v.record.id}: ${(error as { stderr?: string }).stderr?.trim() || (error as Error).message}`);
          }
        } else if (v.childPid) {
          try {
            process.kill(v.childPid, suspended ? 'SIGSTOP' : 'SIGCONT');
          } catch {
            // ended meanwhile
          }
        }
      }
      record.suspended = suspended;
      await this.save(record);
    });
    this.kick();
  }

  async sendCommand(runId: string, command: string, options: { runnable?: string; payload?: string } = {}): Promise<void> {
    if (!command) throw new LocalRuntimeError('a command needs a name');
    await this.withRun(runId, async (record) => {
      this.requireLive(record, `send "${command}"`);
      if (options.runnable) this.runnableOf(record, options.runnable);
      const targets = (await this.views(record)).filter((v) => !v.record.removed && !isTerminalInstance(v.state) && (!options.runnable || v.runnable === options.runnable));
      if (targets.length === 0) throw new LocalRuntimeError(`run ${runId} has no live instance${options.runnable ? ` of ${options.runnable}` : ''} to send "${command}" to`);
      const { key, value } = commandAnnotation(command, options.payload);
      for (const v of targets) {
        // The same file format and key as the Kubernetes runtime's downward-API annotations file, replaced atomically.
        const file = path.join(v.dir, 'podinfo', 'annotations');
        const current = parseAnnotations(readText(file) ?? '');
        current[key] = value;
        // Readable by the container's user, whoever the image runs as (as the kubelet's file is).
        await writeFileAtomic(file, formatAnnotations(current), 0o644);
      }
    });
  }

  async resourceReport(runId: string): Promise<ResourceReport> {
    const record = await this.mustLoad(runId);
    const views = (await this.views(record)).filter((v) => !(v.record.removed && isTerminalInstance(v.state)));
    const pids = new Map<InstanceView, number>();
    for (const v of views) {
      if (v.state !== 'RUNNING' && v.state !== 'STOPPING') continue;
      const pid = record.mode === 'runc' ? await this.containerPid(v.record.containerId) : v.childPid;
      if (pid) pids.set(v, pid);
    }
    const cpu = await sampleCpu([...pids.values()]);
    const entries: ResourceReportEntry[] = [];
    for (const v of views) {
      const r = record.spec.runnables.find((x) => x.name === v.runnable)!;
      const pid = pids.get(v);
      let memoryBytes: number | undefined;
      if (pid) {
        memoryBytes = record.mode === 'runc' && this.limits ? await cgroupMemoryBytes(`/weft/${v.record.containerId}`) : undefined;
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
    return { runId, app: record.app, instances: entries };
  }

  private async containerPid(containerId: string): Promise<number | undefined> {
    try {
      const { stdout } = await execFileAsync(this.runc, ['--root', this.runcRoot, 'state', containerId]);
      const state = JSON.parse(stdout) as { pid?: number; status?: string };
      return state.status === 'running' && state.pid ? state.pid : undefined;
    } catch {
      return undefined;
    }
  }

  async discover(runId: string, service: string): Promise<Endpoint[]> {
    const record = await this.mustLoad(runId);
    const owners = record.spec.runnables.filter((r) => r.ports.some((p) => p.name === service));
    if (owners.length === 0) {
      const names = record.spec.runnables.flatMap((r) => r.ports.map((p) => p.name));
      throw new LocalRuntimeError(`run ${runId} announces no service "${service}"${names.length ? `: it announces ${names.join(', ')}` : ''}`);
    }
    return (await this.views(record))
      .filter((v) => v.state === 'RUNNING' && !v.record.removed && v.record.ports[service] !== undefined)
      .map((v) => ({ name: service, host: '127.0.0.1', port: v.record.ports[service] }));
  }

  logs(runId: string, options: LogOptions = {}): AsyncIterable<LogLine> {
    return streamLogs(this, runId, options);
  }

  /** Instance log files of a run (for logs()). */
  async logFiles(runId: string, options: LogOptions): Promise<Array<{ runnable: string; instance: string; file: string }>> {
    const record = await this.mustLoad(runId);
    const out: Array<{ runnable: string; instance: string; file: string }> = [];
    for (const r of record.spec.runnables) {
      if (options.runnable && r.name !== options.runnable) continue;
      for (const inst of record.runnables[r.name]?.instances ?? []) {
        if (options.instance !== undefined && inst.id !== options.instance) continue;
        out.push({ runnable: r.name, instance: inst.id, file: path.join(this.runDir(runId), inst.dir, 'log') });
      }
    }
    return out;
  }

  /** Removes a finished run's directory (its logs too). */
  async remove(runId: string): Promise<void> {
    const record = await this.mustLoad(runId);
    const status = await this.derive(record);
    if (!isTerminal(status.state)) throw new LocalRuntimeError(`run ${runId} is ${status.state}: stop it before removing it`);
    for (const inst of Object.values(record.runnables).flatMap((r) => r.instances)) {
      if (record.mode === 'runc') await execFileAsync(this.runc, ['--root', this.runcRoot, 'delete', '--force', inst.containerId]).catch(() => undefined);
      if (record.network === 'private') await execFileAsync('ip', ['netns', 'delete', inst.containerId]).catch(() => undefined);
    }
    await fs.rm(this.runDir(runId), { recursive: true, force: true });
  }

  async close(): Promise<void> {
    this.listeners.clear();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (const t of this.timers) clearTimeout(t);
    await Promise.all([...this.locks.values()].map((p) => p.catch(() => undefined)));
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
