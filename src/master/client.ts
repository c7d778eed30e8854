// A Runtime that talks to a weft master over HTTP, so the CLI (and any code on
// the Twill-style API) works through a master with the code it already has.
import type { Endpoint, LogLine, LogOptions, ResourceReport, RunRequest, RunStatus, Runtime, StatusListener } from '../runtime/index.js';

export interface MasterClientOptions {
  /** The master's URL, e.g. http://127.0.0.1:8420. */
  url: string;
  token?: string;
  /** The master namespace runs are in (default "default"). */
  namespace?: string;
}

export class MasterClientError extends Error {
  override name = 'MasterClientError';
  constructor(message: string, readonly status?: number, readonly code?: string, readonly body?: Record<string, unknown>) {
    super(message);
  }
}

interface RunJson {
  id: string;
  app: string;
  state: RunStatus['state'];
  message?: string;
  reason?: string;
  createdAt?: string;
  finishedAt?: string;
  runtime: string;
}

/** The events of a text/event-stream body that carry an id and JSON data, as they arrive. */
export async function* serverSentEvents<T>(body: AsyncIterable<Uint8Array>): AsyncGenerator<{ id: string; data: T }> {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const id = /^id: (\d+)$/m.exec(block);
      const data = /^data: (.*)$/m.exec(block);
      if (id && data) yield { id: id[1], data: JSON.parse(data[1]) as T };
    }
  }
}

export class MasterRuntime implements Runtime {
  readonly name: 'kubernetes' | 'local' = 'local';
  private readonly base: string;
  private readonly namespace: string;
  private readonly aborts = new Set<AbortController>();

  constructor(private readonly options: MasterClientOptions) {
    let url: URL;
    try {
      url = new URL(options.url);
    } catch {
      throw new MasterClientError(`the master URL "${options.url}" is not a URL: give one like http://127.0.0.1:8420 (--master or WEFT_MASTER)`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new MasterClientError('the master URL must start with http:// or https://');
    this.base = url.toString().replace(/\/+$/, '');
    this.namespace = options.namespace ?? 'default';
  }

  private path(suffix = ''): string {
    return `/api/v1/namespaces/${encodeURIComponent(this.namespace)}/runs${suffix}`;
  }

  private async request(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = {};
    if (this.options.token) headers.authorization = `Bearer ${this.options.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(`${this.base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
    } catch (error) {
      if (signal?.aborted) throw error;
      throw new MasterClientError(`cannot reach the master at ${this.base}: ${(error as Error & { cause?: Error }).cause?.message ?? (error as Error).message}`);
    }
    if (res.status >= 400) {
      const text = await res.text();
      let parsed: { error?: { code?: string; message?: string } & Record<string, unknown> } = {};
      try {
        parsed = JSON.parse(text);
      } catch {
        // not JSON
      }
      const hint = res.status === 401 ? ' (set WEFT_TOKEN or --token)' : '';
      throw new MasterClientError(`master: ${parsed.error?.message ?? `${res.status} ${text.slice(0, 200)}`}${hint}`, res.status, parsed.error?.code, parsed.error);
    }
    return res;
  }

  private async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    return (await (await this.request(method, path, body)).json()) as T;
  }

  private fromRecord(run: RunJson): RunStatus {
    return { runId: run.id, app: run.app, runtime: run.runtime === 'kubernetes' ? 'kubernetes' : 'local', state: run.state, message: run.message, reason: run.reason, createdAt: run.createdAt, finishedAt: run.finishedAt, namespace: this.namespace, runnables: [] };
  }

  async submit(request: RunRequest): Promise<RunStatus> {
    if (request.files.length > 0) throw new MasterClientError('files cannot be sent through a master yet: put them in the image');
    try {
      const run = await this.json<RunJson>('POST', this.path(), { spec: request.spec });
      return (await this.status(run.id)) ?? this.fromRecord(run);
    } catch (error) {
      const e = error as MasterClientError;
      if (e.code === 'admission_rejected' && e.body?.run) return this.fromRecord(e.body.run as RunJson);
      throw error;
    }
  }

  async status(runId: string): Promise<RunStatus | undefined> {
    try {
      const run = await this.json<{ status: RunStatus } & RunJson>('GET', this.path(`/${encodeURIComponent(runId)}`));
      // The store is the record of truth for the state; the runtime snapshot adds the instances.
      return { ...run.status, runId: run.id, state: run.state, message: run.status.message ?? run.message, namespace: this.namespace };
    } catch (error) {
      if ((error as MasterClientError).status === 404) return undefined;
      throw error;
    }
  }

  async list(filter: { app?: string; liveOnly?: boolean } = {}): Promise<RunStatus[]> {
    const out: RunStatus[] = [];
    let token: string | undefined;
    const params = new URLSearchParams({ limit: '1000' });
    if (filter.app) params.set('app', filter.app);
    if (filter.liveOnly) params.set('state', 'PENDING,STARTING,RUNNING,SUSPENDED,STOPPING');
    do {
      if (token) params.set('continue', token);
      const page = await this.json<{ items: RunJson[]; continue?: string }>('GET', `${this.path()}?${params}`);
      out.push(...page.items.map((r) => this.fromRecord(r)));
      token = page.continue;
    } while (token);
    return out;
  }

  watch(listener: StatusListener): () => void {
    const abort = new AbortController();
    this.aborts.add(abort);
    void this.follow(listener, abort.signal).catch(() => undefined);
    return () => {
      abort.abort();
      this.aborts.delete(abort);
    };
  }

  /** Follows the namespace's server-sent events; each change is reported with the run's fresh status. */
  private async follow(listener: StatusListener, signal: AbortSignal): Promise<void> {
    let lastId: string | undefined;
    while (!signal.aborted) {
      try {
        const headers: Record<string, string> = { accept: 'text/event-stream' };
        if (this.options.token) headers.authorization = `Bearer ${this.options.token}`;
        if (lastId) headers['last-event-id'] = lastId;
        const res = await fetch(`${this.base}/api/v1/namespaces/${encodeURIComponent(this.namespace)}/watch`, { headers, signal });
        if (!res.ok || !res.body) throw new Error(`watch answered ${res.status}`);
        for await (const event of serverSentEvents<{ runId: string }>(res.body as unknown as AsyncIterable<Uint8Array>)) {
          lastId = event.id;
          const status = await this.status(event.data.runId).catch(() => undefined);
          if (status && !signal.aborted) listener(status);
        }
      } catch {
        if (signal.aborted) return;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  async stop(runId: string, options: { gracePeriodMs?: number } = {}): Promise<void> {
    await this.json('POST', this.path(`/${encodeURIComponent(runId)}/stop`), options.gracePeriodMs === undefined ? {} : { gracePeriodSeconds: options.gracePeriodMs / 1000 });
  }
  async kill(runId: string): Promise<void> {
    await this.json('POST', this.path(`/${encodeURIComponent(runId)}/kill`), {});
  }
  async scale(runId: string, runnable: string, instances: number): Promise<void> {
    await this.json('POST', this.path(`/${encodeURIComponent(runId)}/scale`), { runnable, instances });
  }
  async restart(runId: string, runnable: string, instances?: string[]): Promise<void> {
    await this.json('POST', this.path(`/${encodeURIComponent(runId)}/restart`), { runnable, instances });
  }
  async suspend(runId: string, suspended: boolean): Promise<void> {
    await this.json('POST', this.path(`/${encodeURIComponent(runId)}/${suspended ? 'suspend' : 'resume'}`), {});
  }
  async sendCommand(runId: string, command: string, options: { runnable?: string; payload?: string } = {}): Promise<void> {
    await this.json('POST', this.path(`/${encodeURIComponent(runId)}/commands`), { command, ...options });
  }
  async resourceReport(): Promise<ResourceReport> {
    throw new MasterClientError('resource reports are not served by the master yet: run without --master on the machine or cluster of the run');
  }
  async discover(): Promise<Endpoint[]> {
    throw new MasterClientError('service discovery is not served by the master yet: run without --master');
  }

  logs(runId: string, options: LogOptions = {}): AsyncIterable<LogLine> {
    return this.streamLogs(runId, options);
  }

  private async *streamLogs(runId: string, options: LogOptions): AsyncIterable<LogLine> {
    const params = new URLSearchParams({ format: 'json' });
    if (options.follow) params.set('follow', 'true');
    else params.set('limit', '10000');
    const keep = (l: LogLine) => (!options.runnable || l.runnable === options.runnable) && (!options.instance || l.instance === options.instance);
    let after = 0;
    const tails = new Map<string, LogLine[]>();
    for (;;) {
      params.set('after', String(after));
      const res = await this.request('GET', `${this.path(`/${encodeURIComponent(runId)}/logs`)}?${params}`, undefined, options.signal);
      let count = 0;
      let rest = '';
      const decoder = new TextDecoder();
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        const lines = (rest + decoder.decode(chunk, { stream: true })).split('\n');
        rest = lines.pop() ?? '';
        for (const text of lines) {
          if (!text) continue;
          const l = JSON.parse(text) as { seq: number; runnable: string; instance: string; stream?: 'stdout' | 'stderr'; line: string };
          after = l.seq;
          count++;
          const line: LogLine = { runnable: l.runnable, instance: l.instance, line: l.line, ...(l.stream ? { stream: l.stream } : {}) };
          if (!keep(line)) continue;
          if (options.tail !== undefined && !options.follow) {
            const key = `${l.runnable}/${l.instance}`;
            const list = tails.get(key) ?? [];
            list.push(line);
            if (list.length > options.tail) list.shift();
            tails.set(key, list);
          } else yield line;
        }
      }
      if (options.follow || count < 10_000) break;
    }
    for (const list of tails.values()) yield* list;
  }

  async close(): Promise<void> {
    for (const a of this.aborts) a.abort();
    this.aborts.clear();
  }
}
