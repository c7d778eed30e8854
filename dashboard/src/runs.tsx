// The runs of a namespace: filtered and paged by the master (continue tokens,
// 50 a page; never every run), counts by state, and rows that change state
// live from the watch stream.
import { useEffect, useRef, useState } from 'preact/hooks';
import { nsPath, request, RUN_STATES, TERMINAL, watch, type Run, type RunEvent } from './api';
import { href, runDuration, StateBadge, time } from './util';

export const PAGE_SIZE = 50;

interface Page {
  items: Run[];
  continue?: string;
}

export function RunsPage(props: { ns: string; query: URLSearchParams }) {
  const app = props.query.get('app') ?? '';
  const state = props.query.get('state') ?? '';
  const [page, setPage] = useState<Page>();
  const [error, setError] = useState<string>();
  const [counts, setCounts] = useState<Record<string, number>>();
  const [live, setLive] = useState<{ connected: boolean; message?: string }>({ connected: false });
  const [now, setNow] = useState(Date.now());
  // The continue tokens of the pages before the shown one (the first page has none).
  const [trail, setTrail] = useState<Array<string | undefined>>([undefined]);
  const current = useRef<{ token?: string; items: Run[] }>({ items: [] });
  const timers = useRef<{ reload?: number; counts?: number }>({});
  const seq = useRef(0);

  const listQuery = (token?: string) => {
    const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (app) q.set('app', app);
    if (state) q.set('state', state);
    if (token) q.set('continue', token);
    return `${nsPath(props.ns)}/runs?${q}`;
  };
  const load = async (token?: string) => {
    // Only the newest request may paint: an older answer arriving late (a reload started by the
    // watch while the user paged) must not replace the page the user asked for.
    const mine = ++seq.current;
    current.current = { token, items: current.current.items };
    try {
      const p = await request<Page>('GET', listQuery(token));
      if (mine !== seq.current) return;
      current.current = { token, items: p.items };
      setPage(p);
      setError(undefined);
    } catch (e) {
      setError((e as Error).message);
    }
  };
  const loadCounts = async () => {
    try {
      const c = await request<{ counts: Record<string, number> }>('GET', `${nsPath(props.ns)}/run-counts${app ? `?app=${encodeURIComponent(app)}` : ''}`);
      setCounts(c.counts);
    } catch (e) {
      setError((e as Error).message);
    }
  };
  const later = (key: 'reload' | 'counts', fn: () => void, ms: number) => {
    if (timers.current[key] !== undefined) return;
    timers.current[key] = window.setTimeout(() => {
      timers.current[key] = undefined;
      fn();
    }, ms);
  };

  const apply = (e: RunEvent) => {
    later('counts', () => void loadCounts(), 300);
    const items = current.current.items;
    const i = items.findIndex((r) => r.id === e.runId);
    if (i < 0) {
      // A run this page does not show: a new one belongs on the first page.
      if (current.current.token === undefined && (!state || state.split(',').includes(e.to)) && !e.from) later('reload', () => void load(undefined), 200);
      return;
    }
    const row = items[i];
    // The list may already be newer than an event that was in flight while it loaded.
    if (Date.parse(e.at) < Date.parse(row.updatedAt)) return;
    const next = [...items];
    next[i] = { ...row, state: e.to, reason: e.reason, message: e.message, updatedAt: e.at, finishedAt: TERMINAL.has(e.to) ? e.at : row.finishedAt };
    current.current = { ...current.current, items: next };
    setPage((p) => (p ? { ...p, items: next } : p));
  };

  useEffect(() => {
    // Read at once for a quick first render, and again once the watch is connected (below), so a
    // change between this read and the watch's start is not missed.
    void load(undefined);
    void loadCounts();
    const stop = watch(props.ns, undefined, {
      // At every (re)connection the shown page and counts are read again, then events apply on top.
      onOpen: () => {
        void load(current.current.token);
        void loadCounts();
      },
      onEvent: apply,
      onStatus: (connected, message) => setLive({ connected, message }),
    });
    const tick = window.setInterval(() => setNow(Date.now()), 1000);
    return () => {
      stop();
      clearInterval(tick);
      clearTimeout(timers.current.reload);
      clearTimeout(timers.current.counts);
    };
  }, []);

  const go = (token: string | undefined, nextTrail: Array<string | undefined>) => {
    setTrail(nextTrail);
    void load(token);
  };
  const total = counts ? Object.values(counts).reduce((a, b) => a + b, 0) : undefined;
  const matching = counts && state ? state.split(',').reduce((a, s) => a + (counts[s] ?? 0), 0) : total;
  const first = (trail.length - 1) * PAGE_SIZE;

  return (
    <main>
      <h1>
        Runs <span class="muted">in {props.ns}</span>
      </h1>
      <nav class="counts" aria-label="Runs by state">
        <a href={href(props.ns, undefined, { app })} aria-current={!state ? 'true' : undefined} data-count-state="ALL">
          All <b>{total ?? '…'}</b>
        </a>
        {RUN_STATES.filter((s) => counts?.[s]).map((s) => (
          <a href={href(props.ns, undefined, { app, state: s })} aria-current={state === s ? 'true' : undefined} data-count-state={s}>
            <StateBadge state={s} /> <b>{counts![s]}</b>
          </a>
        ))}
      </nav>
      <form
        class="filters"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          const f = new FormData(e.target as HTMLFormElement);
          location.hash = href(props.ns, undefined, { app: String(f.get('app') ?? '').trim(), state: String(f.get('state') ?? '') });
        }}
      >
        <label>
          App <input name="app" defaultValue={app} size={16} pattern="[a-z0-9]([-a-z0-9]*[a-z0-9])?" title="an app name (lowercase DNS label)" />
        </label>
        <label>
          State{' '}
          <select name="state" defaultValue={state}>
            <option value="">any</option>
            <option value="PENDING,STARTING,RUNNING,SUSPENDED,STOPPING">live</option>
            {RUN_STATES.map((s) => (
              <option value={s}>{s}</option>
            ))}
          </select>
        </label>
        <button type="submit">Filter</button>
        <span class={`live ${live.connected ? 'on' : 'off'}`} role="status" title={live.message}>
          {live.connected ? 'live' : live.message ? 'reconnecting…' : 'connecting…'}
        </span>
      </form>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div class="scroll">
        <table class="runs" aria-busy={!page}>
          <thead>
            <tr>
              <th scope="col">Run</th>
              <th scope="col">App</th>
              <th scope="col">State</th>
              <th scope="col">Started</th>
              <th scope="col">Duration</th>
              <th scope="col">Runtime</th>
              <th scope="col">Namespace</th>
            </tr>
          </thead>
          <tbody>
            {page?.items.map((r) => (
              <tr data-run-id={r.id} key={r.id}>
                <td>
                  <a href={href(props.ns, r.id)}>{r.id}</a>
                </td>
                <td>{r.app}</td>
                <td title={[r.reason, r.message].filter(Boolean).join(': ')}>
                  <StateBadge state={r.state} />
                  {r.reason && TERMINAL.has(r.state) && r.state !== 'COMPLETED' ? <span class="reason"> {r.reason}</span> : null}
                </td>
                <td>
                  <time dateTime={r.createdAt}>{time(r.createdAt)}</time>
                </td>
                <td>{runDuration(r, now)}</td>
                <td>{r.runtime}</td>
                <td>{r.namespace}</td>
              </tr>
            ))}
            {page && page.items.length === 0 && (
              <tr>
                <td colSpan={7} class="muted">
                  No runs{app || state ? ' match the filter' : ` in ${props.ns} yet`}.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      <nav class="pager" aria-label="Pages">
        <button type="button" disabled={trail.length <= 1} onClick={() => go(trail[trail.length - 2], trail.slice(0, -1))}>
          ← Newer
        </button>
        <span class="muted" data-testid="page-range">
          {page && page.items.length ? `${first + 1}–${first + page.items.length}` : '0'}
          {matching !== undefined ? ` of ${matching}` : ''}
        </span>
        <button type="button" disabled={!page?.continue} onClick={() => go(page!.continue, [...trail, page!.continue])}>
          Older →
        </button>
      </nav>
    </main>
  );
}
