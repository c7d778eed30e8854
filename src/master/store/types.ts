// The master's store: apps (versioned specs), runs with their full state
// history, idempotency keys, audit records, hashed tokens and archived logs.
// One interface, two implementations (SQLite, PostgreSQL) over the same SQL.
import type { RunState } from '../../runtime/index.js';

export type Role = 'viewer' | 'operator' | 'admin';
export const ROLES: readonly Role[] = ['viewer', 'operator', 'admin'];

export interface AppRecord {
  namespace: string;
  name: string;
  version: number;
  /** The app spec as submitted (validated input, not the parsed output). */
  spec: unknown;
  createdAt: number;
  createdBy: string;
}

export interface RunRecord {
  id: string;
  namespace: string;
  app: string;
  /** Version of the stored app the run was started from; undefined for a one-off spec. */
  appVersion?: number;
  state: RunState;
  reason?: string;
  message?: string;
  /** The fully resolved spec the runtime was given (overrides applied). */
  spec: unknown;
  runtime: string;
  createdAt: number;
  updatedAt: number;
  finishedAt?: number;
  createdBy: string;
  idempotencyKey?: string;
  /** Set by a graceful stop: when it was asked and the grace period (for the stuck-stopping watchdog). */
  stopRequestedAt?: number;
  stopGraceMs?: number;
  /** Set while the run waits in its namespace's admission queue (PENDING, reason Queued); cleared when admitted. */
  queuedAt?: number;
  /** When the runtime accepted the run; undefined while it waits in the queue or to be handed over. */
  launchedAt?: number;
  /**
   * Set while an admitted run waits to be handed to the runtime: the master handing it over may do so
   * until then; after it, the leader takes the hand-over over (the master may have died).
   */
  handoverUntil?: number;
  /** When the archive of the ended run's output was completed (set by the archiver that drained it). */
  logsArchivedAt?: number;
}

export interface RunEvent {
  /** Global, increasing event id (the SSE event id; resumable from it). */
  id: number;
  runId: string;
  namespace: string;
  from?: RunState;
  to: RunState;
  at: number;
  reason?: string;
  message?: string;
}

export interface AuditRecord {
  id: number;
  at: number;
  actor: string;
  namespace?: string;
  action: string;
  target?: string;
  outcome: string;
  detail?: string;
}

export interface TokenRecord {
  id: string;
  name: string;
  /** Namespace (or "*") to role. */
  roles: Record<string, Role>;
  createdAt: number;
  revokedAt?: number;
}

export interface LogRecord {
  /** Position in the run's archive, from 1: the cursor clients page with. */
  seq: number;
  runnable: string;
  instance: string;
  stream?: 'stdout' | 'stderr';
  at: number;
  line: string;
}

export interface NewRun {
  id: string;
  namespace: string;
  app: string;
  appVersion?: number;
  spec: unknown;
  runtime: string;
  createdBy: string;
  state?: RunState;
  reason?: string;
  message?: string;
  createdAt?: number;
}

export interface CreateRunOptions {
  /** A retried submission with the same key in the namespace returns the first run. */
  idempotencyKey?: string;
  /** Live runs allowed in the namespace; over it the run is stored REJECTED (or queued with `queue`). */
  admissionLimit?: number;
  /** Over the admission limit, wait in the namespace's queue (PENDING, reason Queued) instead of being rejected. */
  queue?: boolean;
  /**
   * The caller hands an admitted run to the runtime itself and holds that hand-over this long (ms): the run is
   * stored not yet launched (see Store.markLaunched, Store.takeOverHandover). Without it the run counts as
   * launched at once (adopted, imported).
   */
  handoverMs?: number;
}

export interface CreateRunResult {
  run: RunRecord;
  /** False when an earlier run with the same idempotency key was returned. */
  created: boolean;
  /** True when the admission limit turned the run into a REJECTED record. */
  rejected: boolean;
  /** Its place in the namespace's admission queue (1 = next) when it was queued. */
  queuePosition?: number;
}

export interface RunFilter {
  namespace?: string;
  app?: string;
  states?: RunState[];
  /** createdAt >= since (ms). */
  since?: number;
  /** createdAt < until (ms). */
  until?: number;
  limit?: number;
  /** Opaque token from a previous page. */
  continueToken?: string;
}

export interface RunPage {
  items: RunRecord[];
  /** Present when more runs match. */
  continueToken?: string;
}

export interface TransitionOptions {
  reason?: string;
  message?: string;
  at?: number;
  /** Only while the run is not launched (queued or waiting to be handed over); decided in the transition's transaction. */
  unlessLaunched?: boolean;
}

export class StoreError extends Error {
  override name = 'StoreError';
  constructor(message: string, readonly code: 'not_found' | 'conflict' | 'invalid' = 'invalid') {
    super(message);
  }
}

export interface Store {
  readonly kind: 'sqlite' | 'postgres';
  /** Applies pending schema migrations; returns the schema version. */
  migrate(): Promise<number>;
  schemaVersion(): Promise<number>;
  close(): Promise<void>;

  putApp(namespace: string, name: string, spec: unknown, actor: string): Promise<AppRecord>;
  getApp(namespace: string, name: string, version?: number): Promise<AppRecord | undefined>;
  listApps(namespace: string): Promise<AppRecord[]>;

  createRun(run: NewRun, options?: CreateRunOptions): Promise<CreateRunResult>;
  /**
   * Stores many runs in one transaction, each with its first event, with no idempotency or admission
   * decision (imports, benchmarks). Runs in a terminal state get finishedAt = createdAt.
   */
  importRuns(runs: NewRun[]): Promise<void>;
  getRun(id: string): Promise<RunRecord | undefined>;
  /** Every transition of a run, oldest first. */
  history(id: string): Promise<RunEvent[]>;
  /** Moves a run to `to` when the state machine allows it; returns the event, or undefined when not allowed or unchanged. */
  transition(id: string, to: RunState, options?: TransitionOptions): Promise<RunEvent | undefined>;
  markStopRequested(id: string, graceMs: number, at?: number): Promise<void>;
  listRuns(filter: RunFilter): Promise<RunPage>;
  /** Runs that are not terminal (for reconciliation). */
  liveRuns(): Promise<RunRecord[]>;
  countLive(namespace: string): Promise<number>;
  /**
   * Takes the oldest queued run of the namespace out of the queue when fewer than `limit` runs are live
   * (queued runs do not count); decided under the namespace's lock, so one caller gets each run.
   */
  admitQueued(namespace: string, limit: number, handoverMs: number): Promise<RunRecord | undefined>;
  /** Records that the runtime accepted the run (its hand-over is done); false when it was recorded already. */
  markLaunched(id: string, at?: number): Promise<boolean>;
  /**
   * Takes over the hand-over of an admitted, not launched run whose hand-over time has passed (its master
   * may have died): holds it for `handoverMs` from now and returns the run, or undefined when the run was
   * launched, ended, or another master holds it.
   */
  takeOverHandover(id: string, handoverMs: number, now?: number): Promise<RunRecord | undefined>;
  /** Records that the archive of an ended run's output is complete. */
  markLogsArchived(id: string, at?: number): Promise<void>;
  /** Ended runs that were launched and whose archive is not complete (their archiver's master died), oldest end first. */
  runsWithLogsToArchive(limit?: number): Promise<RunRecord[]>;
  /** 1-based place of a queued run in its namespace's queue; undefined when it is not queued. */
  queuePosition(id: string): Promise<number | undefined>;
  /** Namespaces that have queued runs. */
  queuedNamespaces(): Promise<string[]>;
  /** Number of runs in each state (for metrics; of one namespace or app for the dashboard). */
  countByState(filter?: { namespace?: string; app?: string }): Promise<Partial<Record<RunState, number>>>;
  /** Events with id > after (of one run or namespace when given), oldest first. */
  /** The newest event id (0 when there is none): where a new watcher starts. */
  latestEventId(): Promise<number>;
  events(after: number, options?: { runId?: string; namespace?: string; limit?: number }): Promise<RunEvent[]>;

  addAudit(record: Omit<AuditRecord, 'id' | 'at'> & { at?: number }): Promise<void>;
  listAudit(options?: { namespace?: string; limit?: number }): Promise<AuditRecord[]>;

  /** Stores a token by its hash (the token itself is never stored). */
  addToken(token: { id: string; name: string; hash: string; roles: Record<string, Role> }): Promise<TokenRecord>;
  tokenByHash(hash: string): Promise<TokenRecord | undefined>;
  listTokens(): Promise<TokenRecord[]>;
  revokeToken(id: string): Promise<boolean>;

  /** Appends lines of one source (runnable/instance) of a run in one transaction; returns the last seq written. */
  appendLogs(runId: string, runnable: string, instance: string, lines: Array<{ line: string; stream?: 'stdout' | 'stderr'; at?: number }>): Promise<number>;
  /** How many lines of a source are archived (where a restarted archiver resumes). */
  archivedLineCount(runId: string, runnable: string, instance: string): Promise<number>;
  /** Lines after `after`, oldest first; with `before`, the newest `limit` lines before it (still oldest first). */
  readLogs(runId: string, options?: { after?: number; before?: number; limit?: number }): Promise<LogRecord[]>;
}
