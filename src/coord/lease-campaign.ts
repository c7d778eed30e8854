// client-go style leader election over a single lease record with compare-and-swap
// writes (k8s.io/client-go/tools/leaderelection, re-written for weft): used by the
// Kubernetes backend (coordination.k8s.io/v1 Lease, CAS on resourceVersion) and the
// memory backend (CAS on an in-memory version). Also the basis of locks.
//
// Safety argument: a leader measures its deadline from the moment it SENT its last
// successful renewal; the store applied that write later, and every other candidate
// first observed it later still, and waits leaseDuration from its own observation.
// The leader stops acting at sent + renewDeadline < observed + leaseDuration.
import { randomUUID } from 'node:crypto';
import type { LeaderCallbacks, LeaseTimings } from './types.js';

/** What a campaign calls once it wins (with its fencing token) or gives up. */
export interface ElectionOutcome {
  resolve: (token: number) => void;
  reject: (e: Error) => void;
}

/**
 * The promise a lock's acquire() returns: the campaign settles it through `elected`; after
 * `timeoutMs` without a win, `onTimeout` runs and it rejects with "timeout".
 */
export function awaitElection(timeoutMs: number | undefined, onTimeout?: () => void): { elected: ElectionOutcome; token: Promise<number> } {
  let elected!: ElectionOutcome;
  const token = new Promise<number>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    elected = {
      resolve: (t) => { clearTimeout(timer); resolve(t); },
      reject: (e) => { clearTimeout(timer); reject(e); },
    };
    if (timeoutMs !== undefined) {
      timer = setTimeout(() => {
        onTimeout?.();
        elected.reject(new Error('timeout'));
      }, timeoutMs);
    }
  });
  return { elected, token };
}

export interface LeaseRecord {
  holderIdentity: string;
  leaseDurationMs: number;
  acquireTime: number;
  renewTime: number;
  leaseTransitions: number;
}

export interface VersionedRecord {
  record: LeaseRecord;
  version: string;
}

export class ConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConflictError';
  }
}

/** Storage of named lease records with optimistic concurrency. */
export interface LeaseRecordStore {
  get(name: string): Promise<VersionedRecord | null>;
  /** Throws ConflictError if the record exists. */
  create(name: string, record: LeaseRecord): Promise<VersionedRecord>;
  /** Throws ConflictError if the stored version differs from `version`. */
  update(name: string, record: LeaseRecord, version: string): Promise<VersionedRecord>;
}

export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export interface CampaignOptions {
  store: LeaseRecordStore;
  name: string;
  identity: string;
  timings: LeaseTimings;
  callbacks: LeaderCallbacks;
  /** Lock mode: stop after the first term (no re-campaign); give up acquiring after timeoutMs. */
  once?: boolean;
}

/** One candidate in one election. */
export class LeaseCampaign {
  private observed: (VersionedRecord & { observedAt: number }) | null = null;
  private leading = false;
  private token: number | undefined;
  private stopped = false;
  private lastRenewSent = 0;
  private watchdog: NodeJS.Timeout | undefined;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private elected: ElectionOutcome | undefined;
  readonly id = randomUUID();

  constructor(private readonly opts: CampaignOptions) {}

  get isLeader(): boolean {
    return this.leading;
  }
  get fencingToken(): number | undefined {
    return this.leading ? this.token : undefined;
  }

  /** Starts campaigning in the background. */
  start(): void {
    this.loop = this.run().catch(() => undefined);
  }

  /** Lock mode: resolves with the token once acquired, rejects after `timeoutMs` (and stops campaigning). */
  acquire(timeoutMs: number | undefined): Promise<number> {
    const waiting = awaitElection(timeoutMs, () => {
      this.elected = undefined;
      void this.stop(false);
    });
    this.elected = waiting.elected;
    this.start();
    return waiting.token;
  }

  private async run(): Promise<void> {
    const { retryPeriodMs } = this.opts.timings;
    while (!this.stopped) {
      let sent: number | undefined;
      try {
        sent = await withTimeout(this.tryAcquireOrRenew(), this.opts.timings.renewDeadlineMs, `lease ${this.opts.name}`);
      } catch {
        sent = undefined;
      }
      if (this.stopped) break;
      if (sent !== undefined) {
        // From this attempt's write, not from the read before it: a slow read (a cold connection,
        // a loaded API server) must not eat the renew deadline of a lease that was just written.
        this.lastRenewSent = sent;
        if (!this.leading) {
          this.leading = true;
          this.token = this.observed!.record.leaseTransitions;
          this.armWatchdog();
          this.opts.callbacks.onElected?.(this.token);
          this.elected?.resolve(this.token);
          this.elected = undefined;
        } else {
          this.armWatchdog();
        }
      } else if (this.leading && this.observed && this.observed.record.holderIdentity !== this.opts.identity) {
        this.stepDown(`lease "${this.opts.name}" is now held by ${this.observed.record.holderIdentity}`);
      }
      if (this.opts.once && !this.leading && this.token !== undefined) break; // lock lost: no re-acquire
      // client-go jitters the retry period by up to 20% so candidates do not move in lock-step.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.leading ? retryPeriodMs : retryPeriodMs * (1 + Math.random() * 0.2));
        this.wake = () => { clearTimeout(timer); resolve(); };
      });
      this.wake = undefined;
    }
  }

  private armWatchdog(): void {
    clearTimeout(this.watchdog);
    const due = this.lastRenewSent + this.opts.timings.renewDeadlineMs - Date.now();
    this.watchdog = setTimeout(() => {
      this.stepDown(`could not renew lease "${this.opts.name}" within renewDeadline (${this.opts.timings.renewDeadlineMs} ms)`);
    }, Math.max(0, due));
  }

  private stepDown(reason: string): void {
    clearTimeout(this.watchdog);
    if (!this.leading) return;
    this.leading = false;
    this.opts.callbacks.onStepDown?.(reason);
  }

  /** One attempt; on success, when its write was sent (the leader's deadline counts from there). */
  private async tryAcquireOrRenew(): Promise<number | undefined> {
    const { store, name, identity, timings } = this.opts;
    const now = Date.now();
    const current = await store.get(name);
    if (!current) {
      const sent = Date.now();
      const created = await store.create(name, {
        holderIdentity: identity,
        leaseDurationMs: timings.leaseDurationMs,
        acquireTime: now,
        renewTime: now,
        leaseTransitions: 0,
      });
      this.observed = { ...created, observedAt: Date.now() };
      return sent;
    }
    if (!this.observed || this.observed.version !== current.version) {
      this.observed = { ...current, observedAt: Date.now() };
    }
    const rec = current.record;
    const heldByOther = rec.holderIdentity !== '' && rec.holderIdentity !== identity;
    if (heldByOther && this.observed.observedAt + rec.leaseDurationMs > Date.now()) return undefined;
    if (rec.holderIdentity === identity && !this.leading && this.token !== undefined && this.opts.once) return undefined;
    const renewing = this.leading && rec.holderIdentity === identity && rec.leaseTransitions === this.token;
    // Every new term (a new holder, or this holder again after it stepped down) bumps
    // leaseTransitions, so the fencing token strictly increases from term to term.
    const next: LeaseRecord = renewing
      ? { ...rec, renewTime: now, leaseDurationMs: timings.leaseDurationMs }
      : { holderIdentity: identity, leaseDurationMs: timings.leaseDurationMs, acquireTime: now, renewTime: now, leaseTransitions: rec.leaseTransitions + 1 };
    if (!renewing && this.leading) return undefined; // someone changed our record: lost
    try {
      const sent = Date.now();
      const updated = await store.update(name, next, current.version);
      this.observed = { ...updated, observedAt: Date.now() };
      return sent;
    } catch (error) {
      if (error instanceof ConflictError) return undefined;
      throw error;
    }
  }

  /** Stops campaigning. With `release`, gives the lease up so another candidate can take it at once. */
  async stop(release: boolean, reason = 'resigned'): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.wake?.();
    const wasLeading = this.leading;
    const token = this.token;
    this.stepDown(reason);
    this.elected?.reject(new Error('stopped'));
    this.elected = undefined;
    await this.loop;
    if (release && wasLeading && this.observed) {
      const { store, name } = this.opts;
      try {
        const current = await withTimeout(store.get(name), this.opts.timings.renewDeadlineMs, 'release');
        if (current && current.record.holderIdentity === this.opts.identity && current.record.leaseTransitions === token) {
          // client-go's ReleaseOnCancel: empty holder, 1 s duration.
          await withTimeout(
            store.update(name, { ...current.record, holderIdentity: '', leaseDurationMs: 1000, renewTime: Date.now() }, current.version),
            this.opts.timings.renewDeadlineMs,
            'release',
          );
        }
      } catch {
        // Best effort: the lease expires on its own.
      }
    }
  }

  /** Simulated crash (memory backend tests): stops all activity without releasing or calling back. */
  abandon(): void {
    this.opts.callbacks = {};
    this.stopped = true;
    this.leading = false;
    clearTimeout(this.watchdog);
    this.wake?.();
  }
}
