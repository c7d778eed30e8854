// The REST API under /api/v1 (node:http): routes as data, so the OpenAPI
// document is generated from the same table the server dispatches on.
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { isTerminal, parseAppSpec, SpecError, type AppSpec } from '../runtime/index.js';
import { allows, hashToken, newToken, newTokenId } from './auth.js';
import { DashboardFiles, defaultDashboardDir } from './dashboard.js';
import { ApiError } from './errors.js';
import type { MasterMetrics } from './metrics.js';
import { buildOpenApi } from './openapi.js';
import {
  appJson,
  auditJson,
  CommandBody,
  CreateTokenBody,
  EmptyBody,
  eventJson,
  GetAppQuery,
  CountRunsQuery,
  ListRunsQuery,
  LogsQuery,
  NoQuery,
  PutAppBody,
  RestartBody,
  runJson,
  ScaleBody,
  StartRunBody,
  statusOf,
  StopBody,
  validate,
  WatchQuery,
} from './schemas.js';
import type { MasterService } from './service.js';
import { StoreError, type Role, type RunRecord, type TokenRecord } from './store/index.js';

export const MAX_BODY_BYTES = 1 << 20;

export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  query: Record<string, string>;
  token?: TokenRecord;
  actor: string;
  /** The parsed JSON body (only for routes with a body). */
  body: unknown;
}

export interface Route {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** OpenAPI path template, e.g. /api/v1/namespaces/{namespace}/runs/{run}. */
  path: string;
  operationId: string;
  summary: string;
  /** Role needed in the path's namespace ("*" for global routes); undefined: no token needed. */
  role?: Role;
  /** A global route that any token with `role` in some namespace may call (whoami). */
  anyNamespace?: boolean;
  hasBody?: boolean;
  /** Response status codes and the component schema of each body (for the OpenAPI document and its test). */
  responses: Record<number, string>;
  query?: Array<{ name: string; description: string; schema: Record<string, unknown> }>;
  requestSchema?: string;
  produces?: string[];
  handle(ctx: RequestContext): Promise<unknown>;
}

/** Responses with the JSON error body, by status code (for a route's `responses`). */
const errors = (...codes: number[]): Record<number, string> => Object.fromEntries(codes.map((c) => [c, 'Error']));

/** A response that is already written (streams). */
const WRITTEN = Symbol('written');

function compile(path: string): RegExp {
  return new RegExp(`^${path.replace(/\{([a-zA-Z]+)\}/g, (_, n: string) => `(?<${n}>[^/]+)`)}$`);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_BODY_BYTES) throw new ApiError('body_too_large', `the request body is ${declared} bytes; at most ${MAX_BODY_BYTES} are accepted`);
  const type = String(req.headers['content-type'] ?? '');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      req.resume();
      throw new ApiError('body_too_large', `the request body is over ${MAX_BODY_BYTES} bytes`);
    }
    chunks.push(chunk);
  }
  if (size === 0) return {};
  if (!/^application\/json\b/i.test(type)) throw new ApiError('unsupported_media_type', 'send the body as JSON with content-type: application/json');
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (error) {
    throw new ApiError('invalid_request', `the body is not valid JSON: ${(error as Error).message}`);
  }
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

export interface ApiOptions {
  service: MasterService;
  metrics: MasterMetrics;
  /** Is the master ready (store migrated, first reconcile done)? */
  ready: () => boolean;
  /** Where the built dashboard is (default dist/dashboard); false: no dashboard. */
  dashboardDir?: string | false;
  log?: (message: string, fields?: Record<string, unknown>) => void;
}

export function buildRoutes(options: ApiOptions): Route[] {
  const { service, metrics } = options;
  const store = service.store;
  const runtime = service.runtime;

  const runIn = async (ctx: RequestContext): Promise<RunRecord> => {
    const run = await store.getRun(ctx.params.run);
    // Another namespace's run is "not found": its existence is not revealed.
    if (!run || run.namespace !== ctx.params.namespace) throw new ApiError('not_found', `no run ${ctx.params.run} in namespace ${ctx.params.namespace} (GET /api/v1/namespaces/${ctx.params.namespace}/runs lists them)`);
    return run;
  };
  const audit = (ctx: RequestContext, action: string, target: string | undefined, outcome = 'ok', detail?: string) =>
    store.addAudit({ actor: ctx.actor, namespace: ctx.params.namespace, action, target, outcome, detail });
  const control = async (ctx: RequestContext, action: string, fn: (run: RunRecord) => Promise<void>) => {
    let run = await runIn(ctx);
    if (isTerminal(run.state)) throw new ApiError('conflict', `run ${run.id} already ended ${run.state}; nothing to ${action.replace('run.', '')}`);
    if (run.launchedAt === undefined) {
      // Not handed to the runtime yet (queued, or being handed over): stop and kill end it; nothing else applies.
      const where = run.queuedAt !== undefined ? 'waits in the admission queue' : 'is being handed to the runtime';
      if (action !== 'run.stop' && action !== 'run.kill') throw new ApiError('conflict', `run ${run.id} ${where} and has not started; it can only be stopped or killed`);
      if (await service.cancelNotLaunched(run, action === 'run.stop' ? 'stopped' : 'killed')) {
        await audit(ctx, action, run.id);
        return { ...runJson((await store.getRun(run.id)) ?? run), accepted: true };
      }
      // Launched meanwhile: stopped through the runtime below.
      run = (await store.getRun(run.id)) ?? run;
      if (isTerminal(run.state)) throw new ApiError('conflict', `run ${run.id} already ended ${run.state}; nothing to ${action.replace('run.', '')}`);
    }
    try {
      await fn(run);
    } catch (error) {
      if (error instanceof ApiError) throw error;
      throw new ApiError('runtime_error', `the ${runtime.name} runtime could not ${action.replace('run.', '')} run ${run.id}: ${(error as Error).message}`);
    }
    await audit(ctx, action, run.id);
    return { ...runJson((await store.getRun(run.id)) ?? run), accepted: true };
  };

  /**
   * A control endpoint (POST .../runs/{run}/<verb>): the body validated, the run found in the namespace and not
   * ended, the runtime asked, the action audited; 202 with the run.
   */
  const controlRoute = <B extends z.ZodTypeAny>(c: {
    verb: string;
    /** The audit action run.<action> and the word in messages (default: verb). */
    action?: string;
    /** What the body is called in a validation error (default: "<verb> request"). */
    what?: string;
    operationId: string;
    summary: string;
    requestSchema: string;
    body: B;
    act: (run: RunRecord, body: z.output<B>) => Promise<void>;
  }): Route => ({
    method: 'POST',
    path: `/api/v1/namespaces/{namespace}/runs/{run}/${c.verb}`,
    operationId: c.operationId,
    summary: c.summary,
    role: 'operator',
    hasBody: true,
    requestSchema: c.requestSchema,
    responses: { 202: 'Run', ...errors(400, 401, 403, 404, 409) },
    handle: async (ctx) => {
      const body = validate(c.body, ctx.body, c.what ?? `${c.verb} request`);
      ctx.res.statusCode = 202;
      return control(ctx, `run.${c.action ?? c.verb}`, (run) => c.act(run, body));
    },
  });

  const routes: Route[] = [
    {
      method: 'GET',
      path: '/healthz',
      operationId: 'healthz',
      summary: 'Liveness: the process serves requests',
      responses: { 200: 'Health' },
      handle: async () => ({ status: 'ok' }),
    },
    {
      method: 'GET',
      path: '/readyz',
      operationId: 'readyz',
      summary: 'Readiness: the store answers and the first reconciliation is done',
      responses: { 200: 'Health', 503: 'Error' },
      handle: async () => {
        if (!options.ready()) throw new ApiError('runtime_error', 'not ready: the first reconciliation has not finished');
        await store.schemaVersion();
        return { status: 'ready', leader: service.isLeader };
      },
    },
    {
      method: 'GET',
      path: '/metrics',
      operationId: 'metrics',
      summary: 'Prometheus metrics (text format)',
      responses: { 200: 'Text' },
      produces: ['text/plain'],
      handle: async (ctx) => {
        const text = await metrics.registry.metrics();
        ctx.res.writeHead(200, { 'content-type': metrics.registry.contentType });
        ctx.res.end(text);
        return WRITTEN;
      },
    },
    {
      method: 'GET',
      path: '/api/v1/openapi.json',
      operationId: 'openapi',
      summary: 'This API, as an OpenAPI 3.1 document',
      responses: { 200: 'Object' },
      handle: async () => buildOpenApi(routes),
    },
    {
      method: 'GET',
      path: '/api/v1/namespaces/{namespace}/apps',
      operationId: 'listApps',
      summary: 'The latest version of every stored app',
      role: 'viewer',
      responses: { 200: 'AppList', ...errors(401, 403) },
      handle: async (ctx) => ({ items: (await store.listApps(ctx.params.namespace)).map(appJson) }),
    },
    {
      method: 'PUT',
      path: '/api/v1/namespaces/{namespace}/apps/{app}',
      operationId: 'putApp',
      summary: 'Stores an app spec as the next version of the app',
      role: 'operator',
      hasBody: true,
      requestSchema: 'PutApp',
      responses: { 201: 'App', ...errors(400, 401, 403, 413) },
      handle: async (ctx) => {
        const body = validate(PutAppBody, ctx.body, 'app');
        const spec = parseSpec(body.spec);
        if (spec.name !== ctx.params.app) throw new ApiError('invalid_request', `the spec's name "${spec.name}" differs from the app in the path "${ctx.params.app}"`);
        const app = await store.putApp(ctx.params.namespace, ctx.params.app, body.spec, ctx.actor);
        await audit(ctx, 'app.put', `${app.name}@${app.version}`);
        ctx.res.statusCode = 201;
        return appJson(app);
      },
    },
    {
      method: 'GET',
      path: '/api/v1/namespaces/{namespace}/apps/{app}',
      operationId: 'getApp',
      summary: 'One stored app (the latest version, or ?version=)',
      role: 'viewer',
      query: [{ name: 'version', description: 'a stored version', schema: { type: 'integer' } }],
      responses: { 200: 'App', ...errors(401, 403, 404) },
      handle: async (ctx) => {
        const q = validate(GetAppQuery, ctx.query, 'query');
        const app = await store.getApp(ctx.params.namespace, ctx.params.app, q.version);
        if (!app) throw new ApiError('not_found', `no app ${ctx.params.app}${q.version ? ` version ${q.version}` : ''} in namespace ${ctx.params.namespace}`);
        return appJson(app);
      },
    },
    {
      method: 'POST',
      path: '/api/v1/namespaces/{namespace}/runs',
      operationId: 'startRun',
      summary: 'Starts a run of a stored app (with overrides) or of a one-off spec; Idempotency-Key makes retries safe',
      role: 'operator',
      hasBody: true,
      requestSchema: 'StartRun',
      responses: { 200: 'Run', 201: 'Run', 202: 'Run', ...errors(400, 401, 403, 404, 409, 413) },
      handle: async (ctx) => {
        const body = validate(StartRunBody, ctx.body, 'run request');
        const key = ctx.req.headers['idempotency-key'];
        if (key !== undefined && (typeof key !== 'string' || key.length === 0 || key.length > 200)) throw new ApiError('invalid_request', 'Idempotency-Key is 1 to 200 characters');
        let spec: AppSpec;
        let appVersion: number | undefined;
        if (body.app !== undefined) {
          const app = await store.getApp(ctx.params.namespace, body.app, body.version);
          if (!app) throw new ApiError('not_found', `no app ${body.app}${body.version ? ` version ${body.version}` : ''} in namespace ${ctx.params.namespace}: store it with PUT .../apps/${body.app}`);
          spec = parseSpec(app.spec);
          appVersion = app.version;
        } else {
          spec = parseSpec(body.spec);
        }
        applyOverrides(spec, body.overrides ?? {});
        const result = await service.submit({ namespace: ctx.params.namespace, actor: ctx.actor, spec, appVersion, idempotencyKey: key, queue: body.queue });
        if (result.created) await audit(ctx, 'run.start', result.run.id, result.rejected ? 'rejected' : result.queuePosition !== undefined ? 'queued' : 'ok');
        if (result.rejected) {
          throw new ApiError('admission_rejected', result.run.message ?? 'the namespace is at its limit of live runs', { run: runJson(result.run) });
        }
        // Queued: accepted, not started (202); a retry of a queued submission says where it is now.
        ctx.res.statusCode = result.queuePosition !== undefined ? (result.created ? 202 : 200) : result.created ? 201 : 200;
        return result.queuePosition !== undefined ? { ...runJson(result.run), queuePosition: result.queuePosition } : runJson(result.run);
      },
    },
    {
      method: 'GET',
      path: '/api/v1/namespaces/{namespace}/runs',
      operationId: 'listRuns',
      summary: 'Runs, newest first, filtered and paged in the store (continue tokens)',
      role: 'viewer',
      query: [
        { name: 'app', description: 'only runs of this app', schema: { type: 'string' } },
        { name: 'state', description: 'comma-separated states', schema: { type: 'string' } },
        { name: 'since', description: 'created at or after (RFC 3339 or ms)', schema: { type: 'string' } },
        { name: 'until', description: 'created before (RFC 3339 or ms)', schema: { type: 'string' } },
        { name: 'limit', description: 'page size, 1-1000 (default 100)', schema: { type: 'integer' } },
        { name: 'continue', description: 'the continue token of the previous page', schema: { type: 'string' } },
      ],
      responses: { 200: 'RunList', ...errors(400, 401, 403) },
      handle: async (ctx) => {
        const q = validate(ListRunsQuery, ctx.query, 'query');
        const page = await store.listRuns({ namespace: ctx.params.namespace, app: q.app, states: q.state, since: q.since, until: q.until, limit: q.limit ?? 100, continueToken: q.continue });
        return { items: page.items.map(runJson), continue: page.continueToken };
      },
    },
    {
      method: 'GET',
      path: '/api/v1/namespaces/{namespace}/run-counts',
      operationId: 'countRuns',
      summary: 'How many runs of the namespace are in each state (counted in the store)',
      role: 'viewer',
      query: [{ name: 'app', description: 'only runs of this app', schema: { type: 'string' } }],
      responses: { 200: 'RunCounts', ...errors(400, 401, 403) },
      handle: async (ctx) => {
        const q = validate(CountRunsQuery, ctx.query, 'query');
        const counts = await store.countByState({ namespace: ctx.params.namespace, app: q.app });
        return { counts, total: Object.values(counts).reduce((a, b) => a + (b ?? 0), 0) };
      },
    },
    {
      method: 'GET',
      path: '/api/v1/whoami',
      operationId: 'whoami',
      summary: "The calling token's name, id and roles (any valid token may ask)",
      role: 'viewer',
      anyNamespace: true,
      responses: { 200: 'Whoami', 401: 'Error' },
      handle: async (ctx) => ({ id: ctx.token!.id, name: ctx.token!.name, roles: ctx.token!.roles }),
    },
    {
      method: 'GET',
      path: '/api/v1/namespaces/{namespace}/runs/{run}',
      operationId: 'getRun',
      summary: 'One run with its full state history and the runtime status',
      role: 'viewer',
      responses: { 200: 'RunDetail', ...errors(401, 403, 404) },
      handle: async (ctx) => {
        const run = await runIn(ctx);
        const live = await runtime.status(run.id).catch(() => undefined);
        const queuePosition = run.queuedAt !== undefined ? await store.queuePosition(run.id) : undefined;
        return { ...runJson(run), ...(queuePosition !== undefined ? { queuePosition } : {}), spec: run.spec, history: (await store.history(run.id)).map(eventJson), status: statusOf(run, live) };
      },
    },
    {
      method: 'GET',
      path: '/api/v1/namespaces/{namespace}/runs/{run}/resources',
      operationId: 'runResources',
      summary: "The run's resource report: each instance's requested cpu and memory and, where the runtime measures it, its usage",
      role: 'viewer',
      responses: { 200: 'ResourceReport', ...errors(401, 403, 404) },
      handle: async (ctx) => {
        validate(NoQuery, ctx.query, 'query');
        const run = await runIn(ctx);
        try {
          return await runtime.resourceReport(run.id);
        } catch (error) {
          // A finished run whose objects are gone has no instances left to report.
          return { runId: run.id, app: run.app, instances: [], usageUnavailable: `the ${runtime.name} runtime has no report: ${(error as Error).message}` };
        }
      },
    },
    controlRoute({
      verb: 'stop',
      operationId: 'stopRun',
      summary: 'Graceful stop with a grace period (the spec stopTimeout by default)',
      requestSchema: 'Stop',
      body: StopBody,
      act: async (run, body) => {
        const grace = body.gracePeriodSeconds !== undefined ? Math.round(body.gracePeriodSeconds * 1000) : ((run.spec as { stopTimeout?: number }).stopTimeout ?? 30_000);
        await store.markStopRequested(run.id, grace);
        await runtime.stop(run.id, { gracePeriodMs: grace });
      },
    }),
    controlRoute({ verb: 'kill', operationId: 'killRun', summary: 'Immediate stop', requestSchema: 'Empty', body: EmptyBody, act: (run) => runtime.kill(run.id) }),
    controlRoute({
      verb: 'scale',
      operationId: 'scaleRun',
      summary: 'Sets the instance count of one runnable',
      requestSchema: 'Scale',
      body: ScaleBody,
      act: (run, body) => runtime.scale(run.id, body.runnable, body.instances),
    }),
    controlRoute({
      verb: 'restart',
      operationId: 'restartInstances',
      summary: 'Restarts instances of a runnable (all when none are named)',
      requestSchema: 'Restart',
      body: RestartBody,
      act: (run, body) => runtime.restart(run.id, body.runnable, body.instances),
    }),
    controlRoute({ verb: 'suspend', operationId: 'suspendRun', summary: 'Suspends a run (batch runnables)', requestSchema: 'Empty', body: EmptyBody, act: (run) => runtime.suspend(run.id, true) }),
    controlRoute({ verb: 'resume', operationId: 'resumeRun', summary: 'Resumes a suspended run', requestSchema: 'Empty', body: EmptyBody, act: (run) => runtime.suspend(run.id, false) }),
    controlRoute({
      verb: 'commands',
      action: 'command',
      what: 'command',
      operationId: 'sendCommand',
      summary: 'Delivers a command to the instances of a run',
      requestSchema: 'Command',
      body: CommandBody,
      act: (run, body) => runtime.sendCommand(run.id, body.command, { runnable: body.runnable, payload: body.payload }),
    }),
    {
      method: 'GET',
      path: '/api/v1/namespaces/{namespace}/runs/{run}/logs',
      operationId: 'runLogs',
      summary: 'Archived output with cursors: lines after `after`, at most `limit`; text or JSON lines; `follow` streams until the run ends',
      role: 'viewer',
      query: [
        { name: 'after', description: 'the seq of the last line already read (0: from the start)', schema: { type: 'integer' } },
        { name: 'before', description: 'page back: the newest `limit` lines with a seq below this (a huge number: the end of the archive); not with follow', schema: { type: 'integer' } },
        { name: 'limit', description: 'at most this many lines (1-10000, default 1000; unlimited when following)', schema: { type: 'integer' } },
        { name: 'format', description: 'text (default) or json (JSON lines)', schema: { type: 'string', enum: ['text', 'json'] } },
        { name: 'follow', description: 'keep streaming until the run ends', schema: { type: 'boolean' } },
      ],
      produces: ['text/plain', 'application/x-ndjson'],
      responses: { 200: 'Text', ...errors(400, 401, 403, 404) },
      handle: async (ctx) => {
        const q = validate(LogsQuery, ctx.query, 'query');
        const run = await runIn(ctx);
        const json = q.format === 'json';
        const abort = new AbortController();
        ctx.res.on('close', () => abort.abort());
        let after = q.after ?? 0;
        let remaining = q.limit ?? (q.follow ? Number.POSITIVE_INFINITY : 1000);
        let headersSent = false;
        const send = (text: string) => {
          if (!headersSent) {
            ctx.res.writeHead(200, { 'content-type': json ? 'application/x-ndjson; charset=utf-8' : 'text/plain; charset=utf-8', 'cache-control': 'no-store', 'x-weft-run-state': run.state });
            headersSent = true;
          }
          ctx.res.write(text);
        };
        const wake = () => abortWait?.abort();
        let abortWait: AbortController | undefined;
        service.changes.on('logs', wake);
        service.changes.on('logs-done', wake);
        try {
          while (remaining > 0 && !abort.signal.aborted) {
            // With before, one page: the newest lines below the cursor.
            const page = await store.readLogs(run.id, q.before !== undefined ? { after, before: q.before, limit: remaining } : { after, limit: Math.min(remaining, 1000) });
            if (page.length > 0) {
              send(page.map((l) => (json ? `${JSON.stringify({ seq: l.seq, runnable: l.runnable, instance: l.instance, stream: l.stream, at: new Date(l.at).toISOString(), line: l.line })}\n` : `${l.line}\n`)).join(''));
              if (q.before !== undefined) break;
              after = page[page.length - 1].seq;
              remaining -= page.length;
              continue;
            }
            if (!q.follow) break;
            const current = await store.getRun(run.id);
            // The archive is complete when its archiver said so (on any master), when the run never reached the
            // runtime, or when this master is the leader and archives it no more.
            const archived =
              current !== undefined &&
              isTerminal(current.state) &&
              (current.logsArchivedAt !== undefined || current.launchedAt === undefined || current.state === 'REJECTED' || (service.isLeader && !service.isArchiving(run.id)));
            if (archived) {
              // Drained: one last read catches lines flushed as the archiver finished.
              if ((await store.readLogs(run.id, { after, limit: 1 })).length === 0) break;
              continue;
            }
            abortWait = new AbortController();
            await sleep(500, AbortSignal.any([abortWait.signal, abort.signal]));
          }
        } finally {
          service.changes.off('logs', wake);
          service.changes.off('logs-done', wake);
        }
        if (!headersSent) send('');
        ctx.res.end();
        return WRITTEN;
      },
    },
    {
      method: 'GET',
      path: '/api/v1/namespaces/{namespace}/watch',
      operationId: 'watchRuns',
      summary: 'Server-sent events of state changes (all runs of the namespace, or ?run=); resumable with Last-Event-ID or ?after=',
      role: 'viewer',
      query: [
        { name: 'run', description: 'only this run', schema: { type: 'string' } },
        { name: 'after', description: 'resume after this event id (Last-Event-ID does the same)', schema: { type: 'integer' } },
      ],
      produces: ['text/event-stream'],
      responses: { 200: 'Text', ...errors(400, 401, 403) },
      handle: async (ctx) => {
        const q = validate(WatchQuery, ctx.query, 'query');
        const lastEventId = ctx.req.headers['last-event-id'];
        let after = q.after ?? 0;
        if (typeof lastEventId === 'string' && lastEventId !== '') {
          if (!/^\d+$/.test(lastEventId)) throw new ApiError('invalid_request', 'Last-Event-ID must be an event id this master sent');
          after = Number(lastEventId);
        }
        if (q.after === undefined && lastEventId === undefined) {
          // A new watcher starts from now: it sees changes after it connected.
          after = await store.latestEventId();
        }
        ctx.res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive' });
        ctx.res.write(': watching\n\n');
        const closed = new AbortController();
        ctx.res.on('close', () => closed.abort());
        let waiter: AbortController | undefined;
        const wake = () => waiter?.abort();
        service.changes.on('event', wake);
        let idle = 0;
        try {
          while (!closed.signal.aborted) {
            const events = await store.events(after, { namespace: ctx.params.namespace, runId: q.run, limit: 500 });
            for (const e of events) {
              ctx.res.write(`id: ${e.id}\nevent: transition\ndata: ${JSON.stringify(eventJson(e))}\n\n`);
              after = e.id;
            }
            if (events.length === 500) continue;
            waiter = new AbortController();
            // Polling the store (not only in-process events) lets a watcher see changes made by another master.
            await sleep(1000, AbortSignal.any([waiter.signal, closed.signal]));
            if (++idle % 15 === 0) ctx.res.write(': keep-alive\n\n');
          }
        } finally {
          service.changes.off('event', wake);
        }
        return WRITTEN;
      },
    },
    {
      method: 'GET',
      path: '/api/v1/namespaces/{namespace}/audit',
      operationId: 'listAudit',
      summary: 'Who did what in the namespace, newest first',
      role: 'admin',
      responses: { 200: 'AuditList', ...errors(401, 403) },
      handle: async (ctx) => {
        validate(NoQuery, ctx.query, 'query');
        return { items: (await store.listAudit({ namespace: ctx.params.namespace })).map(auditJson) };
      },
    },
    {
      method: 'POST',
      path: '/api/v1/tokens',
      operationId: 'createToken',
      summary: 'Creates a token with roles per namespace; the token is shown only in this answer',
      role: 'admin',
      hasBody: true,
      requestSchema: 'CreateToken',
      responses: { 201: 'NewToken', ...errors(400, 401, 403) },
      handle: async (ctx) => {
        const body = validate(CreateTokenBody, ctx.body, 'token request');
        const token = newToken();
        const record = await store.addToken({ id: newTokenId(), name: body.name, hash: hashToken(token), roles: body.roles });
        await store.addAudit({ actor: ctx.actor, action: 'token.create', target: record.id, outcome: 'ok', detail: JSON.stringify(body.roles) });
        ctx.res.statusCode = 201;
        return { id: record.id, name: record.name, roles: record.roles, token };
      },
    },
    {
      method: 'GET',
      path: '/api/v1/tokens',
      operationId: 'listTokens',
      summary: 'Tokens (never their values)',
      role: 'admin',
      responses: { 200: 'TokenList', ...errors(401, 403) },
      handle: async () => ({ items: (await store.listTokens()).map((t) => ({ id: t.id, name: t.name, roles: t.roles, revoked: t.revokedAt !== undefined })) }),
    },
    {
      method: 'DELETE',
      path: '/api/v1/tokens/{token}',
      operationId: 'revokeToken',
      summary: 'Revokes a token by id',
      role: 'admin',
      responses: { 200: 'Object', ...errors(401, 403, 404) },
      handle: async (ctx) => {
        if (!(await store.revokeToken(ctx.params.token))) throw new ApiError('not_found', `no live token ${ctx.params.token}`);
        await store.addAudit({ actor: ctx.actor, action: 'token.revoke', target: ctx.params.token, outcome: 'ok' });
        return { id: ctx.params.token, revoked: true };
      },
    },
  ];
  return routes;
}

function parseSpec(input: unknown): AppSpec {
  try {
    return parseAppSpec(input, '(request)');
  } catch (error) {
    if (error instanceof SpecError) throw new ApiError('invalid_spec', error.message);
    throw error;
  }
}

function applyOverrides(spec: AppSpec, o: z.output<typeof import('./schemas.js').Overrides>): void {
  const runnable = (name: string) => {
    const r = spec.runnables.find((x) => x.name === name);
    if (!r) throw new ApiError('invalid_request', `overrides name runnable "${name}", but app ${spec.name} has ${spec.runnables.map((x) => x.name).join(', ')}`);
    return r;
  };
  for (const r of spec.runnables) {
    if (o.args) r.args.push(...o.args);
    if (o.env) Object.assign(r.env, o.env);
  }
  for (const [name, args] of Object.entries(o.runnableArgs ?? {})) runnable(name).args.push(...args);
  for (const [name, n] of Object.entries(o.instances ?? {})) runnable(name).instances = n;
}

export interface ApiServer {
  server: Server;
  port: number;
  host: string;
  url: string;
  close(): Promise<void>;
}

export async function startApi(options: ApiOptions & { addr: string; tls?: { cert: Buffer; key: Buffer } }): Promise<ApiServer> {
  const routes = buildRoutes(options);
  const compiled = routes.map((r) => ({ route: r, pattern: compile(r.path) }));
  const { store } = options.service;
  const dashboard = options.dashboardDir === false ? undefined : new DashboardFiles(options.dashboardDir ?? defaultDashboardDir());

  const handler = async (req: IncomingMessage, res: ServerResponse) => {
    const started = process.hrtime.bigint();
    let routeLabel = 'unmatched';
    try {
      const url = new URL(req.url ?? '/', 'http://master');
      if (dashboard && (req.method === 'GET' || req.method === 'HEAD') && DashboardFiles.handles(url.pathname)) {
        routeLabel = 'dashboard';
        await dashboard.serve(req, res, url.pathname);
        return;
      }
      const matches = compiled.filter((c) => c.pattern.test(url.pathname));
      if (matches.length === 0) throw new ApiError('not_found', `no such endpoint ${url.pathname} (GET /api/v1/openapi.json lists them)`);
      const match = matches.find((c) => c.route.method === req.method);
      if (!match) throw new ApiError('method_not_allowed', `${req.method} is not allowed on ${url.pathname}; use ${matches.map((c) => c.route.method).join(', ')}`);
      const route = match.route;
      routeLabel = route.path;
      const params = Object.fromEntries(Object.entries(match.pattern.exec(url.pathname)!.groups ?? {}).map(([k, v]) => [k, decodeURIComponent(v)]));
      const query: Record<string, string> = {};
      for (const [k, v] of url.searchParams) {
        if (k in query) throw new ApiError('invalid_request', `query parameter ${k} is given twice`);
        query[k] = v;
      }
      const ctx: RequestContext = { req, res, params, query, actor: 'anonymous', body: undefined };
      if (route.role) {
        const header = req.headers.authorization;
        const m = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
        if (!m) throw new ApiError('unauthorized', 'this endpoint needs a token: send Authorization: Bearer <token>');
        const token = await store.tokenByHash(hashToken(m[1]));
        if (!token) throw new ApiError('unauthorized', 'the token is not valid (unknown or revoked)');
        ctx.token = token;
        ctx.actor = `${token.name} (${token.id})`;
        const namespace = params.namespace ?? '*';
        if (params.namespace !== undefined && !/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(params.namespace)) throw new ApiError('invalid_request', `"${params.namespace}" is not a namespace name (a lowercase DNS label)`);
        const allowed = route.anyNamespace ? Object.keys(token.roles).some((ns) => allows(token, ns, route.role!)) : allows(token, namespace, route.role);
        if (!allowed) {
          await store.addAudit({ actor: ctx.actor, namespace: params.namespace, action: route.operationId, target: params.run ?? params.app, outcome: 'forbidden' });
          throw new ApiError('forbidden', `token ${token.name} may not ${route.operationId} in ${namespace === '*' ? 'the master (admin on "*" needed)' : `namespace ${namespace}`}: it needs the ${route.role} role there`);
        }
      }
      if (route.hasBody) ctx.body = await readBody(req);
      else if (Number(req.headers['content-length'] ?? 0) > 0) throw new ApiError('invalid_request', `${req.method} ${route.path} takes no body`);
      const result = await route.handle(ctx);
      if (result !== WRITTEN) sendJson(res, res.statusCode && res.statusCode !== 200 ? res.statusCode : 200, result);
    } catch (error) {
      let apiError: ApiError;
      if (error instanceof ApiError) apiError = error;
      else if (error instanceof StoreError) apiError = new ApiError(error.code === 'not_found' ? 'not_found' : error.code === 'conflict' ? 'conflict' : 'invalid_request', error.message);
      else {
        options.log?.('request failed', { route: routeLabel, error: (error as Error).message });
        apiError = new ApiError('internal', 'the master failed on this request; its log has the cause');
      }
      if (apiError.code === 'body_too_large') res.setHeader('connection', 'close');
      if (!res.headersSent) {
        const status = routeLabel === '/readyz' && apiError.code === 'runtime_error' ? 503 : apiError.status;
        sendJson(res, status, { error: { code: apiError.code, message: apiError.message, ...(apiError.details && typeof apiError.details === 'object' && !Array.isArray(apiError.details) ? apiError.details : {}) } });
      } else res.end();
    } finally {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      options.metrics.requestDuration.observe({ method: req.method ?? '?', route: routeLabel, code: String(res.statusCode) }, seconds);
    }
  };

  const server = options.tls ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key }, (q, s) => void handler(q, s)) : createHttpServer((q, s) => void handler(q, s));
  server.requestTimeout = 0; // watch and followed logs are long-lived
  const m = /^(.*):(\d+)$/.exec(options.addr);
  if (!m) throw new Error(`--addr must be host:port, like 127.0.0.1:8420 (got "${options.addr}")`);
  const host = m[1].replace(/^\[|\]$/g, '');
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(m[2]), host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const scheme = options.tls ? 'https' : 'http';
  return {
    server,
    port,
    host,
    url: `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
