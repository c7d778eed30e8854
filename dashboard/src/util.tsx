// Small shared pieces: links, times and durations, the state badge.
import { TERMINAL, type RunState } from './api';

export function href(ns: string, run?: string, query?: Record<string, string | undefined>): string {
  const q = new URLSearchParams(Object.entries(query ?? {}).filter((e): e is [string, string] => !!e[1]));
  const qs = q.toString();
  return `#/ns/${encodeURIComponent(ns)}/runs${run ? `/${encodeURIComponent(run)}` : ''}${qs ? `?${qs}` : ''}`;
}

const pad = (n: number) => String(n).padStart(2, '0');

/** Local date and time, to the second (the master's times are UTC ISO strings). */
export function time(iso: string | undefined): string {
  if (!iso) return '';
  const d = new Date(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function duration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${(ms / 1000).toFixed(1)} s`;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h} h ${pad(m)} m` : `${m} m ${pad(s % 60)} s`;
}

/** How long a run ran: to its end, or to now while it is live. */
export function runDuration(run: { createdAt: string; finishedAt?: string; state: string }, now: number): string {
  const end = run.finishedAt ? Date.parse(run.finishedAt) : TERMINAL.has(run.state) ? NaN : now;
  return duration(end - Date.parse(run.createdAt));
}

export function StateBadge(props: { state: RunState | string }) {
  return (
    <span class={`state state-${props.state.toLowerCase()}`} data-state={props.state}>
      {props.state}
    </span>
  );
}
