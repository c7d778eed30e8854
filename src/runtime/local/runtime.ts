// The local backend: runs an app spec's images on this machine with runc (or,
// where runc cannot run, as host processes with the host's JVM). All state is
// in files under the state directory, so a restarted weft process finds every
// run, verifies its processes, and carries on.
import { execFile } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type {
  Endpoint,
  LocalRuntimeOptions,
  LogLine,
  LogOptions,
  ResourceReport,
  RunRequest,
  RunStatus,
  Runtime,
  StatusListener,
} from '../api.js';
import { RunIdTakenError } from '../runid.js';
import type { RunnableSpec } from '../spec.js';
import { commandAnnotation, formatAnnotations, instanceAnnotations, parseAnnotations, portEnvName, runLabels } from '../contract/index.js';
import { isTerminal, type RunState } from '../state.js';
import { ImageError, ImageStore } from './images.js';
export { localProgram } from './instance-start.js';
import { isProgramOf, isSameProcess } from './procfs.js';
import { freePort, portIsFree } from './ports.js';
import { privateDir, PRIVATE_DIR, PRIVATE_FILE, readText } from './state-files.js';
import { detached, hostKillWatchdog, runcSignalLoop, type RuncCommand } from './signals.js';
import { streamLogs } from './logs.js';
import { which } from './which.js';
import { weftStateDir, writeFileAtomic } from '../../common/index.js';
import { isTerminalInstance, runObservation, type ObservedInstance } from './observe.js';
import type { InstanceRecord, LocalMode, LocalNetwork, RunnableRecord, RunRecord } from './records.js';
import { deriveRunState, runnableStatuses } from '../derive/index.js';
import { resolveBuilds } from '../build/index.js';
import { LocalRuntimeError } from './errors.js';
import { chooseMode } from './mode.js';
import { RunStore } from './run-store.js';
import { instanceViews, viewInstance, type InstanceView } from './instance-views.js';
import { startSupervisor, type InstanceHost } from './instance-start.js';
import { resourceReport } from './resources.js';

export type { LocalMode, LocalNetwork } from './records.js';

const execFileAsync = promisify(execFile);

export { LocalRuntimeError };

/** The local backend's options (typed in the backend SPI, ../api.ts). */
export interface LocalOptions extends LocalRuntimeOptions {
  /**
   * Called once an instance's supervisor process is started (its program may not run yet). For tests that
   * SIGKILL the submitting process at that moment, as a crash would; nothing else of weft uses it.
   */
  onInstanceLaunched?: (launched: { runId: string; runnable: string; instance: string }) => void;
}

export function defaultStateDir(): string {
  return weftStateDir('local');
}






export { formatAnnotations, parseAnnotations, portEnvName };


// ---------------------------------------------------------------------------

export class LocalRuntime implements Runtime {
  readonly name = 'local' as const;
  readonly stateDir: string;
  readonly runsDir: string;
  readonly runcRoot: string;
  readonly mode: LocalMode;
  readonly modeNote: string;
  readonly network: LocalNetwork;
  private readonly images: ImageStore;
  /** What instance-start.ts needs of this runtime. */
  private get host(): InstanceHost {
    return { store: this.store, images: this.images, runc: this.runc, runcRoot: this.runcRoot, java: this.java, limits: this.limits, modeNote: this.modeNote };
  }
  private readonly runc: string;
  private readonly runcCommand: RuncCommand;
  private readonly java: string;
  private readonly pollMs: number;
  private readonly limits: boolean;
  private readonly listeners = new Set<StatusListener>();
  private timer: NodeJS.Timeout | undefined;
  private readonly lastSent = new Map<string, string>();
  private readonly store: RunStore;
  private readonly timers = new Set<NodeJS.Timeout>();
  private polling = false;
  /** Ports handed out recently by this process (their programs may not listen yet): port -> expiry. */
  private readonly recentPorts = new Map<number, number>();
  private readonly onInstanceLaunched: LocalOptions['onInstanceLaunched'];

  constructor(options: LocalOptions) {
    this.onInstanceLaunched = options.onInstanceLaunched;
    this.stateDir = options.stateDir ?? process.env.WEFT_LOCAL_STATE_DIR ?? defaultStateDir();
    this.runsDir = path.join(this.stateDir, 'runs');
    this.runcRoot = path.join(this.stateDir, 'runc');
    this.store = new RunStore(this.stateDir, this.runsDir);
    this.images = new ImageStore(options.imageDir ?? path.join(this.stateDir, 'images'));
    this.runc = options.runc ?? which('runc') ?? 'runc';
    this.runcCommand = { bin: this.runc, root: this.runcRoot };
    this.java = options.java ?? (process.env.JAVA_HOME ? path.join(process.env.JAVA_HOME, 'bin', 'java') : which('java') ?? 'java');
    this.pollMs = options.pollMs ?? 300;
    this.limits = options.limits ?? true;
    const network = options.network ?? (process.env.WEFT_LOCAL_NETWORK as LocalNetwork | undefined) ?? 'private';
    if (network !== 'host' && network !== 'private') throw new LocalRuntimeError(`unknown local network "${network}": use host or private`);
    this.network = network;
    ({ mode: this.mode, note: this.modeNote } = chooseMode(options.mode ?? (process.env.WEFT_LOCAL_MODE as LocalMode | 'auto' | undefined) ?? 'auto', this.runc));
  }

  // -------------------------------------------------------------------------
  // Submit

  async submit(request: RunRequest): Promise<RunStatus> {
    const { runId } = request;
    // The Runner resolved build: sections already; this covers callers of the SPI alone (the master).
    const spec = await resolveBuilds(request.spec);
    const dir = this.store.runDir(runId);
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
    await this.store.privateStateDirs();
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
    await this.store.save(record);
    await this.store.withRun(runId, async (rec) => {
      try {
        for (const r of rec.spec.runnables) {
          for (let i = 0; i < r.instances; i++) await this.launch(rec, r);
        }
      } catch (error) {
        // Instances already started are stopped: a run that could not start holds nothing.
        rec.final = { state: 'FAILED', reason: 'StartError', message: `cannot start the run: ${(error as Error).message}`, finishedAt: new Date().toISOString() };
        await this.store.save(rec);
        await this.cleanUpInstances(rec);
        return;
      }
      await this.store.save(rec);
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
    await this.store.privateStateDirs();
    await privateDir(this.store.runDir(record.runId));
    await this.store.save(record);
    return this.derive(record);
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
      const r = await this.store.load(name).catch(() => undefined);
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
    const instDir = path.join(this.store.runDir(record.runId), relDir);
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
    // Recorded before its supervisor starts: a weft process killed right after the start leaves an instance the
    // record knows (its exit is read, a stop or kill reaches its program through the instance's files), not an
    // orphan process no record names.
    await this.store.save(record);
    await startSupervisor(this.host, record, r, inst);
    this.onInstanceLaunched?.({ runId: record.runId, runnable: r.name, instance: id });
    return inst;
  }

  // -------------------------------------------------------------------------
  // Status

  /**
   * Derives the run state from its instances; records terminal states (and acts on them) once.
   * A terminal state is decided again under the run's lock on a fresh record (`locked`): another
   * process may have restarted, stopped or ended the run between this record's read and now.
   */
  private async derive(record: RunRecord, locked = false): Promise<RunStatus> {
    const views = await instanceViews(this.store.runDir(record.runId), record);
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
      const decided = await this.store.withRun(record.runId, (fresh) => this.derive(fresh, true)).catch(() => undefined);
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
      await this.store.save(record);
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
    const views = known ?? (await instanceViews(this.store.runDir(record.runId), record));
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
    await this.store.withRun(runId, async (rec) => {
      fn(rec);
      await this.store.save(rec);
    }).catch(() => undefined);
  }

  async status(runId: string): Promise<RunStatus | undefined> {
    if (!/^[a-z0-9][-a-z0-9]*$/.test(runId)) return undefined;
    const record = await this.store.load(runId);
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
      const record = await this.store.load(name).catch(() => undefined);
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
      const record = await this.store.load(name).catch(() => undefined);
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
    for (const v of await instanceViews(this.store.runDir(record.runId), record)) {
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
    await this.store.withRun(runId, async (record) => {
      if (record.final) return this.cleanUpInstances(record);
      const grace = options.gracePeriodMs ?? record.spec.stopTimeout;
      record.stopRequested ??= { at: new Date().toISOString(), kind: grace <= 0 ? 'kill' : 'stop', gracePeriodMs: grace };
      await this.store.save(record);
      await this.thaw(record);
      await this.stopInstances(record, await instanceViews(this.store.runDir(record.runId), record), grace);
    });
    this.kick();
  }

  async kill(runId: string): Promise<void> {
    await this.store.withRun(runId, async (record) => {
      if (record.final) return this.cleanUpInstances(record);
      record.stopRequested = { at: new Date().toISOString(), kind: 'kill', gracePeriodMs: 0 };
      await this.store.save(record);
      await this.thaw(record);
      await this.stopInstances(record, await instanceViews(this.store.runDir(record.runId), record), 0);
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
    await this.store.withRun(runId, async (record) => {
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
        await this.store.save(record);
        await this.stopInstances(record, drop.map((i) => viewInstance(this.store.runDir(record.runId), record, r, i)), grace);
      } else {
        for (let i = active.length; i < instances; i++) await this.launch(record, r);
      }
      await this.store.save(record);
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
    const stopped = await this.store.withRun(runId, async (record) => {
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
      const views = targets.map((inst) => viewInstance(this.store.runDir(record.runId), record, r, inst));
      const at = new Date().toISOString();
      for (const inst of targets) inst.restarting = { at, gracePeriodMs: grace };
      await this.store.save(record);
      await this.stopInstances(record, views, grace);
      return { grace, targets: views.map((v) => ({ id: v.record.id, dir: v.dir, restarts: v.restarts, pid: v.record.supervisorPid, start: v.record.supervisorStart })) };
    });
    // The KILL watchdog ends each old attempt after the grace period; its supervisor then exits.
    const deadline = Date.now() + stopped.grace + 10_000;
    for (const t of stopped.targets) while (isSameProcess(t.pid, t.start) && Date.now() < deadline) await sleep(100);
    await this.store.withRun(runId, async (record) => {
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
          await startSupervisor(this.host, record, r, inst);
        }
      } finally {
        await this.store.save(record);
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
    await this.store.withRun(runId, async (record) => {
      this.requireLive(record, suspended ? 'suspend' : 'resume');
      const batch = record.spec.runnables.filter((r) => r.kind === 'batch').map((r) => r.name);
      if (batch.length === 0) throw new LocalRuntimeError(`run ${runId} has no batch runnable; only batch runs can be suspended (scale services to 0 instead)`);
      if (Boolean(record.suspended) === suspended) return;
      const views = (await instanceViews(this.store.runDir(record.runId), record)).filter((v) => batch.includes(v.runnable) && !isTerminalInstance(v.state));
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
      await this.store.save(record);
    });
    this.kick();
  }

  async sendCommand(runId: string, command: string, options: { runnable?: string; payload?: string } = {}): Promise<void> {
    if (!command) throw new LocalRuntimeError('a command needs a name');
    await this.store.withRun(runId, async (record) => {
      this.requireLive(record, `send "${command}"`);
      if (options.runnable) this.runnableOf(record, options.runnable);
      const targets = (await instanceViews(this.store.runDir(record.runId), record)).filter((v) => !v.record.removed && !isTerminalInstance(v.state) && (!options.runnable || v.runnable === options.runnable));
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
    const record = await this.store.mustLoad(runId);
    return resourceReport(record, await instanceViews(this.store.runDir(runId), record), { runc: this.runcCommand, limits: this.limits });
  }

  async discover(runId: string, service: string): Promise<Endpoint[]> {
    const record = await this.store.mustLoad(runId);
    const owners = record.spec.runnables.filter((r) => r.ports.some((p) => p.name === service));
    if (owners.length === 0) {
      const names = record.spec.runnables.flatMap((r) => r.ports.map((p) => p.name));
      throw new LocalRuntimeError(`run ${runId} announces no service "${service}"${names.length ? `: it announces ${names.join(', ')}` : ''}`);
    }
    return (await instanceViews(this.store.runDir(record.runId), record))
      .filter((v) => v.state === 'RUNNING' && !v.record.removed && v.record.ports[service] !== undefined)
      .map((v) => ({ name: service, host: '127.0.0.1', port: v.record.ports[service] }));
  }

  logs(runId: string, options: LogOptions = {}): AsyncIterable<LogLine> {
    return streamLogs(this, runId, options);
  }

  /** Instance log files of a run (for logs()). */
  async logFiles(runId: string, options: LogOptions): Promise<Array<{ runnable: string; instance: string; file: string }>> {
    const record = await this.store.mustLoad(runId);
    const out: Array<{ runnable: string; instance: string; file: string }> = [];
    for (const r of record.spec.runnables) {
      if (options.runnable && r.name !== options.runnable) continue;
      for (const inst of record.runnables[r.name]?.instances ?? []) {
        if (options.instance !== undefined && inst.id !== options.instance) continue;
        out.push({ runnable: r.name, instance: inst.id, file: path.join(this.store.runDir(runId), inst.dir, 'log') });
      }
    }
    return out;
  }

  /** Removes a finished run's directory (its logs too). */
  async remove(runId: string): Promise<void> {
    const record = await this.store.mustLoad(runId);
    const status = await this.derive(record);
    if (!isTerminal(status.state)) throw new LocalRuntimeError(`run ${runId} is ${status.state}: stop it before removing it`);
    for (const inst of Object.values(record.runnables).flatMap((r) => r.instances)) {
      if (record.mode === 'runc') await execFileAsync(this.runc, ['--root', this.runcRoot, 'delete', '--force', inst.containerId]).catch(() => undefined);
      if (record.network === 'private') await execFileAsync('ip', ['netns', 'delete', inst.containerId]).catch(() => undefined);
    }
    await fs.rm(this.store.runDir(runId), { recursive: true, force: true });
  }

  async close(): Promise<void> {
    this.listeners.clear();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (const t of this.timers) clearTimeout(t);
    await this.store.settle();
  }
}
