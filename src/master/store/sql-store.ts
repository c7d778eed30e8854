// The Store written once over SqlDriver (SQLite and PostgreSQL share every query).
import { canTransition, isTerminal, RUN_STATES, type RunState } from '../../runtime/index.js';
import type { Param, Querier, Row, SqlDriver } from './driver.js';
import { MIGRATIONS, renderStatement } from './migrations.js';
import {
  StoreError,
  type AppRecord,
  type AuditRecord,
  type CreateRunOptions,
  type CreateRunResult,
  type LogRecord,
  type NewRun,
  type Role,
  type RunEvent,
  type RunFilter,
  type RunPage,
  type RunRecord,
  type Store,
  type TokenRecord,
  type TransitionOptions,
} from './types.js';

const TERMINAL = RUN_STATES.filter((s) => isTerminal(s));
const LIVE = RUN_STATES.filter((s) => !isTerminal(s));
const placeholders = (n: number) => Array.from({ length: n }, () => '?').join(', ');
const opt = <T>(v: unknown): T | undefined => (v === null || v === undefined ? undefined : (v as T));
const MAX_PAGE = 1000;
// Serialises event inserts in PostgreSQL, so event ids become visible in increasing order (a watcher resuming from an id misses nothing).
const EVENT_LOCK = 'weft:run-events';

function toRun(r: Row): RunRecord {
  return {
    id: r.id as string,
    namespace: r.namespace as string,
    app: r.app as string,
    appVersion: opt<number>(r.app_version),
    state: r.state as RunState,
    reason: opt<string>(r.reason),
    message: opt<string>(r.message),
    spec: JSON.parse(r.spec as string),
    runtime: r.runtime as string,
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
    finishedAt: opt<number>(r.finished_at),
    createdBy: r.created_by as string,
    idempotencyKey: opt<string>(r.idempotency_key),
    stopRequestedAt: opt<number>(r.stop_requested_at),
    stopGraceMs: opt<number>(r.stop_grace_ms),
    queuedAt: opt<number>(r.queued_at),
    launchedAt: opt<number>(r.launched_at),
    handoverUntil: opt<number>(r.handover_until),
    logsArchivedAt: opt<number>(r.logs_archived_at),
  };
}

function toEvent(r: Row): RunEvent {
  return {
    id: Number(r.id),
    runId: r.run_id as string,
    namespace: r.namespace as string,
    from: opt<RunState>(r.from_state),
    to: r.to_state as RunState,
    at: Number(r.at),
    reason: opt<string>(r.reason),
    message: opt<string>(r.message),
  };
}

function toApp(r: Row): AppRecord {
  return { namespace: r.namespace as string, name: r.name as string, version: Number(r.version), spec: JSON.parse(r.spec as string), createdAt: Number(r.created_at), createdBy: r.created_by as string };
}

function toAudit(r: Row): AuditRecord {
  return {
    id: Number(r.id),
    at: Number(r.at),
    actor: r.actor as string,
    namespace: opt<string>(r.namespace),
    action: r.action as string,
    target: opt<string>(r.target),
    outcome: r.outcome as string,
    detail: opt<string>(r.detail),
  };
}

function toLog(r: Row): LogRecord {
  return { seq: Number(r.seq), runnable: r.runnable as string, instance: r.instance as string, stream: opt<'stdout' | 'stderr'>(r.stream), at: Number(r.at), line: r.line as string };
}

/** The row of a new run (every column; toRun reads it back as the record). */
function runRow(run: NewRun, fields: { state: RunState; reason?: string; message?: string; at: number; idempotencyKey?: string; queuedAt?: number; launchedAt?: number; handoverUntil?: number; logsArchivedAt?: number }): Row {
  return {
    id: run.id,
    namespace: run.namespace,
    app: run.app,
    app_version: run.appVersion ?? null,
    state: fields.state,
    reason: fields.reason ?? null,
    message: fields.message ?? null,
    spec: JSON.stringify(run.spec),
    runtime: run.runtime,
    created_at: fields.at,
    updated_at: fields.at,
    finished_at: isTerminal(fields.state) ? fields.at : null,
    created_by: run.createdBy,
    idempotency_key: fields.idempotencyKey ?? null,
    queued_at: fields.queuedAt ?? null,
    launched_at: fields.launchedAt ?? null,
    handover_until: fields.handoverUntil ?? null,
    logs_archived_at: fields.logsArchivedAt ?? null,
  };
}

function eventRow(e: Omit<RunEvent, 'id'>): Row {
  return { run_id: e.runId, namespace: e.namespace, from_state: e.from ?? null, to_state: e.to, at: e.at, reason: e.reason ?? null, message: e.message ?? null };
}

/** One INSERT of rows with the same columns (the first row's keys). */
function insertStatement(table: string, rows: Row[]): { sql: string; params: Param[] } {
  const columns = Object.keys(rows[0]);
  return {
    sql: `INSERT INTO ${table} (${columns.join(', ')}) VALUES ${rows.map(() => `(${placeholders(columns.length)})`).join(', ')}`,
    params: rows.flatMap((r) => columns.map((c) => r[c] as Param)),
  };
}

/** Rows in multi-row INSERTs of `per` rows (18 columns x 500 rows stays within both databases' parameter limits). */
async function insertRows(q: Querier, table: string, rows: Row[], per = 500): Promise<void> {
  for (let start = 0; start < rows.length; start += per) {
    const { sql, params } = insertStatement(table, rows.slice(start, start + per));
    await q.execute(sql, params);
  }
}

/** AND-ed conditions of a WHERE clause with their parameters. */
class Conditions {
  private readonly terms: string[] = [];
  readonly params: Param[] = [];

  add(term: string, ...params: Param[]): this {
    this.terms.push(term);
    this.params.push(...params);
    return this;
  }

  /** Adds `column = ?` when the value is given. */
  equals(column: string, value: string | undefined): this {
    return value === undefined ? this : this.add(`${column} = ?`, value);
  }

  get sql(): string {
    return this.terms.length ? ` WHERE ${this.terms.join(' AND ')}` : '';
  }
}

function toToken(r: Row): TokenRecord {
  return { id: r.id as string, name: r.name as string, roles: JSON.parse(r.roles as string) as Record<string, Role>, createdAt: Number(r.created_at), revokedAt: opt<number>(r.revoked_at) };
}

interface Cursor {
  createdAt: number;
  id: string;
}

export function encodeContinue(c: Cursor): string {
  return Buffer.from(JSON.stringify([c.createdAt, c.id])).toString('base64url');
}

export function decodeContinue(token: string): Cursor {
  try {
    const [createdAt, id] = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as [unknown, unknown];
    if (typeof createdAt === 'number' && Number.isSafeInteger(createdAt) && typeof id === 'string') return { createdAt, id };
  } catch {
    // fall through
  }
  throw new StoreError('the continue token is not one this master issued: start the listing again without it', 'invalid');
}

export class SqlStore implements Store {
  constructor(private readonly db: SqlDriver) {}

  /** A transaction under the namespace's lock (idempotency, admission and the queue are decided under it). */
  private inNamespace<T>(namespace: string, fn: (q: Querier) => Promise<T>): Promise<T> {
    return this.db.transaction(async (q) => {
      await this.db.lock(q, `weft:ns:${namespace}`);
      return fn(q);
    });
  }

  get kind(): 'sqlite' | 'postgres' {
    return this.db.dialect;
  }

  async migrate(): Promise<number> {
    return this.db.transaction(async (q) => {
      await this.db.lock(q, 'weft:migrations');
      await q.execute(`CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at ${this.db.dialect === 'sqlite' ? 'INTEGER' : 'BIGINT'} NOT NULL)`);
      const done = new Set((await q.query('SELECT version FROM schema_migrations')).map((r) => Number(r.version)));
      const newest = Math.max(0, ...done);
      const known = Math.max(...MIGRATIONS.map((m) => m.version));
      if (newest > known) throw new StoreError(`the store's schema is version ${newest}, newer than this weft knows (${known}): upgrade weft`, 'conflict');
      for (const m of MIGRATIONS) {
        if (done.has(m.version)) continue;
        for (const statement of m.statements) await q.execute(renderStatement(statement, this.db.dialect));
        await q.execute('INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)', [m.version, m.description, Date.now()]);
      }
      return known;
    });
  }

  async schemaVersion(): Promise<number> {
    const rows = await this.db.query('SELECT MAX(version) AS v FROM schema_migrations');
    return Number(rows[0]?.v ?? 0);
  }

  close(): Promise<void> {
    return this.db.close();
  }

  // -- apps

  async putApp(namespace: string, name: string, spec: unknown, actor: string): Promise<AppRecord> {
    return this.db.transaction(async (q) => {
      await this.db.lock(q, `weft:app:${namespace}/${name}`);
      const rows = await q.query('SELECT MAX(version) AS v FROM apps WHERE namespace = ? AND name = ?', [namespace, name]);
      const version = Number(rows[0]?.v ?? 0) + 1;
      const createdAt = Date.now();
      await q.execute('INSERT INTO apps (namespace, name, version, spec, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)', [namespace, name, version, JSON.stringify(spec), createdAt, actor]);
      return { namespace, name, version, spec, createdAt, createdBy: actor };
    });
  }

  async getApp(namespace: string, name: string, version?: number): Promise<AppRecord | undefined> {
    const rows =
      version === undefined
        ? await this.db.query('SELECT * FROM apps WHERE namespace = ? AND name = ? ORDER BY version DESC LIMIT 1', [namespace, name])
        : await this.db.query('SELECT * FROM apps WHERE namespace = ? AND name = ? AND version = ?', [namespace, name, version]);
    return rows[0] ? toApp(rows[0]) : undefined;
  }

  async listApps(namespace: string): Promise<AppRecord[]> {
    const rows = await this.db.query(
      'SELECT a.* FROM apps a WHERE a.namespace = ? AND a.version = (SELECT MAX(b.version) FROM apps b WHERE b.namespace = a.namespace AND b.name = a.name) ORDER BY a.name',
      [namespace],
    );
    return rows.map(toApp);
  }

  // -- runs

  private async insertEvent(q: Querier, e: Omit<RunEvent, 'id'>): Promise<RunEvent> {
    await this.db.lock(q, EVENT_LOCK);
    const { sql, params } = insertStatement('run_events', [eventRow(e)]);
    const rows = await q.query(`${sql} RETURNING id`, params);
    return { ...e, id: Number(rows[0].id) };
  }

  async importRuns(runs: NewRun[]): Promise<void> {
    await this.db.transaction(async (q) => {
      await this.db.lock(q, EVENT_LOCK);
      const rows = runs.map((run) => {
        const state: RunState = run.state ?? 'PENDING';
        const at = run.createdAt ?? Date.now();
        return { run: runRow(run, { state, reason: run.reason, message: run.message, at, launchedAt: at, logsArchivedAt: isTerminal(state) ? at : undefined }), event: eventRow({ runId: run.id, namespace: run.namespace, to: state, at, reason: run.reason, message: run.message }) };
      });
      await insertRows(q, 'runs', rows.map((r) => r.run));
      await insertRows(q, 'run_events', rows.map((r) => r.event));
    });
  }

  async createRun(run: NewRun, options: CreateRunOptions = {}): Promise<CreateRunResult> {
    // One lock per namespace makes the idempotency check and the admission count exact under concurrent submissions.
    return this.inNamespace(run.namespace, async (q) => {
      if (options.idempotencyKey !== undefined) {
        const existing = await q.query('SELECT * FROM runs WHERE namespace = ? AND idempotency_key = ?', [run.namespace, options.idempotencyKey]);
        if (existing[0]) return { run: toRun(existing[0]), created: false, rejected: false };
      }
      let state: RunState = run.state ?? 'PENDING';
      let reason = run.reason;
      let message = run.message;
      let rejected = false;
      let queuedAt: number | undefined;
      let queuePosition: number | undefined;
      const now = run.createdAt ?? Date.now();
      if (options.admissionLimit !== undefined && !isTerminal(state)) {
        const live = await this.countLiveIn(q, run.namespace);
        // A queue that is not empty is served first: a new run does not overtake waiting ones.
        const waiting = Number((await q.query('SELECT COUNT(*) AS n FROM runs WHERE namespace = ? AND queued_at IS NOT NULL', [run.namespace]))[0].n);
        if (live >= options.admissionLimit || (options.queue && waiting > 0)) {
          if (options.queue) {
            queuedAt = now;
            queuePosition = waiting + 1;
            reason = 'Queued';
            message = `waiting for a slot: namespace ${run.namespace} has ${live} live run(s), its limit is ${options.admissionLimit}`;
          } else {
            state = 'REJECTED';
            reason = 'AdmissionLimit';
            message = `namespace ${run.namespace} already has ${live} live run(s), its limit is ${options.admissionLimit}: wait for one to end or stop one (or submit with queue: true to wait in line)`;
            rejected = true;
          }
        }
      }
      // An admitted run the caller hands over itself is not launched yet; anything else (queued, rejected, adopted) needs no hand-over now.
      const handoverUntil = options.handoverMs !== undefined && queuedAt === undefined && state === 'PENDING' && run.state === undefined ? now + options.handoverMs : undefined;
      const launchedAt = handoverUntil === undefined && queuedAt === undefined && !isTerminal(state) ? now : undefined;
      const row = runRow(run, { state, reason, message, at: now, idempotencyKey: options.idempotencyKey, queuedAt, launchedAt, handoverUntil });
      await insertRows(q, 'runs', [row]);
      await this.insertEvent(q, { runId: run.id, namespace: run.namespace, to: state, at: now, reason, message });
      return { run: { ...toRun(row), spec: run.spec }, created: true, rejected, queuePosition };
    });
  }

  async getRun(id: string): Promise<RunRecord | undefined> {
    const rows = await this.db.query('SELECT * FROM runs WHERE id = ?', [id]);
    return rows[0] ? toRun(rows[0]) : undefined;
  }

  async history(id: string): Promise<RunEvent[]> {
    return (await this.db.query('SELECT * FROM run_events WHERE run_id = ? ORDER BY id', [id])).map(toEvent);
  }

  async transition(id: string, to: RunState, options: TransitionOptions = {}): Promise<RunEvent | undefined> {
    return this.db.transaction(async (q) => {
      const rows = await q.query(`SELECT id, namespace, state, launched_at FROM runs WHERE id = ?${this.db.dialect === 'postgres' ? ' FOR UPDATE' : ''}`, [id]);
      if (!rows[0]) throw new StoreError(`no run ${id}`, 'not_found');
      const from = rows[0].state as RunState;
      if (from === to || !canTransition(from, to)) return undefined;
      if (options.unlessLaunched && opt(rows[0].launched_at) !== undefined) return undefined;
      const at = options.at ?? Date.now();
      await q.execute(`UPDATE runs SET state = ?, reason = ?, message = ?, updated_at = ?, finished_at = ?${isTerminal(to) ? ', queued_at = NULL' : ''} WHERE id = ?`, [
        to,
        options.reason ?? null,
        options.message ?? null,
        at,
        isTerminal(to) ? at : null,
        id,
      ]);
      return this.insertEvent(q, { runId: id, namespace: rows[0].namespace as string, from, to, at, reason: options.reason, message: options.message });
    });
  }

  async markStopRequested(id: string, graceMs: number, at = Date.now()): Promise<void> {
    await this.db.execute('UPDATE runs SET stop_requested_at = ?, stop_grace_ms = ?, updated_at = ? WHERE id = ?', [at, graceMs, at, id]);
  }

  async listRuns(filter: RunFilter): Promise<RunPage> {
    const where = new Conditions().equals('namespace', filter.namespace).equals('app', filter.app);
    if (filter.states?.length) where.add(`state IN (${placeholders(filter.states.length)})`, ...filter.states);
    if (filter.since !== undefined) where.add('created_at >= ?', filter.since);
    if (filter.until !== undefined) where.add('created_at < ?', filter.until);
    if (filter.continueToken) {
      const c = decodeContinue(filter.continueToken);
      // Newest first; the next page starts strictly after the last row of this one (keyset paging, stable under inserts).
      // A row-value comparison, not `created_at < ? OR (created_at = ? AND id < ?)`: both databases make it one range
      // of the (…, created_at DESC, id DESC) index, so a page deep in the list costs what the first one does.
      where.add('(created_at, id) < (?, ?)', c.createdAt, c.id);
    }
    const limit = Math.min(Math.max(1, filter.limit ?? 100), MAX_PAGE);
    const rows = await this.db.query(`SELECT * FROM runs${where.sql} ORDER BY created_at DESC, id DESC LIMIT ?`, [...where.params, limit + 1]);
    const items = rows.slice(0, limit).map(toRun);
    const last = items[items.length - 1];
    return { items, continueToken: rows.length > limit && last ? encodeContinue({ createdAt: last.createdAt, id: last.id }) : undefined };
  }

  async liveRuns(): Promise<RunRecord[]> {
    return (await this.db.query(`SELECT * FROM runs WHERE state IN (${placeholders(LIVE.length)}) ORDER BY created_at`, [...LIVE])).map(toRun);
  }

  /** Live runs that hold a slot: not terminal and not waiting in the queue. */
  private async countLiveIn(q: Querier, namespace: string): Promise<number> {
    const rows = await q.query(`SELECT COUNT(*) AS n FROM runs WHERE namespace = ? AND queued_at IS NULL AND state NOT IN (${placeholders(TERMINAL.length)})`, [namespace, ...TERMINAL]);
    return Number(rows[0].n);
  }

  async admitQueued(namespace: string, limit: number, handoverMs: number): Promise<RunRecord | undefined> {
    return this.inNamespace(namespace, async (q) => {
      if ((await this.countLiveIn(q, namespace)) >= limit) return undefined;
      const rows = await q.query('SELECT * FROM runs WHERE namespace = ? AND queued_at IS NOT NULL ORDER BY queued_at, id LIMIT 1', [namespace]);
      if (!rows[0]) return undefined;
      const now = Date.now();
      const message = 'admitted from the queue';
      // Admitted, not launched: the caller hands it over; if it dies first, the leader takes over after handover_until.
      await q.execute('UPDATE runs SET queued_at = NULL, reason = NULL, message = ?, updated_at = ?, handover_until = ? WHERE id = ?', [message, now, now + handoverMs, rows[0].id as string]);
      return { ...toRun(rows[0]), queuedAt: undefined, reason: undefined, message, updatedAt: now, handoverUntil: now + handoverMs };
    });
  }

  async markLaunched(id: string, at = Date.now()): Promise<boolean> {
    return (await this.db.execute('UPDATE runs SET launched_at = ?, handover_until = NULL WHERE id = ? AND launched_at IS NULL', [at, id])) === 1;
  }

  async markLogsArchived(id: string, at = Date.now()): Promise<void> {
    await this.db.execute('UPDATE runs SET logs_archived_at = ? WHERE id = ? AND logs_archived_at IS NULL', [at, id]);
  }

  async runsWithLogsToArchive(limit = 500): Promise<RunRecord[]> {
    const rows = await this.db.query('SELECT * FROM runs WHERE logs_archived_at IS NULL AND finished_at IS NOT NULL AND launched_at IS NOT NULL ORDER BY finished_at LIMIT ?', [limit]);
    return rows.map(toRun);
  }

  async takeOverHandover(id: string, handoverMs: number, now = Date.now()): Promise<RunRecord | undefined> {
    // One conditional update: of several masters taking over at once, one changes the row (PostgreSQL re-checks
    // the condition on the row it waited for; SQLite's writes are serial).
    const changed = await this.db.execute(
      `UPDATE runs SET handover_until = ? WHERE id = ? AND launched_at IS NULL AND queued_at IS NULL AND state = 'PENDING' AND (handover_until IS NULL OR handover_until <= ?)`,
      [now + handoverMs, id, now],
    );
    return changed === 1 ? this.getRun(id) : undefined;
  }

  async queuePosition(id: string): Promise<number | undefined> {
    const rows = await this.db.query('SELECT namespace, queued_at FROM runs WHERE id = ?', [id]);
    if (!rows[0] || rows[0].queued_at === null || rows[0].queued_at === undefined) return undefined;
    const at = Number(rows[0].queued_at);
    const ahead = await this.db.query('SELECT COUNT(*) AS n FROM runs WHERE namespace = ? AND queued_at IS NOT NULL AND (queued_at < ? OR (queued_at = ? AND id < ?))', [rows[0].namespace as string, at, at, id]);
    return Number(ahead[0].n) + 1;
  }

  async queuedNamespaces(): Promise<string[]> {
    return (await this.db.query('SELECT DISTINCT namespace FROM runs WHERE queued_at IS NOT NULL')).map((r) => r.namespace as string);
  }

  countLive(namespace: string): Promise<number> {
    return this.countLiveIn(this.db, namespace);
  }

  async countByState(filter: { namespace?: string; app?: string } = {}): Promise<Partial<Record<RunState, number>>> {
    const where = new Conditions().equals('namespace', filter.namespace).equals('app', filter.app);
    const rows = await this.db.query(`SELECT state, COUNT(*) AS n FROM runs${where.sql} GROUP BY state`, where.params);
    return Object.fromEntries(rows.map((r) => [r.state as RunState, Number(r.n)]));
  }

  async latestEventId(): Promise<number> {
    const rows = await this.db.query('SELECT MAX(id) AS id FROM run_events');
    return Number(rows[0]?.id ?? 0);
  }

  async events(after: number, options: { runId?: string; namespace?: string; limit?: number } = {}): Promise<RunEvent[]> {
    const where = new Conditions().add('id > ?', after).equals('run_id', options.runId || undefined).equals('namespace', options.namespace || undefined);
    const rows = await this.db.query(`SELECT * FROM run_events${where.sql} ORDER BY id LIMIT ?`, [...where.params, Math.min(options.limit ?? 500, 5000)]);
    return rows.map(toEvent);
  }

  // -- audit

  async addAudit(record: Omit<AuditRecord, 'id' | 'at'> & { at?: number }): Promise<void> {
    const { sql, params } = insertStatement('audit', [
      { at: record.at ?? Date.now(), actor: record.actor, namespace: record.namespace ?? null, action: record.action, target: record.target ?? null, outcome: record.outcome, detail: record.detail ?? null },
    ]);
    await this.db.execute(sql, params);
  }

  async listAudit(options: { namespace?: string; limit?: number } = {}): Promise<AuditRecord[]> {
    const where = new Conditions().equals('namespace', options.namespace);
    const rows = await this.db.query(`SELECT * FROM audit${where.sql} ORDER BY id DESC LIMIT ?`, [...where.params, Math.min(options.limit ?? 100, MAX_PAGE)]);
    return rows.map(toAudit);
  }

  // -- tokens

  async addToken(token: { id: string; name: string; hash: string; roles: Record<string, Role> }): Promise<TokenRecord> {
    const createdAt = Date.now();
    await this.db.execute('INSERT INTO tokens (id, name, hash, roles, created_at) VALUES (?, ?, ?, ?, ?)', [token.id, token.name, token.hash, JSON.stringify(token.roles), createdAt]);
    return { id: token.id, name: token.name, roles: token.roles, createdAt };
  }

  async tokenByHash(hash: string): Promise<TokenRecord | undefined> {
    const rows = await this.db.query('SELECT * FROM tokens WHERE hash = ? AND revoked_at IS NULL', [hash]);
    return rows[0] ? toToken(rows[0]) : undefined;
  }

  async listTokens(): Promise<TokenRecord[]> {
    return (await this.db.query('SELECT * FROM tokens ORDER BY created_at, id')).map(toToken);
  }

  async revokeToken(id: string): Promise<boolean> {
    return (await this.db.execute('UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL', [Date.now(), id])) > 0;
  }

  // -- logs

  async appendLogs(runId: string, runnable: string, instance: string, lines: Array<{ line: string; stream?: 'stdout' | 'stderr'; at?: number }>): Promise<number> {
    if (lines.length === 0) return 0;
    const source = `${runnable}/${instance}`;
    return this.db.transaction(async (q) => {
      await this.db.lock(q, `weft:logs:${runId}`);
      const last = await q.query('SELECT MAX(seq) AS s FROM run_logs WHERE run_id = ?', [runId]);
      let seq = Number(last[0]?.s ?? 0);
      // Multi-row inserts in chunks keep 10,000 lines a few statements.
      const rows = lines.map((l) => ({ run_id: runId, seq: ++seq, runnable, instance, stream: l.stream ?? null, at: l.at ?? Date.now(), line: l.line }));
      await insertRows(q, 'run_logs', rows, 200);
      const updated = await q.execute('UPDATE run_log_sources SET lines = lines + ? WHERE run_id = ? AND source = ?', [lines.length, runId, source]);
      if (updated === 0) await q.execute('INSERT INTO run_log_sources (run_id, source, lines) VALUES (?, ?, ?)', [runId, source, lines.length]);
      return seq;
    });
  }

  async archivedLineCount(runId: string, runnable: string, instance: string): Promise<number> {
    const rows = await this.db.query('SELECT lines FROM run_log_sources WHERE run_id = ? AND source = ?', [runId, `${runnable}/${instance}`]);
    return Number(rows[0]?.lines ?? 0);
  }

  async readLogs(runId: string, options: { after?: number; before?: number; limit?: number } = {}): Promise<LogRecord[]> {
    const limit = Math.min(options.limit ?? 1000, 10_000);
    const rows =
      options.before !== undefined
        ? // The newest `limit` lines before the cursor (paging back from the end), returned oldest first.
          (await this.db.query('SELECT * FROM run_logs WHERE run_id = ? AND seq > ? AND seq < ? ORDER BY seq DESC LIMIT ?', [runId, options.after ?? 0, options.before, limit])).reverse()
        : await this.db.query('SELECT * FROM run_logs WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?', [runId, options.after ?? 0, limit]);
    return rows.map(toLog);
  }
}
