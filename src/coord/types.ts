// The coordination API weft gives programs instead of ZooKeeper: service
// discovery, leader election with fencing tokens, and locks. Backends: memory
// (one process), etcd (leases + revisions) and Kubernetes (coordination.k8s.io Leases).

/** Timings in client-go's vocabulary (k8s.io/client-go/tools/leaderelection). */
export interface LeaseTimings {
  /** How long others wait after the last renewal they saw before taking over (client-go default 15 s). */
  leaseDurationMs: number;
  /** A leader that has not renewed for this long stops acting as leader (default 10 s). Must be < leaseDurationMs. */
  renewDeadlineMs: number;
  /** How often candidates retry and leaders renew (default 2 s). */
  retryPeriodMs: number;
}

export const DEFAULT_TIMINGS: LeaseTimings = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 };

export function checkTimings(t: LeaseTimings): LeaseTimings {
  for (const [k, v] of Object.entries(t)) {
    if (!Number.isFinite(v) || v <= 0) throw new Error(`coordination timing ${k} must be a positive number of milliseconds, got ${v}`);
  }
  if (t.renewDeadlineMs >= t.leaseDurationMs) {
    throw new Error(`renewDeadlineMs (${t.renewDeadlineMs}) must be less than leaseDurationMs (${t.leaseDurationMs}): a leader must stop acting before its lease can expire for others`);
  }
  if (t.retryPeriodMs >= t.renewDeadlineMs) {
    throw new Error(`retryPeriodMs (${t.retryPeriodMs}) must be less than renewDeadlineMs (${t.renewDeadlineMs}): a leader needs more than one renewal attempt per deadline`);
  }
  return t;
}

export interface Cancellable {
  cancel(): Promise<void>;
}

export interface ServiceEndpoint {
  host: string;
  port: number;
  payload?: string;
}

export interface ServiceInstance extends ServiceEndpoint {
  service: string;
  /** Unique per announcement. */
  id: string;
}

/** A live view of one service's instances. */
export interface ServiceDiscovered extends Iterable<ServiceInstance> {
  readonly service: string;
  /** Current instances, sorted by id. */
  instances(): ServiceInstance[];
  /** Calls `listener` on every change (with the new list). Returns an unsubscribe function. */
  watch(listener: (instances: ServiceInstance[]) => void): () => void;
  /** Resolves when `predicate` holds for the current list (checked now and on every change). */
  waitFor(predicate: (instances: ServiceInstance[]) => boolean, timeoutMs: number, what?: string): Promise<ServiceInstance[]>;
  close(): Promise<void>;
}

export interface Discovery {
  /** Registers an instance; it disappears when cancelled or when this process stops renewing it. */
  announce(service: string, endpoint: ServiceEndpoint): Promise<Cancellable>;
  discover(service: string): Promise<ServiceDiscovered>;
}

export interface LeaderCallbacks {
  /** This candidate now leads; every leader-only write must carry `token`. */
  onElected?(token: number): void;
  /** This candidate stopped leading (resigned, lost its lease, or could not renew within renewDeadline). */
  onStepDown?(reason: string): void;
}

export interface LeaderHandle {
  readonly name: string;
  readonly candidateId: string;
  readonly isLeader: boolean;
  /** The fencing token of the current term while leading, else undefined. */
  readonly fencingToken: number | undefined;
  /** Steps down (if leading) and leaves the election; releases the lease so another can lead at once. */
  resign(): Promise<void>;
}

export interface LeaderElector {
  /** Joins the election `name`; returns at once, callbacks say when this candidate leads. Re-campaigns after losing leadership until resign(). */
  electLeader(name: string, candidateId: string, callbacks?: LeaderCallbacks): Promise<LeaderHandle>;
}

export interface LockOptions {
  /** Give up after this long (default: wait forever). */
  timeoutMs?: number;
  /** Identity of the holder (default: a random id). */
  owner?: string;
  /** Called if the lock is lost while held (lease not renewable within renewDeadline). */
  onLost?(reason: string): void;
}

export interface LockHandle {
  readonly name: string;
  /** Fencing token: strictly increasing across holders of this lock. */
  readonly token: number;
  /** False once released or lost. */
  readonly held: boolean;
  release(): Promise<void>;
}

export interface Locks {
  acquire(name: string, options?: LockOptions): Promise<LockHandle>;
}

export class LockTimeoutError extends Error {
  constructor(name: string, timeoutMs: number) {
    super(`could not acquire lock "${name}" within ${timeoutMs} ms: another holder keeps it; retry later or raise the timeout`);
    this.name = 'LockTimeoutError';
  }
}

export class StaleTokenError extends Error {
  constructor(readonly token: number, readonly latest: number) {
    super(`fencing token ${token} is stale: a write with token ${latest} was already accepted (a newer leader exists)`);
    this.name = 'StaleTokenError';
  }
}

export interface FencedEntry {
  token: number;
  writer: string;
  data?: unknown;
  /** Wall-clock time of the write, ms since epoch. */
  at: number;
}

/**
 * A shared append-only log whose writes are fenced: an append with a token lower
 * than the highest accepted token is rejected (StaleTokenError), atomically.
 * It is the model of a leader-only resource; tests use it to prove safety.
 */
export interface FencedLog {
  append(token: number, writer: string, data?: unknown): Promise<void>;
  read(): Promise<FencedEntry[]>;
  /** Deletes the log. */
  clear(): Promise<void>;
}

export interface Coordination {
  readonly backend: 'memory' | 'etcd' | 'kubernetes';
  readonly discovery: Discovery;
  readonly elector: LeaderElector;
  readonly locks: Locks;
  fencedLog(name: string): FencedLog;
  /** Resigns, cancels and releases everything this instance holds, then closes connections. */
  close(): Promise<void>;
}

/** Checks names used as keys/object names: DNS-1123 subdomain-ish, so they are valid on every backend. */
export function checkName(kind: string, name: string): string {
  if (!/^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$/.test(name)) {
    throw new Error(`invalid ${kind} "${name}": use lowercase letters, digits, '-' and '.', start and end with a letter or digit, at most 63 characters`);
  }
  return name;
}
