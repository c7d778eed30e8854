// Opens a store from a --store value: sqlite:<file>, postgres://... (or postgresql://), or the default SQLite file.
import { SqlStore } from './sql-store.js';
import { StoreError, type Store } from './types.js';

export * from './types.js';
export { defaultSqliteFile } from './sqlite.js';
export { redactUrl } from './postgres.js';
export { encodeContinue, decodeContinue } from './sql-store.js';

export async function openStore(location?: string, options: { migrate?: boolean } = {}): Promise<Store> {
  let store: Store;
  if (location === undefined || location === '' || location.startsWith('sqlite:')) {
    const { SqliteDriver, defaultSqliteFile } = await import('./sqlite.js');
    const file = location ? location.slice('sqlite:'.length) : defaultSqliteFile();
    if (!file) throw new StoreError('--store sqlite: needs a file, like sqlite:/var/lib/weft/master.db');
    store = new SqlStore(new SqliteDriver(file));
  } else if (/^postgres(ql)?:\/\//.test(location)) {
    const { PostgresDriver } = await import('./postgres.js');
    store = new SqlStore(new PostgresDriver(location));
  } else {
    throw new StoreError('--store must be sqlite:<file> or postgres://user:password@host:port/db');
  }
  if (options.migrate !== false) {
    try {
      await store.migrate();
    } catch (error) {
      await store.close().catch(() => undefined);
      throw error;
    }
  }
  return store;
}
