// The small SQL driver interface the store is written against: `?` placeholders
// everywhere (PostgreSQL's driver rewrites them to $n), rows as plain objects.
import type { Dialect } from './migrations.js';

export type Row = Record<string, unknown>;
export type Param = string | number | null;

export interface Querier {
  query(sql: string, params?: Param[]): Promise<Row[]>;
  /** Runs a statement; returns the number of changed rows. */
  execute(sql: string, params?: Param[]): Promise<number>;
}

export interface SqlDriver extends Querier {
  readonly dialect: Dialect;
  /** Runs fn in one transaction (serialisable against other transactions that take the same locks). */
  transaction<T>(fn: (q: Querier) => Promise<T>): Promise<T>;
  /** Takes a transaction-scoped lock named by key (PostgreSQL advisory lock; SQLite's writes are serial already). */
  lock(q: Querier, key: string): Promise<void>;
  close(): Promise<void>;
}
