// Request validation (zod; unknown fields are errors) and the conversion of
// records into API objects.
import { z } from 'zod';
import { RUN_STATES, type RunStatus } from '../runtime/index.js';
import { ApiError } from './errors.js';
import type { AppRecord, AuditRecord, RunEvent, RunRecord } from './store/index.js';

const name = z.string().min(1).max(63).regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'a lowercase DNS label');

export const PutAppBody = z.object({ spec: z.record(z.unknown()) }).strict();

export const Overrides = z
  .object({
    /** Appended to every runnable's args. */
    args: z.array(z.string().max(4096)).max(256).optional(),
    /** Appended to one runnable's args. */
    runnableArgs: z.record(z.array(z.string().max(4096)).max(256)).optional(),
    env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'environment variable names are letters, digits and _'), z.string().max(65536)).optional(),
    instances: z.record(z.number().int().min(0).max(10_000)).optional(),
  })
  .strict();

export const StartRunBody = z
  .object({
    app: name.optional(),
    version: z.number().int().positive().optional(),
    spec: z.record(z.unknown()).optional(),
    overrides: Overrides.optional(),
    queue: z.boolean().optional(),
  })
  .strict()
  .superRefine((b, ctx) => {
    if ((b.app === undefined) === (b.spec === undefined)) ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'give either app (a stored app) or spec (a one-off app spec)' });
    if (b.version !== undefined && b.app === undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['version'], message: 'version is only for a stored app' });
  });

export const StopBody = z.object({ gracePeriodSeconds: z.number().min(0).max(86_400).optional() }).strict();
export const ScaleBody = z.object({ runnable: name, instances: z.number().int().min(0).max(10_000) }).strict();
export const RestartBody = z.object({ runnable: name, instances: z.array(z.string().max(63)).max(10_000).optional() }).strict();
export const CommandBody = z.object({ command: z.string().min(1).max(253), runnable: name.optional(), payload: z.string().max(65_536).optional() }).strict();
export const EmptyBody = z.object({}).strict();
export const CreateTokenBody = z
  .object({
    name: z.string().min(1).max(100),
    roles: z.record(z.union([name, z.literal('*')]), z.enum(['viewer', 'operator', 'admin'])).refine((r) => Object.keys(r).length > 0, 'give at least one namespace: role'),
  })
  .strict();

const time = z
  .string()
  .transform((v, ctx) => {
    const ms = /^\d+$/.test(v) ? Number(v) : Date.parse(v);
    if (!Number.isFinite(ms)) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'a time is RFC 3339 (2026-01-02T15:04:05Z) or milliseconds since the epoch' });
      return z.NEVER;
    }
    return ms;
  });
const intParam = (min: number, max: number) => z.string().regex(/^\d+$/, 'a whole number').transform(Number).pipe(z.number().int().min(min).max(max));

export const ListRunsQuery = z
  .object({
    app: name.optional(),
    state: z
      .string()
      .transform((v) => v.split(',').map((s) => s.trim().toUpperCase()))
      .pipe(z.array(z.enum(RUN_STATES)))
      .optional(),
    since: time.optional(),
    until: time.optional(),
    limit: intParam(1, 1000).optional(),
    continue: z.string().max(512).optional(),
  })
  .strict();

export const LogsQuery = z
  .object({
    after: intParam(0, Number.MAX_SAFE_INTEGER).optional(),
    before: intParam(1, Number.MAX_SAFE_INTEGER).optional(),
    limit: intParam(1, 10_000).optional(),
    format: z.enum(['text', 'json']).optional(),
    follow: z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1').optional(),
  })
  .strict()
  .refine((q) => !(q.follow && q.before !== undefined), { message: 'before pages back through the archive; it cannot be combined with follow' });

export const CountRunsQuery = z.object({ app: name.optional() }).strict();
export const WatchQuery = z.object({ run: z.string().max(63).optional(), after: intParam(0, Number.MAX_SAFE_INTEGER).optional() }).strict();
export const GetAppQuery = z.object({ version: intParam(1, 1_000_000).optional() }).strict();
export const NoQuery = z.object({}).strict();

/** Parses with a schema; a failure is a 400 listing every problem by path. */
export function validate<T extends z.ZodTypeAny>(schema: T, value: unknown, what: string): z.output<T> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.map((i) => {
    const where = i.path.length ? i.path.join('.') : what;
    if (i.code === z.ZodIssueCode.unrecognized_keys) return `${where}: unknown field(s) ${i.keys.map((k) => `"${k}"`).join(', ')}`;
    return `${where}: ${i.message}`;
  });
  throw new ApiError('invalid_request', `invalid ${what}: ${problems.join('; ')}`, problems);
}

const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());

export function runJson(run: RunRecord): Record<string, unknown> {
  return {
    id: run.id,
    namespace: run.namespace,
    app: run.app,
    appVersion: run.appVersion,
    state: run.state,
    reason: run.reason,
    message: run.message,
    runtime: run.runtime,
    createdAt: iso(run.createdAt),
    updatedAt: iso(run.updatedAt),
    finishedAt: iso(run.finishedAt),
    createdBy: run.createdBy,
  };
}

export function appJson(a: AppRecord): Record<string, unknown> {
  return { ...a, createdAt: iso(a.createdAt) };
}

export function auditJson(a: AuditRecord): Record<string, unknown> {
  return { ...a, at: iso(a.at) };
}

export function eventJson(e: RunEvent): Record<string, unknown> {
  return { id: e.id, runId: e.runId, namespace: e.namespace, from: e.from, to: e.to, at: iso(e.at), reason: e.reason, message: e.message };
}

/** The runtime's status, or one made from the record when the runtime no longer has the run. */
export function statusOf(run: RunRecord, live: RunStatus | undefined): RunStatus {
  if (live) return live;
  return {
    runId: run.id,
    app: run.app,
    runtime: run.runtime === 'kubernetes' ? 'kubernetes' : 'local',
    state: run.state,
    message: run.message,
    reason: run.reason,
    createdAt: iso(run.createdAt),
    finishedAt: iso(run.finishedAt),
    runnables: [],
  };
}
