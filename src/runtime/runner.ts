// TwillRunner, Preparer and Controller, written once over the backend SPI.
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import type {
  Controller,
  Endpoint,
  LogLine,
  LogOptions,
  Preparer,
  ResourceReport,
  RunFile,
  RunStatus,
  Runtime,
  StatusListener,
  TwillRunner,
} from './api.js';
import { resolveBuilds } from './build/index.js';
import { newRunId, RunIdTakenError, type RunIdGenerator } from './runid.js';
import { parseDuration, SpecError, type AppSpec, type Resources } from './spec.js';
import { isTerminal, type RunState } from './state.js';

export interface RunIdOptions {
  /** Makes run ids (default: newRunId); tests inject a generator that repeats. */
  newRunId?: RunIdGenerator;
  /** Ids tried per submission before giving up when the backend keeps finding them taken (default 5). */
  runIdAttempts?: number;
}

export class RunError extends Error {
  override name = 'RunError';
  constructor(message: string, readonly status?: RunStatus) {
    super(message);
  }
}

function describe(status: RunStatus): string {
  return `run ${status.runId} ended ${status.state}${status.message ? `: ${status.message}` : ''}`;
}

class RunController implements Controller {
  private last: RunStatus;
  private readonly listeners = new Set<StatusListener>();
  private unsubscribe: (() => void) | undefined;
  private readonly terminated: Promise<RunStatus>;
  private resolveTerminated!: (s: RunStatus) => void;

  constructor(private readonly runtime: Runtime, initial: RunStatus) {
    this.last = initial;
    this.terminated = new Promise((resolve) => (this.resolveTerminated = resolve));
    this.unsubscribe = runtime.watch((status) => {
      if (status.runId !== this.runId) return;
      this.update(status);
    });
    if (isTerminal(initial.state)) this.resolveTerminated(initial);
    // Catch up with anything that happened between the snapshot and the subscription.
    void runtime.status(this.runId).then((s) => s && this.update(s), () => undefined);
  }

  private update(status: RunStatus): void {
    if (isTerminal(this.last.state) && !isTerminal(status.state)) return;
    this.last = status;
    for (const listener of [...this.listeners]) listener(status);
    if (isTerminal(status.state)) {
      this.resolveTerminated(status);
      this.release();
    }
  }

  get runId(): string {
    return this.last.runId;
  }
  get app(): string {
    return this.last.app;
  }
  get state(): RunState {
    return this.last.state;
  }
  get status(): RunStatus {
    return this.last;
  }

  onChange(listener: StatusListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onRunning(): Promise<RunStatus> {
    if (this.last.state === 'RUNNING') return Promise.resolve(this.last);
    if (isTerminal(this.last.state)) return Promise.reject(new RunError(describe(this.last), this.last));
    return new Promise((resolve, reject) => {
      const off = this.onChange((s) => {
        if (s.state === 'RUNNING') {
          off();
          resolve(s);
        } else if (isTerminal(s.state)) {
          off();
          // A batch run can finish before weft saw it run: that counts as having run.
          if (s.state === 'COMPLETED') resolve(s);
          else reject(new RunError(describe(s), s));
        }
      });
    });
  }

  onTerminated(): Promise<RunStatus> {
    return this.terminated;
  }

  awaitTerminated(timeoutMs?: number): Promise<RunStatus> {
    if (timeoutMs === undefined) return this.terminated;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new RunError(`run ${this.runId} did not end within ${timeoutMs} ms (state ${this.last.state})`, this.last)),
        timeoutMs,
      );
      this.terminated.then((s) => {
        clearTimeout(timer);
        resolve(s);
      });
    });
  }

  terminate(gracePeriodMs?: number): Promise<void> {
    return this.runtime.stop(this.runId, { gracePeriodMs });
  }
  kill(): Promise<void> {
    return this.runtime.kill(this.runId);
  }
  changeInstances(runnable: string, instances: number): Promise<void> {
    return this.runtime.scale(this.runId, runnable, instances);
  }
  restartInstances(runnable: string, instances?: Array<string | number>): Promise<void> {
    return this.runtime.restart(this.runId, runnable, instances?.map(String));
  }
  restartAllInstances(runnable: string): Promise<void> {
    return this.runtime.restart(this.runId, runnable);
  }
  suspend(): Promise<void> {
    return this.runtime.suspend(this.runId, true);
  }
  resume(): Promise<void> {
    return this.runtime.suspend(this.runId, false);
  }
  sendCommand(command: string, options?: { runnable?: string; payload?: string }): Promise<void> {
    return this.runtime.sendCommand(this.runId, command, options);
  }
  getResourceReport(): Promise<ResourceReport> {
    return this.runtime.resourceReport(this.runId);
  }
  logs(options?: LogOptions): AsyncIterable<LogLine> {
    return this.runtime.logs(this.runId, options);
  }
  discoverService(service: string): Promise<Endpoint[]> {
    return this.runtime.discover(this.runId, service);
  }
  release(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }
}

class RunPreparer implements Preparer {
  private readonly spec: AppSpec;
  private readonly files: Array<{ file: string | { name: string; data: Buffer | string }; runnable?: string }> = [];

  constructor(
    private readonly runtime: Runtime,
    spec: AppSpec,
    private readonly options: RunIdOptions,
  ) {
    // A deep copy: the caller's spec is never changed. (Not re-parsed: durations are already in ms.)
    this.spec = structuredClone(spec);
    if (!this.spec?.name || !Array.isArray(this.spec.runnables) || this.spec.runnables.length === 0) {
      throw new SpecError('prepare() needs a spec from parseAppSpec/loadAppSpec (with a name and runnables)');
    }
  }

  private runnable(name: string) {
    const r = this.spec.runnables.find((x) => x.name === name);
    if (!r) throw new SpecError(`no runnable "${name}" in app ${this.spec.name}: it has ${this.spec.runnables.map((x) => x.name).join(', ')}`);
    return r;
  }

  withArguments(runnable: string, args: string[]): Preparer {
    this.runnable(runnable).args.push(...args.map(String));
    return this;
  }
  withApplicationArguments(args: string[]): Preparer {
    for (const r of this.spec.runnables) r.args.push(...args.map(String));
    return this;
  }
  withEnv(env: Record<string, string>, runnable?: string): Preparer {
    const targets = runnable ? [this.runnable(runnable)] : this.spec.runnables;
    for (const r of targets) Object.assign(r.env, env);
    return this;
  }
  withResources(runnable: string, resources: Partial<Resources>): Preparer {
    const r = this.runnable(runnable);
    r.resources = { ...r.resources, ...resources };
    return this;
  }
  withInstances(runnable: string, instances: number): Preparer {
    if (!Number.isInteger(instances) || instances < 0) throw new SpecError(`instances must be a whole number >= 0, got ${instances}`);
    this.runnable(runnable).instances = instances;
    return this;
  }
  withFiles(files: Array<string | { name: string; data: Buffer | string }>, runnable?: string): Preparer {
    if (runnable) this.runnable(runnable);
    for (const file of files) this.files.push({ file, runnable });
    return this;
  }
  setStartTimeout(ms: number | string): Preparer {
    this.spec.startTimeout = typeof ms === 'number' ? ms : parseDuration(ms);
    return this;
  }

  async start(): Promise<Controller> {
    const files: RunFile[] = [];
    for (const { file, runnable } of this.files) {
      if (typeof file === 'string') {
        let data: Buffer;
        try {
          data = await readFile(file);
        } catch (error) {
          throw new SpecError(`cannot read file ${file} for withFiles: ${(error as NodeJS.ErrnoException).code ?? error}`);
        }
        files.push({ name: basename(file), data, runnable });
      } else {
        files.push({ name: file.name, data: Buffer.isBuffer(file.data) ? file.data : Buffer.from(file.data), runnable });
      }
    }
    for (const f of files) {
      if (!/^[-._a-zA-Z0-9]+$/.test(f.name)) throw new SpecError(`file name "${f.name}" must be letters, digits, ".", "-" or "_"`);
    }
    // Built and pushed once, here, whichever backend runs it (and not again on a run id retry).
    const spec = await resolveBuilds(this.spec);
    const makeId = this.options.newRunId ?? newRunId;
    const attempts = this.options.runIdAttempts ?? 5;
    for (let attempt = 1; ; attempt++) {
      const runId = makeId(this.spec.name);
      try {
        const status = await this.runtime.submit({ runId, spec, files });
        return new RunController(this.runtime, status);
      } catch (error) {
        // Another run holds the id: the backend created nothing, so a new id is safe (never adopt the other run).
        if (!(error instanceof RunIdTakenError)) throw error;
        if (attempt >= attempts) throw new RunError(`no free run id after ${attempts} attempts (last: ${error.message}); is the clock or random source stuck?`);
      }
    }
  }
}

export class Runner implements TwillRunner {
  constructor(
    readonly runtime: Runtime,
    private readonly options: RunIdOptions = {},
  ) {}

  prepare(spec: AppSpec): Preparer {
    return new RunPreparer(this.runtime, spec, this.options);
  }

  async lookup(app: string): Promise<Controller[]> {
    const runs = await this.runtime.list({ app, liveOnly: true });
    return runs.map((s) => new RunController(this.runtime, s));
  }

  async lookupRun(runId: string): Promise<Controller | undefined> {
    const status = await this.runtime.status(runId);
    return status ? new RunController(this.runtime, status) : undefined;
  }

  async lookupLive(): Promise<Controller[]> {
    const runs = await this.runtime.list({ liveOnly: true });
    return runs.map((s) => new RunController(this.runtime, s));
  }

  close(): Promise<void> {
    return this.runtime.close();
  }
}
