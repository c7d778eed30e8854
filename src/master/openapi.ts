// The OpenAPI 3.1 document, generated from the route table the server uses.
import { RUN_STATES } from '../runtime/index.js';
import type { Route } from './api.js';

const str = { type: 'string' };
const int = { type: 'integer' };
const time = { type: 'string', format: 'date-time' };

export const COMPONENT_SCHEMAS: Record<string, Record<string, unknown>> = {
  Error: {
    type: 'object',
    required: ['error'],
    properties: { error: { type: 'object', required: ['code', 'message'], properties: { code: str, message: str } } },
  },
  Health: { type: 'object', required: ['status'], properties: { status: str } },
  Object: { type: 'object' },
  Text: { type: 'string' },
  App: {
    type: 'object',
    required: ['namespace', 'name', 'version', 'spec', 'createdAt', 'createdBy'],
    properties: { namespace: str, name: str, version: int, spec: { type: 'object' }, createdAt: time, createdBy: str },
  },
  AppList: { type: 'object', required: ['items'], properties: { items: { type: 'array', items: { $ref: '#/components/schemas/App' } } } },
  Run: {
    type: 'object',
    required: ['id', 'namespace', 'app', 'state', 'runtime', 'createdAt', 'updatedAt', 'createdBy'],
    properties: {
      id: str,
      namespace: str,
      app: str,
      appVersion: int,
      state: { type: 'string', enum: [...RUN_STATES] },
      reason: str,
      message: str,
      runtime: str,
      createdAt: time,
      updatedAt: time,
      finishedAt: time,
      createdBy: str,
      accepted: { type: 'boolean' },
      queuePosition: { type: 'integer', minimum: 1, description: 'while the run waits in the admission queue (PENDING, reason Queued): its place, 1 = next' },
    },
  },
  RunEvent: {
    type: 'object',
    required: ['id', 'runId', 'namespace', 'to', 'at'],
    properties: { id: int, runId: str, namespace: str, from: { type: 'string', enum: [...RUN_STATES] }, to: { type: 'string', enum: [...RUN_STATES] }, at: time, reason: str, message: str },
  },
  RunDetail: {
    allOf: [
      { $ref: '#/components/schemas/Run' },
      {
        type: 'object',
        required: ['history', 'status', 'spec'],
        properties: { spec: { type: 'object' }, history: { type: 'array', items: { $ref: '#/components/schemas/RunEvent' } }, status: { type: 'object', required: ['runId', 'state', 'runnables'] } },
      },
    ],
  },
  RunCounts: { type: 'object', required: ['counts', 'total'], properties: { counts: { type: 'object', additionalProperties: int }, total: int } },
  Whoami: { type: 'object', required: ['id', 'name', 'roles'], properties: { id: str, name: str, roles: { type: 'object', additionalProperties: { type: 'string', enum: ['viewer', 'operator', 'admin'] } } } },
  ResourceReport: {
    type: 'object',
    required: ['runId', 'app', 'instances'],
    properties: {
      runId: str,
      app: str,
      usageUnavailable: str,
      instances: {
        type: 'array',
        items: {
          type: 'object',
          required: ['runnable', 'instance', 'state', 'cpu', 'memory'],
          properties: { runnable: str, instance: str, host: str, containerId: str, state: str, cpu: str, memory: str, usage: { type: 'object', properties: { cpuMillicores: { type: 'number' }, memoryBytes: { type: 'number' } } } },
        },
      },
    },
  },
  RunList: { type: 'object', required: ['items'], properties: { items: { type: 'array', items: { $ref: '#/components/schemas/Run' } }, continue: str } },
  AuditList: {
    type: 'object',
    required: ['items'],
    properties: { items: { type: 'array', items: { type: 'object', required: ['id', 'at', 'actor', 'action', 'outcome'], properties: { id: int, at: time, actor: str, namespace: str, action: str, target: str, outcome: str, detail: str } } } },
  },
  NewToken: { type: 'object', required: ['id', 'name', 'roles', 'token'], properties: { id: str, name: str, roles: { type: 'object' }, token: str } },
  TokenList: { type: 'object', required: ['items'], properties: { items: { type: 'array', items: { type: 'object', required: ['id', 'name', 'roles', 'revoked'], properties: { id: str, name: str, roles: { type: 'object' }, revoked: { type: 'boolean' } } } } } },
  // Request bodies (unknown fields are refused: additionalProperties false).
  PutApp: { type: 'object', additionalProperties: false, required: ['spec'], properties: { spec: { type: 'object', description: 'an app spec (weft.yaml as JSON)' } } },
  StartRun: {
    type: 'object',
    additionalProperties: false,
    description: 'exactly one of app (a stored app) or spec (a one-off spec)',
    properties: {
      app: str,
      version: int,
      spec: { type: 'object' },
      queue: { type: 'boolean', description: 'over the admission limit, wait in the namespace queue (202, PENDING with reason Queued and queuePosition) instead of 409' },
      overrides: {
        type: 'object',
        additionalProperties: false,
        properties: {
          args: { type: 'array', items: str },
          runnableArgs: { type: 'object', additionalProperties: { type: 'array', items: str } },
          env: { type: 'object', additionalProperties: str },
          instances: { type: 'object', additionalProperties: int },
        },
      },
    },
  },
  Stop: { type: 'object', additionalProperties: false, properties: { gracePeriodSeconds: { type: 'number', minimum: 0 } } },
  Empty: { type: 'object', additionalProperties: false },
  Scale: { type: 'object', additionalProperties: false, required: ['runnable', 'instances'], properties: { runnable: str, instances: { type: 'integer', minimum: 0 } } },
  Restart: { type: 'object', additionalProperties: false, required: ['runnable'], properties: { runnable: str, instances: { type: 'array', items: str } } },
  Command: { type: 'object', additionalProperties: false, required: ['command'], properties: { command: str, runnable: str, payload: str } },
  CreateToken: {
    type: 'object',
    additionalProperties: false,
    required: ['name', 'roles'],
    properties: { name: str, roles: { type: 'object', additionalProperties: { type: 'string', enum: ['viewer', 'operator', 'admin'] } } },
  },
};

export function buildOpenApi(routes: Route[]): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const params = [...r.path.matchAll(/\{([a-zA-Z]+)\}/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }));
    const responses: Record<string, unknown> = {};
    for (const [code, schema] of Object.entries(r.responses)) {
      const types = schema === 'Text' ? (r.produces ?? ['text/plain']) : ['application/json'];
      responses[code] = { description: schema === 'Error' ? 'an error (see error.code)' : 'success', content: Object.fromEntries(types.map((t) => [t, { schema: { $ref: `#/components/schemas/${schema}` } }])) };
    }
    paths[r.path] ??= {};
    paths[r.path][r.method.toLowerCase()] = {
      operationId: r.operationId,
      summary: r.summary,
      ...(r.role ? { security: [{ bearer: [] }], 'x-weft-role': r.role, ...(r.anyNamespace ? { 'x-weft-any-namespace': true } : {}) } : { security: [] }),
      parameters: [
        ...params,
        ...(r.query ?? []).map((q) => ({ name: q.name, in: 'query', required: false, description: q.description, schema: q.schema })),
        ...(r.operationId === 'startRun' ? [{ name: 'Idempotency-Key', in: 'header', required: false, description: 'a retried submission with the same key returns the same run', schema: { type: 'string' } }] : []),
        ...(r.operationId === 'watchRuns' ? [{ name: 'Last-Event-ID', in: 'header', required: false, description: 'resume after this event id', schema: { type: 'string' } }] : []),
      ],
      ...(r.requestSchema ? { requestBody: { required: false, content: { 'application/json': { schema: { $ref: `#/components/schemas/${r.requestSchema}` } } } } } : {}),
      responses,
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'weft master', version: '1', description: 'Runs of JVM programs on Kubernetes or the local machine: apps, runs, logs, watch. Errors are {"error": {"code", "message"}}.' },
    components: { schemas: COMPONENT_SCHEMAS, securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    security: [{ bearer: [] }],
    paths,
  };
}
