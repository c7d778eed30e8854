// The master's API as the page uses it: same origin, a bearer token from the
// sign-in form, JSON errors turned into exceptions, and streams (watch, followed
// logs) read with fetch because EventSource cannot send an Authorization header.

export type RunState = 'PENDING' | 'STARTING' | 'RUNNING' | 'SUSPENDED' | 'STOPPING' | 'COMPLETED' | 'FAILED' | 'KILLED' | 'REJECTED';
export const RUN_STATES: RunState[] = ['PENDING', 'STARTING', 'RUNNING', 'SUSPENDED', 'STOPPING', 'COMPLETED', 'FAILED', 'KILLED', 'REJECTED'];
export const TERMINAL: ReadonlySet<string> = new Set(['COMPLETED', 'FAILED', 'KILLED', 'REJECTED']);
export type Role = 'viewer' | 'operator' | 'admin';

export interface Run {
  id: string;
  namespace: string;
  app: string;
  appVersion?: number;
  state: RunState;
  reason?: string;
  message?: string;
  runtime: string;
  createdAt: string;
  updatedAt: string;
  finishedAt?: string;
  createdBy: string;
}

export interface RunEvent {
  id: number;
  runId: string;
  namespace: string;
  from?: RunState;
  to: RunState;
  at: string;
  reason?: string;
  message?: string;
}

export interface Instance {
  id: string;
  state: string;
  name?: string;
  host?: string;
  restarts?: number;
  exitCode?: number;
  reason?: string;
  message?: string;
  startedAt?: string;
}

export interface Runnable {
  name: string;
  kind: string;
  desired: number;
  running: number;
  instances: Instance[];
}

export interface RunDetail extends Run {
  spec: Record<string, unknown>;
  history: RunEvent[];
  status: { state: RunState; message?: string; reason?: string; exitCode?: number; runnables: Runnable[] };
}

export interface ResourceReport {
  runId: string;
  instances: Array<{ runnable: string; instance: string; host?: string; state: string; cpu: string; memory: string; usage?: { cpuMillicores?: number; memoryBytes?: number } }>;
  usageUnavailable?: string;
}

export interface LogLine {
  seq: number;
  runnable: string;
  instance: string;
  stream?: 'stdout' | 'stderr';
  at: string;
  line: string;
}

export interface Whoami {
  id: string;
  name: string;
  roles: Record<string, Role>;
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const KEY = 'weft-token';
let token: string | undefined = sessionStorage.getItem(KEY) ?? undefined;
let unauthorized: (message: string) => void = () => undefined;

export const session = {
  get token() {
    return token;
  },
  set(value: string | undefined) {
    token = value;
    // sessionStorage: the token lives as long as the tab, not on disk for every later visitor.
    if (value) sessionStorage.setItem(KEY, value);
    else sessionStorage.removeItem(KEY);
  },
  /** Called when the master answers 401: the page goes back to the sign-in form. */
  onUnauthorized(fn: (message: string) => void) {
    unauthorized = fn;
  },
};

function headers(extra: Record<string, string> = {}): Record<string, string> {
  return token ? { authorization: `Bearer ${token}`, ...extra } : extra;
}

async function fail(res: Response): Promise<never> {
  const text = await res.text().catch(() => '');
  let error: { code?: string; message?: string } | undefined;
  try {
    error = JSON.parse(text).error;
  } catch {
    error = undefined;
  }
  const e = new HttpError(res.status, error?.code ?? `http_${res.status}`, error?.message ?? `${res.status} ${res.statusText}`);
  if (res.status === 401) unauthorized(e.message);
  throw e;
}

export async function request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const res = await fetch(path, {
    method,
    headers: headers(body === undefined ? {} : { 'content-type': 'application/json' }),
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  if (!res.ok) return fail(res);
  return (await res.json()) as T;
}

export const nsPath = (ns: string) => `/api/v1/namespaces/${encodeURIComponent(ns)}`;

/** Reads a response body line by line. */
async function* lines(res: Response): AsyncGenerator<string> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n')) >= 0) {
      yield buffer.slice(0, end).replace(/\r$/, '');
      buffer = buffer.slice(end + 1);
    }
  }
  if (buffer) yield buffer;
}

/** Log lines as JSON lines: a page (after/before) or, with follow, a stream until the run ended. */
export async function readLogs(ns: string, run: string, query: Record<string, string | number | boolean>, onLines: (lines: LogLine[]) => void, signal?: AbortSignal): Promise<void> {
  const q = new URLSearchParams({ format: 'json', ...Object.fromEntries(Object.entries(query).map(([k, v]) => [k, String(v)])) });
  const res = await fetch(`${nsPath(ns)}/runs/${encodeURIComponent(run)}/logs?${q}`, { headers: headers(), signal });
  if (!res.ok) return fail(res);
  let batch: LogLine[] = [];
  let flushAt = 0;
  for await (const line of lines(res)) {
    if (!line) continue;
    batch.push(JSON.parse(line) as LogLine);
    // Hand lines over in batches so a burst of thousands renders once, not per line.
    if (batch.length >= 500 || Date.now() - flushAt > 100) {
      onLines(batch);
      batch = [];
      flushAt = Date.now();
    }
  }
  if (batch.length) onLines(batch);
}

export interface WatchHandlers {
  /** Called at every (re)connection: reload what the page shows, then apply events. */
  onOpen?: () => void;
  onEvent: (event: RunEvent) => void;
  onStatus?: (connected: boolean, error?: string) => void;
}

/** Follows the namespace's watch stream (server-sent events), reconnecting with Last-Event-ID; returns a stop function. */
export function watch(ns: string, run: string | undefined, handlers: WatchHandlers): () => void {
  let closed = false;
  let abort: AbortController | undefined;
  let lastId: string | undefined;
  void (async () => {
    let delay = 500;
    while (!closed) {
      abort = new AbortController();
      try {
        const res = await fetch(`${nsPath(ns)}/watch${run ? `?run=${encodeURIComponent(run)}` : ''}`, {
          headers: headers(lastId ? { 'last-event-id': lastId } : {}),
          signal: abort.signal,
        });
        if (!res.ok) await fail(res);
        delay = 500;
        handlers.onStatus?.(true);
        handlers.onOpen?.();
        let id: string | undefined;
        let data = '';
        for await (const line of lines(res)) {
          if (line === '') {
            if (data) {
              if (id) lastId = id;
              handlers.onEvent(JSON.parse(data) as RunEvent);
            }
            id = undefined;
            data = '';
          } else if (line.startsWith('id:')) id = line.slice(3).trim();
          else if (line.startsWith('data:')) data += line.slice(5).trim();
        }
        if (!closed) handlers.onStatus?.(false, 'the watch stream ended; reconnecting');
      } catch (error) {
        if (closed) return;
        if (error instanceof HttpError && (error.status === 401 || error.status === 403)) {
          handlers.onStatus?.(false, error.message);
          return;
        }
        handlers.onStatus?.(false, `watch: ${(error as Error).message}; reconnecting`);
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10_000);
    }
  })();
  return () => {
    closed = true;
    abort?.abort();
  };
}

const RANK: Record<Role, number> = { viewer: 1, operator: 2, admin: 3 };

/** The token's role in a namespace (its entry there, else its "*" entry), as the master decides it. */
export function roleIn(me: Whoami, ns: string): Role | undefined {
  return me.roles[ns] ?? me.roles['*'];
}

export function may(me: Whoami, ns: string, needed: Role): boolean {
  const role = roleIn(me, ns);
  return role !== undefined && RANK[role] >= RANK[needed];
}
