// PostgreSQL through pg: a pool; transactions on one client; `?` rewritten to $n;
// BIGINT columns read back as numbers (every value weft stores fits in 2^53).
import pg from 'pg';
import type { Param, Querier, Row, SqlDriver } from './driver.js';

function numbered(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === 20 && format !== 'binary') return (value: string) => Number(value); // int8
    return pg.types.getTypeParser(oid, format);
  },
};

function querier(client: pg.Pool | pg.PoolClient): Querier {
  return {
    query: async (sql, params = []) => (await client.query({ text: numbered(sql), values: params, types })).rows as Row[],
    execute: async (sql, params = []) => (await client.query({ text: numbered(sql), values: params, types })).rowCount ?? 0,
  };
}

export class PostgresDriver implements SqlDriver {
  readonly dialect = 'postgres' as const;
  private readonly pool: pg.Pool;
  private readonly direct: Querier;

  constructor(url: string, poolSize = 10) {
    this.pool = new pg.Pool({ connectionString: url, max: poolSize });
    // An idle client's error (server restarted) must not crash the master; the next query reconnects.
    this.pool.on('error', () => undefined);
    this.direct = querier(this.pool);
  }

  query(sql: string, params?: Param[]): Promise<Row[]> {
    return this.direct.query(sql, params);
  }
  execute(sql: string, params?: Param[]): Promise<number> {
    return this.direct.execute(sql, params);
  }

  async transaction<T>(fn: (q: Querier) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const result = await fn(querier(client));
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  async lock(q: Querier, key: string): Promise<void> {
    await q.query('SELECT pg_advisory_xact_lock(hashtext(?))', [key]);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

/** The URL with its password replaced, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparsable URL)';
  }
}
