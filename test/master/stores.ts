// Store targets for the master tests: a SQLite file in a temp dir, and a fresh
// database on the PostgreSQL that scripts/test.d/45-postgres-up.sh started.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

export interface StoreTarget {
  kind: 'sqlite' | 'postgres';
  /** A --store value for a fresh, empty store. */
  location: string;
  drop(): Promise<void>;
}

export function postgresUrl(): string {
  const url = process.env.WEFT_TEST_POSTGRES_URL;
  if (!url) {
    throw new Error(
      'WEFT_TEST_POSTGRES_URL is not set: the PostgreSQL store tests need the server that scripts/test.d/45-postgres-up.sh starts (scripts/test runs it; by hand: WEFT_TEST_ENV=$(mktemp) bash scripts/test.d/45-postgres-up.sh and source that file)',
    );
  }
  return url;
}

export async function sqliteTarget(): Promise<StoreTarget> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-master-store-'));
  return { kind: 'sqlite', location: `sqlite:${path.join(dir, 'master.db')}`, drop: () => fs.rm(dir, { recursive: true, force: true }) };
}

export async function postgresTarget(): Promise<StoreTarget> {
  const base = postgresUrl();
  const name = `weft_test_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(base);
  url.pathname = `/${name}`;
  return {
    kind: 'postgres',
    location: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: base });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

export const storeTargets: Array<{ kind: 'sqlite' | 'postgres'; make: () => Promise<StoreTarget> }> = [
  { kind: 'sqlite', make: sqliteTarget },
  { kind: 'postgres', make: postgresTarget },
];
