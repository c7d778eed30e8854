import { openStore } from '/work/wt-9/dist/src/master/index.js';
import { sqliteTarget, postgresTarget } from '/work/wt-9/dist/test/master/stores.js';
import Database from 'better-sqlite3';
import pg from 'pg';
const STATES = ['COMPLETED','COMPLETED','COMPLETED','COMPLETED','COMPLETED','COMPLETED','FAILED','FAILED','KILLED','COMPLETED'];
const N = 100000, base = Date.UTC(2026,0,1);
async function fill(store) {
  for (let s = 0; s < N; s += 1000) {
    const batch = [];
    for (let i = s; i < s + 1000; i++) batch.push({ id: `bench-${String(i).padStart(7,'0')}`, namespace: 'bench', app: `app-${i%20}`, spec: { name: 'x', args: [String(i)] }, runtime: 'local', createdBy: 'b', state: STATES[i%10], createdAt: base + i*1000 });
    await store.importRuns(batch);
  }
}
const mid = Math.floor(N/2);
const c = [base + mid*1000, `bench-${String(mid).padStart(7,'0')}`];
const queries = {
  plain_or: [`SELECT * FROM runs WHERE namespace = ? AND (created_at < ? OR (created_at = ? AND id < ?)) ORDER BY created_at DESC, id DESC LIMIT 51`, ['bench', c[0], c[0], c[1]]],
  plain_row: [`SELECT * FROM runs WHERE namespace = ? AND (created_at, id) < (?, ?) ORDER BY created_at DESC, id DESC LIMIT 51`, ['bench', c[0], c[1]]],
  plain_first: [`SELECT * FROM runs WHERE namespace = ? ORDER BY created_at DESC, id DESC LIMIT 51`, ['bench']],
  filt_or: [`SELECT * FROM runs WHERE namespace = ? AND app = ? AND state IN (?) AND (created_at < ? OR (created_at = ? AND id < ?)) ORDER BY created_at DESC, id DESC LIMIT 51`, ['bench', 'app-6', 'FAILED', c[0], c[0], c[1]]],
  filt_row: [`SELECT * FROM runs WHERE namespace = ? AND app = ? AND state IN (?) AND (created_at, id) < (?, ?) ORDER BY created_at DESC, id DESC LIMIT 51`, ['bench', 'app-6', 'FAILED', c[0], c[1]]],
  filt_first: [`SELECT * FROM runs WHERE namespace = ? AND app = ? AND state IN (?) ORDER BY created_at DESC, id DESC LIMIT 51`, ['bench', 'app-6', 'FAILED']],
  st2_row: [`SELECT * FROM runs WHERE namespace = ? AND state IN (?, ?) AND (created_at, id) < (?, ?) ORDER BY created_at DESC, id DESC LIMIT 51`, ['bench', 'FAILED', 'KILLED', c[0], c[1]]],
  st2_first: [`SELECT * FROM runs WHERE namespace = ? AND state IN (?, ?) ORDER BY created_at DESC, id DESC LIMIT 51`, ['bench', 'FAILED', 'KILLED']],
};
const time = async (fn, n = 50) => { const xs = []; for (let i = 0; i < n; i++) { const t = performance.now(); await fn(); xs.push(performance.now() - t); } xs.sort((a,b)=>a-b); return xs[Math.floor(n/2)].toFixed(2); };
for (const kind of process.argv.slice(2)) {
  const target = kind === 'sqlite' ? await sqliteTarget() : await postgresTarget();
  const store = await openStore(target.location);
  await fill(store);
  await store.close();
  if (kind === 'sqlite') {
    const db = new Database(target.location.slice(7));
    if (process.env.ANALYZE) db.exec('ANALYZE');
    for (const [name, [sql, params]] of Object.entries(queries)) {
      const plan = db.prepare('EXPLAIN QUERY PLAN ' + sql).all(...params).map(r => r.detail).join(' | ');
      const st = db.prepare(sql);
      console.log(kind, name, await time(() => st.all(...params)), 'ms', plan);
    }
    db.close();
  } else {
    const client = new pg.Client({ connectionString: target.location }); await client.connect();
    if (process.env.ANALYZE) await client.query('ANALYZE');
    const num = (s) => { let n = 0; return s.replace(/\?/g, () => `$${++n}`); };
    for (const [name, [sql, params]] of Object.entries(queries)) {
      const plan = (await client.query('EXPLAIN ' + num(sql), params)).rows.map(r => r['QUERY PLAN'].trim()).join(' | ');
      console.log(kind, name, await time(() => client.query(num(sql), params)), 'ms', plan.slice(0, 400));
    }
    await client.end();
  }
  await target.drop();
}
