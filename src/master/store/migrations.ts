// Schema migrations, in order. Each is applied once, in a transaction, and
// recorded in schema_migrations. `{{id}}` and `{{bigint}}` differ per dialect.
export type Dialect = 'sqlite' | 'postgres';

export interface Migration {
  version: number;
  description: string;
  statements: string[];
}

export const MIGRATIONS: Migration[] = [
  {
    version: 1,
    description: 'apps, runs, run events, audit, tokens, logs',
    statements: [
      `CREATE TABLE apps (
        namespace TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
        spec TEXT NOT NULL, created_at {{bigint}} NOT NULL, created_by TEXT NOT NULL,
        PRIMARY KEY (namespace, name, version))`,
      `CREATE TABLE runs (
        id TEXT PRIMARY KEY, namespace TEXT NOT NULL, app TEXT NOT NULL, app_version INTEGER,
        state TEXT NOT NULL, reason TEXT, message TEXT, spec TEXT NOT NULL, runtime TEXT NOT NULL,
        created_at {{bigint}} NOT NULL, updated_at {{bigint}} NOT NULL, finished_at {{bigint}},
        created_by TEXT NOT NULL, idempotency_key TEXT,
        stop_requested_at {{bigint}}, stop_grace_ms {{bigint}})`,
      `CREATE UNIQUE INDEX runs_idempotency ON runs (namespace, idempotency_key)`,
      `CREATE INDEX runs_by_namespace ON runs (namespace, created_at DESC, id DESC)`,
      `CREATE INDEX runs_by_app ON runs (namespace, app, created_at DESC, id DESC)`,
      `CREATE INDEX runs_by_state ON runs (state)`,
      `CREATE TABLE run_events (
        id {{id}}, run_id TEXT NOT NULL, namespace TEXT NOT NULL, from_state TEXT, to_state TEXT NOT NULL,
        at {{bigint}} NOT NULL, reason TEXT, message TEXT)`,
      `CREATE INDEX run_events_by_run ON run_events (run_id, id)`,
      `CREATE TABLE audit (
        id {{id}}, at {{bigint}} NOT NULL, actor TEXT NOT NULL, namespace TEXT, action TEXT NOT NULL,
        target TEXT, outcome TEXT NOT NULL, detail TEXT)`,
      `CREATE TABLE tokens (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, roles TEXT NOT NULL,
        created_at {{bigint}} NOT NULL, revoked_at {{bigint}})`,
      `CREATE TABLE run_logs (
        run_id TEXT NOT NULL, seq {{bigint}} NOT NULL, runnable TEXT NOT NULL, instance TEXT NOT NULL,
        stream TEXT, at {{bigint}} NOT NULL, line TEXT NOT NULL, PRIMARY KEY (run_id, seq))`,
      `CREATE TABLE run_log_sources (
        run_id TEXT NOT NULL, source TEXT NOT NULL, lines {{bigint}} NOT NULL, PRIMARY KEY (run_id, source))`,
    ],
  },
  {
    version: 2,
    description: 'admission queue (queued_at set while waiting); indexes for state filters',
    statements: [
      `ALTER TABLE runs ADD COLUMN queued_at {{bigint}}`,
      `CREATE INDEX runs_queued ON runs (namespace, queued_at, id)`,
      // A state filter that matches few runs would otherwise walk every run of the namespace (or app).
      `CREATE INDEX runs_by_state_time ON runs (namespace, state, created_at DESC, id DESC)`,
      `CREATE INDEX runs_by_app_state_time ON runs (namespace, app, state, created_at DESC, id DESC)`,
    ],
  },
  {
    version: 3,
    description: 'crash-safe hand-over and log archive: launched_at (the runtime accepted the run), handover_until (who hands it over may until then), logs_archived_at (the archive of an ended run is complete)',
    statements: [
      `ALTER TABLE runs ADD COLUMN launched_at {{bigint}}`,
      `ALTER TABLE runs ADD COLUMN handover_until {{bigint}}`,
      `ALTER TABLE runs ADD COLUMN logs_archived_at {{bigint}}`,
      // Runs stored before this version were handed over at once (or lost with their master); ended ones are archived.
      `UPDATE runs SET launched_at = created_at WHERE queued_at IS NULL AND state <> 'REJECTED'`,
      `UPDATE runs SET logs_archived_at = finished_at WHERE finished_at IS NOT NULL`,
      // The few ended runs whose archive a master did not finish (it died): found without reading every run.
      `CREATE INDEX runs_logs_pending ON runs (finished_at) WHERE logs_archived_at IS NULL AND finished_at IS NOT NULL`,
    ],
  },
];

export function renderStatement(sql: string, dialect: Dialect): string {
  return sql
    .replaceAll('{{id}}', dialect === 'sqlite' ? 'INTEGER PRIMARY KEY AUTOINCREMENT' : 'BIGSERIAL PRIMARY KEY')
    .replaceAll('{{bigint}}', dialect === 'sqlite' ? 'INTEGER' : 'BIGINT');
}
