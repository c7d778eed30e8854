// SQLite through better-sqlite3 (synchronous): every operation is queued on one
// promise chain, so a transaction's statements never interleave with another's.
import { mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { Param, Querier, Row, SqlDriver } from './driver.js';

/** Default store file: $XDG_STATE_HOME/weft/master/master.db (or ~/.local/state/...). */
export function defaultSqliteFile(): string {
  const base = process.env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state');
  return path.join(base, 'weft', 'master', 'master.db');
}

export class SqliteDriver implements SqlDriver {
  readonly dialect = 'sqlite' as const;
  private readonly db: Database.Database;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly statements = new Map<string, Database.Statement>();

  constructor(readonly file: string) {
    if (file !== ':memory:') mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('foreign_keys = ON');
  }

  private prepare(sql: string): Database.Statement {
    let stmt = this.statements.get(sql);
    if (!stmt) {
      stmt = this.db.prepare(sql);
      this.statements.set(sql, stmt);
    }
    return stmt;
  }

  private readonly direct: Querier = {
    query: async (sql, params = []) => this.prepare(sql).all(...params) as Row[],
    execute: async (sql, params = []) => {
      const stmt = this.prepare(sql);
      if (stmt.reader) return stmt.all(...params).length;
      return stmt.run(...params).changes;
    },
  };

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  query(sql: string, params?: Param[]): Promise<Row[]> {
    return this.serial(() => this.direct.query(sql, params));
  }
  execute(sql: string, params?: Param[]): Promise<number> {
    return this.serial(() => this.direct.execute(sql, params));
  }

  transaction<T>(fn: (q: Querier) => Promise<T>): Promise<T> {
    return this.serial(async () => {
      this.db.exec('BEGIN IMMEDIATE');
      try {
        const result = await fn(this.direct);
        this.db.exec('COMMIT');
        return result;
      } catch (error) {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
        throw error;
      }
    });
  }

  async lock(): Promise<void> {
    // BEGIN IMMEDIATE already holds the database's write lock.
  }

  async close(): Promise<void> {
    await this.queue;
    this.db.close();
  }
}
