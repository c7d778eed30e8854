// The master's core: submits runs through the runtime, records every state the
// runtime reports, archives logs, and reconciles the store with the runtime.
import { EventEmitter } from 'node:events';
import { isTerminal, newRunId, RunIdTakenError, type AppSpec, type RunStatus, type Runtime } from '../runtime/index.js';
import type { LeaderElector, LeaderHandle } from '../coord/index.js';
import type { MasterMetrics } from './metrics.js';
import type { RunRecord, Store } from './store/index.js';

export interface ServiceOptions {
  store: Store;
  runtime: Runtime;
  metrics: MasterMetrics;
  /** Live runs allowed per namespace (unlimited when unset). */
  admissionLimit?: number;
  /** How often the reconciler runs (ms); default 30 s. */
  reconcileIntervalMs?: number;
  /** A STOPPING run is killed this long after its grace period ended (ms); default 5 s. */
  stuckStoppingSlackMs?: number;
  /** Runs launched less than this ago are not declared lost (the runtime may not show them yet); default 15 s. */
  submitGraceMs?: number;
  /**
   * How long a master may take to hand an admitted run to the runtime (ms; default 15 s). A run still not
   * handed over after it (its master died between admitting and starting it) is handed over by the leader.
   */
  handoverTimeoutMs?: number;
  /**
   * Test hook (the hand-over crash tests): from the `from`-th hand-over on, this master hands nothing more to the
   * runtime; once the hand-overs under way are done it calls onPaused, and the test SIGKILLs the process.
   */
  pauseHandovers?: { from: number; onPaused: (runId: string) => void };
  /** Namespace for live runs the store did not know (adopted). */
  adoptNamespace?: string;
  log?: (message: string, fields?: Record<string, unknown>) => void;
  /** With several masters on one store: only the elected leader watches the runtime, archives logs and reconciles. */
  election?: { elector: LeaderElector; name?: string; candidateId: string };
}

export interface SubmitRequest {
  namespace: string;
  actor: string;
  spec: AppSpec;
  appVersion?: number;
  idempotencyKey?: string;
  /** Over the admission limit: wait in the namespace's queue instead of being rejected. */
  queue?: boolean;
}

export interface SubmitResult {
  run: RunRecord;
  created: boolean;
  rejected: boolean;
  /** Its place in the queue (1 = next) when the run waits for a slot. */
  queuePosition?: number;
}

export class MasterService {
  readonly store: Store;
  readonly runtime: Runtime;
  /** Emits 'event' after any state change is stored (wakes watchers and log followers early). */
  readonly changes = new EventEmitter();
  private readonly inFlight = new Set<string>();
  private readonly archivers = new Map<string, Promise<void>>();
  /** Aborted when this master stops leading (or closes): ends its archivers. */
  private abort = new AbortController();
  private unwatch: (() => void) | undefined;
  private leading = false;
  private election: LeaderHandle | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** A reconcile pass due when a hand-over time runs out (the earliest one). */
  private wake: { at: number; timer: NodeJS.Timeout } | undefined;
  private reconciling: Promise<void> | undefined;
  private reconcileAgain: Promise<void> | undefined;
  private handovers = 0;
  private handoversUnderWay = 0;
  private closed = false;

  constructor(private readonly options: ServiceOptions) {
    this.store = options.store;
    this.runtime = options.runtime;
    this.changes.setMaxListeners(0);
  }

  private log(message: string, fields?: Record<string, unknown>): void {
    this.options.log?.(message, fields);
  }

  /** Leads at once (one master), or joins the election and leads when elected. */
  async start(): Promise<void> {
    const election = this.options.election;
    if (!election) {
      await this.lead();
      return;
    }
    this.election = await election.elector.electLeader(election.name ?? 'weft-master', election.candidateId, {
      onElected: () => {
        this.log('elected leader', { candidate: election.candidateId });
        void this.lead().catch((error) => this.log('starting as leader failed', { error: String(error) }));
      },
      onStepDown: (reason) => {
        this.log('stepped down', { candidate: election.candidateId, reason });
        this.stopLeading();
      },
    });
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /** Subscribes to the runtime, reconciles once, then periodically. */
  private async lead(): Promise<void> {
    if (this.leading || this.closed) return;
    this.leading = true;
    this.abort = new AbortController();
    this.unwatch = this.runtime.watch((status) => void this.record(status).catch((error) => this.log('recording a status failed', { runId: status.runId, error: String(error) })));
    await this.reconcile();
    const every = this.options.reconcileIntervalMs ?? 30_000;
    this.timer = setInterval(() => void this.reconcile().catch((error) => this.log('reconcile failed', { error: String(error) })), every);
    this.timer.unref();
  }

  private stopLeading(): void {
    this.leading = false;
    this.unwatch?.();
    this.unwatch = undefined;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.wake) clearTimeout(this.wake.timer);
    this.wake = undefined;
    this.abort.abort();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stopLeading();
    await this.election?.resign().catch(() => undefined);
    await this.reconciling?.catch(() => undefined);
    await Promise.allSettled([...this.archivers.values()]);
  }

  private get handoverTimeoutMs(): number {
    return this.options.handoverTimeoutMs ?? 15_000;
  }

  /**
   * Stores a run (idempotency and admission decided in the store), then hands it to the runtime (or queues it).
   * The run is stored as not launched until the runtime accepted it, so a master dying in between leaves a
   * record the leader finds and hands over (see handOver and reconcile).
   */
  async submit(request: SubmitRequest): Promise<SubmitResult> {
    const runId = newRunId(request.spec.name);
    this.inFlight.add(runId);
    try {
      const result = await this.store.createRun(
        { id: runId, namespace: request.namespace, app: request.spec.name, appVersion: request.appVersion, spec: request.spec, runtime: this.runtime.name, createdBy: request.actor },
        { idempotencyKey: request.idempotencyKey, admissionLimit: this.options.admissionLimit, queue: request.queue, handoverMs: this.handoverTimeoutMs },
      );
      if (!result.created) {
        this.options.metrics.submissions.inc({ outcome: 'replayed' });
        const position = result.run.queuedAt !== undefined ? await this.store.queuePosition(result.run.id) : undefined;
        return { ...result, queuePosition: position };
      }
      this.changes.emit('event');
      if (result.rejected) {
        this.options.metrics.submissions.inc({ outcome: 'rejected' });
        return result;
      }
      if (result.run.queuedAt !== undefined) {
        this.options.metrics.submissions.inc({ outcome: 'queued' });
        this.log('run queued', { runId, namespace: request.namespace, position: result.queuePosition });
        // A slot may have freed between the count and now.
        void this.pumpQueue(request.namespace);
        return result;
      }
      await this.handOver(result.run);
      return { ...result, run: (await this.store.getRun(runId)) ?? result.run };
    } finally {
      this.inFlight.delete(runId);
    }
  }

  /**
   * Hands an admitted run to the runtime and records that it did; a refusal leaves it FAILED with the runtime's
   * words. Exactly once even when two masters get here for one run (a slow master and the leader that took its
   * hand-over over): the runtime claims the run id atomically (a directory, a root ConfigMap), so the second
   * submission gets RunIdTakenError and only records the hand-over.
   */
  private async handOver(run: RunRecord): Promise<'started' | 'already' | 'failed' | 'skipped'> {
    const pause = this.options.pauseHandovers;
    if (pause && ++this.handovers >= pause.from) {
      if (this.handovers === pause.from) {
        while (this.handoversUnderWay > 0) await new Promise((r) => setTimeout(r, 20));
        pause.onPaused(run.id);
      }
      await new Promise<never>(() => undefined); // the test SIGKILLs this master now
    }
    this.handoversUnderWay++;
    try {
      // Stopped or killed while waiting to be handed over: nothing to start.
      const current = await this.store.getRun(run.id);
      if (!current || isTerminal(current.state) || current.launchedAt !== undefined) return 'skipped';
      let status: RunStatus;
      try {
        // The store made the id unique: a submission this or a dead master cut short is completed, not refused.
        status = await this.runtime.submit({ runId: run.id, spec: run.spec as AppSpec, files: [], resumable: true });
      } catch (error) {
        if (error instanceof RunIdTakenError) {
          await this.store.markLaunched(run.id);
          this.log('the run was handed over already', { runId: run.id });
          const found = await this.runtime.status(run.id).catch(() => undefined);
          if (found) await this.record(found);
          return 'already';
        }
        await this.store.transition(run.id, 'FAILED', { reason: 'SubmitFailed', message: `the ${this.runtime.name} runtime refused the run: ${(error as Error).message}` });
        this.changes.emit('event');
        this.options.metrics.submissions.inc({ outcome: 'failed' });
        return 'failed';
      }
      await this.store.markLaunched(run.id);
      await this.record(status);
      this.options.metrics.submissions.inc({ outcome: 'started' });
      // Stopped or killed while it was being handed over: the store says it ended, so the runtime must not keep it.
      const after = await this.store.getRun(run.id);
      if (after && isTerminal(after.state) && !isTerminal(status.state)) {
        await this.runtime.kill(run.id).catch((error) => this.log('killing a run cancelled during its hand-over failed', { runId: run.id, error: String(error) }));
      }
      return 'started';
    } finally {
      this.handoversUnderWay--;
    }
  }

  private pumping = new Map<string, Promise<void>>();

  /**
   * Starts queued runs of a namespace, oldest first, while it has free slots. The store hands each
   * queued run to one caller (under the namespace lock), so several masters may pump at once.
   */
  pumpQueue(namespace: string): Promise<void> {
    const limit = this.options.admissionLimit;
    if (limit === undefined || this.closed) return Promise.resolve();
    const running = this.pumping.get(namespace);
    if (running) return running.then(() => this.pumpQueue(namespace));
    const task = (async () => {
      for (;;) {
        const run = await this.store.admitQueued(namespace, limit, this.handoverTimeoutMs);
        if (!run) return;
        this.inFlight.add(run.id);
        try {
          this.log('run admitted from the queue', { runId: run.id, namespace });
          this.changes.emit('event');
          await this.handOver(run);
        } finally {
          this.inFlight.delete(run.id);
        }
      }
    })()
      .catch((error) => this.log('starting queued runs failed', { namespace, error: String(error) }))
      .finally(() => this.pumping.delete(namespace));
    this.pumping.set(namespace, task);
    return task;
  }

  /**
   * Ends a run that was not handed to the runtime yet (stop or kill while it waits in the queue or to be handed
   * over): KILLED. A hand-over under way at that moment kills what it started (see handOver). False when the
   * run was launched meanwhile (then it is stopped through the runtime like any other).
   */
  async cancelNotLaunched(run: RunRecord, action: string): Promise<boolean> {
    const message = run.queuedAt !== undefined ? `${action} while waiting in the admission queue; it never started` : `${action} before the master had handed it to the runtime`;
    const event = await this.store.transition(run.id, 'KILLED', { reason: 'Dequeued', message, unlessLaunched: true });
    if (event) this.changes.emit('event');
    return event !== undefined;
  }

  /** Records a runtime status snapshot as a transition (the state machine drops stale or invalid ones). */
  async record(status: RunStatus): Promise<void> {
    const run = await this.store.getRun(status.runId);
    if (!run) return; // not ours (yet): the reconciler adopts live unknown runs
    if (status.state !== run.state) {
      const event = await this.store.transition(run.id, status.state, { reason: status.reason, message: status.message });
      if (event) {
        this.changes.emit('event');
        if (isTerminal(event.to)) {
          this.options.metrics.runDuration.observe({ state: event.to }, Math.max(0, (event.at - run.createdAt) / 1000));
          void this.pumpQueue(run.namespace); // a slot freed
        }
      }
    }
    this.ensureArchiver(run.id, status.state);
  }

  /**
   * Archives a run's output into the store, resuming after the lines already archived per instance. An archiver
   * that drained an ended run records the archive as complete; the leader resumes the archives of ended runs that
   * are not (their master died while archiving: the last lines of a run are read after it ended).
   */
  ensureArchiver(runId: string, state: RunStatus['state']): void {
    if (this.closed || !this.leading || this.archivers.has(runId) || state === 'REJECTED') return;
    const signal = this.abort.signal;
    const ended = async () => {
      const run = await this.store.getRun(runId);
      return run !== undefined && isTerminal(run.state);
    };
    const task = this.archive(runId, !isTerminal(state), signal)
      .then(async () => {
        if (!signal.aborted && (await ended())) await this.store.markLogsArchived(runId);
      })
      .catch(async (error) => {
        // An ended run the runtime no longer has (its objects deleted): nothing more can be archived.
        if (!signal.aborted && (await ended()) && !(await this.runtime.status(runId).catch(() => undefined))) {
          await this.store.markLogsArchived(runId);
          return;
        }
        this.log('archiving logs failed', { runId, error: String(error) });
      })
      .catch((error) => this.log('archiving logs failed', { runId, error: String(error) }))
      .finally(() => {
        this.archivers.delete(runId);
        this.changes.emit('logs-done', runId);
      });
    this.archivers.set(runId, task);
  }

  isArchiving(runId: string): boolean {
    return this.archivers.has(runId);
  }

  private async archive(runId: string, follow: boolean, signal: AbortSignal): Promise<void> {
    const skip = new Map<string, number>();
    let buffer: Array<{ runnable: string; instance: string; line: string; stream?: 'stdout' | 'stderr' }> = [];
    // Flushes are chained so lines of one source are appended in order; a timer flushes a quiet stream's last lines.
    let chain: Promise<void> = Promise.resolve();
    let timer: NodeJS.Timeout | undefined;
    const flush = () => {
      if (timer) clearTimeout(timer);
      timer = undefined;
      const batch = buffer;
      buffer = [];
      chain = chain.then(async () => {
        if (batch.length === 0) return;
        const bySource = new Map<string, typeof batch>();
        for (const l of batch) {
          const key = `${l.runnable}\u0000${l.instance}`;
          if (!bySource.has(key)) bySource.set(key, []);
          bySource.get(key)!.push(l);
        }
        for (const lines of bySource.values()) await this.store.appendLogs(runId, lines[0].runnable, lines[0].instance, lines);
        this.changes.emit('logs', runId);
      });
      return chain;
    };
    try {
      for await (const l of this.runtime.logs(runId, { follow, signal })) {
        const key = `${l.runnable}\u0000${l.instance}`;
        if (!skip.has(key)) skip.set(key, await this.store.archivedLineCount(runId, l.runnable, l.instance));
        const remaining = skip.get(key)!;
        if (remaining > 0) {
          skip.set(key, remaining - 1);
          continue;
        }
        buffer.push(l);
        if (buffer.length >= 500) await flush();
        else timer ??= setTimeout(() => void flush().catch((error) => this.log('archiving logs failed', { runId, error: String(error) })), 200);
      }
    } finally {
      if (timer) clearTimeout(timer);
    }
    await flush();
  }

  /** One reconciliation pass; asked for during a pass, one more pass follows it (shared by all who asked meanwhile). */
  reconcile(): Promise<void> {
    if (!this.reconciling) {
      this.reconciling = this.reconcileOnce().finally(() => (this.reconciling = undefined));
      return this.reconciling;
    }
    this.reconcileAgain ??= this.reconciling
      .catch(() => undefined)
      .then(() => {
        this.reconcileAgain = undefined;
        return this.reconcile();
      });
    return this.reconcileAgain;
  }

  /** Reconciles again at `at` (a hand-over time running out), unless a pass is due earlier. */
  private reconcileAt(at: number): void {
    if (!this.leading || (this.wake && this.wake.at <= at)) return;
    if (this.wake) clearTimeout(this.wake.timer);
    const timer = setTimeout(() => {
      this.wake = undefined;
      void this.reconcile().catch((error) => this.log('reconcile failed', { error: String(error) }));
    }, Math.max(0, at - Date.now()) + 50);
    timer.unref();
    this.wake = { at, timer };
  }

  private async reconcileOnce(): Promise<void> {
    if (!this.leading) return;
    const live = await this.store.liveRuns();
    const known = new Map((await this.runtime.list()).map((s) => [s.runId, s]));
    const now = Date.now();
    for (const run of live) {
      if (this.inFlight.has(run.id) || run.queuedAt !== undefined) continue; // queued runs have no objects yet
      // One run the runtime cannot answer for (a lock, a broken record) must not stop the others' correction.
      const correct = run.launchedAt === undefined ? this.finishHandover(run, known, now) : this.reconcileRun(run, known, now);
      await correct.catch((error) => this.log('reconciling a run failed', { runId: run.id, error: String(error) }));
    }
    await this.reconcileRest(live, known);
  }

  /**
   * An admitted run not handed to the runtime yet. When the runtime has it running (or ended), its master handed it
   * over and died before recording that: recorded. When the runtime has it only PENDING, its master may still be
   * creating its objects: after the hand-over time, the leader submits it again, which completes a submission cut
   * short (a resumable backend) or finds it whole. When the runtime lacks it and the hand-over time ran out, the
   * master died first: the leader hands it over.
   */
  private async finishHandover(run: RunRecord, known: Map<string, RunStatus>, now: number): Promise<void> {
    const metrics = this.options.metrics;
    const status = known.get(run.id) ?? (await this.runtime.status(run.id));
    if (status && status.state !== 'PENDING') {
      if (await this.store.markLaunched(run.id)) metrics.reconcilerActions.inc({ action: 'handover_recorded' });
      await this.record(status);
      return;
    }
    if (run.handoverUntil !== undefined && now < run.handoverUntil) {
      this.reconcileAt(run.handoverUntil);
      return;
    }
    const claimed = await this.store.takeOverHandover(run.id, this.handoverTimeoutMs);
    if (!claimed) return;
    this.log(status ? 'completing the hand-over of a run its master may have cut short' : 'handing over a run its master did not hand over', { runId: run.id, namespace: run.namespace });
    this.inFlight.add(run.id);
    try {
      const outcome = await this.handOver(claimed);
      // Found whole (handed over by its master): recorded; otherwise this master started or completed it.
      metrics.reconcilerActions.inc({ action: outcome === 'already' ? 'handover_recorded' : 'handover_taken_over' });
    } finally {
      this.inFlight.delete(run.id);
    }
  }

  private async reconcileRun(run: RunRecord, known: Map<string, RunStatus>, now: number): Promise<void> {
    const metrics = this.options.metrics;
    const status = known.get(run.id) ?? (await this.runtime.status(run.id));
    if (!status) {
      // Just launched: the runtime may not show it yet (a Kubernetes informer's lag).
      if (now - (run.launchedAt ?? run.createdAt) < (this.options.submitGraceMs ?? 15_000) && run.state === 'PENDING') return;
      const event = await this.store.transition(run.id, 'FAILED', {
        reason: 'Lost',
        message: `the run's objects are gone from the ${this.runtime.name} runtime (deleted while the master was not watching, or lost with a node); the master marked it FAILED`,
      });
      if (event) {
        metrics.reconcilerActions.inc({ action: 'lost' });
        this.changes.emit('event');
        this.log('run lost', { runId: run.id });
      }
      return;
    }
    if (status.state !== run.state) {
      await this.record(status);
      metrics.reconcilerActions.inc({ action: 'synced' });
    } else {
      this.ensureArchiver(run.id, status.state);
    }
    const stopping = status.state === 'STOPPING' ? await this.store.getRun(run.id) : undefined;
    if (stopping?.stopRequestedAt !== undefined) {
      const deadline = stopping.stopRequestedAt + (stopping.stopGraceMs ?? 0) + (this.options.stuckStoppingSlackMs ?? 5_000);
      if (now > deadline) {
        await this.runtime.kill(run.id).catch((error) => this.log('killing a stuck run failed', { runId: run.id, error: String(error) }));
        metrics.stuckStoppingKills.inc();
        metrics.reconcilerActions.inc({ action: 'killed_stuck_stopping' });
        await this.store.addAudit({ actor: 'reconciler', namespace: run.namespace, action: 'run.kill', target: run.id, outcome: 'ok', detail: 'STOPPING past its grace period' });
      }
    }
  }

  private async reconcileRest(live: RunRecord[], known: Map<string, RunStatus>): Promise<void> {
    const metrics = this.options.metrics;
    // Ended runs whose archive no archiver finished (a master died right after the end): the rest of their output.
    for (const run of await this.store.runsWithLogsToArchive()) {
      if (run.state === 'REJECTED') await this.store.markLogsArchived(run.id);
      else this.ensureArchiver(run.id, run.state);
    }
    // Queued runs whose slot freed while no master was watching (or on another master).
    for (const namespace of await this.store.queuedNamespaces()) await this.pumpQueue(namespace);
    // Live runs the store lacks (started by a CLI, or lost from the store): adopted so they are tracked.
    const stored = new Set(live.map((r) => r.id));
    for (const status of known.values()) {
      if (isTerminal(status.state) || stored.has(status.runId) || this.inFlight.has(status.runId)) continue;
      if (await this.store.getRun(status.runId)) continue;
      const { created } = await this.store.createRun({
        id: status.runId,
        namespace: this.options.adoptNamespace ?? 'default',
        app: status.app,
        spec: { adopted: true, app: status.app },
        runtime: this.runtime.name,
        createdBy: 'reconciler',
        state: status.state,
        message: 'adopted: a live run the store did not know',
        createdAt: status.createdAt ? Date.parse(status.createdAt) : undefined,
      });
      if (created) {
        metrics.reconcilerActions.inc({ action: 'adopted' });
        this.changes.emit('event');
        this.ensureArchiver(status.runId, status.state);
      }
    }
  }
}
