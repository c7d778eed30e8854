// The API's contract without running programs: the OpenAPI document against
// the implementation, tokens and roles endpoint by endpoint (401/403), bad
// input (400/413/415), and no secrets in records or errors.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs, statSync } from 'node:fs';
import path from 'node:path';
import { call, startTestMaster, type TestMaster } from './helpers.js';

type Schema = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** A small JSON Schema checker (the subset the document uses): returns the problems found. */
function check(schema: Schema, value: unknown, doc: Schema, where = '$'): string[] {
  if (schema.$ref) return check(doc.components.schemas[(schema.$ref as string).split('/').pop()!], value, doc, where);
  if (schema.allOf) return (schema.allOf as Schema[]).flatMap((s) => check(s, value, doc, where));
  const problems: string[] = [];
  const type = schema.type as string | undefined;
  const actual = Array.isArray(value) ? 'array' : value === null ? 'null' : Number.isInteger(value) ? 'integer' : typeof value;
  if (type && !(type === actual || (type === 'number' && actual === 'integer'))) return [`${where}: expected ${type}, got ${actual}`];
  if (schema.enum && !(schema.enum as unknown[]).includes(value)) problems.push(`${where}: ${JSON.stringify(value)} not in ${JSON.stringify(schema.enum)}`);
  if (schema.format === 'date-time' && typeof value === 'string' && Number.isNaN(Date.parse(value))) problems.push(`${where}: not a date-time`);
  if (actual === 'object') {
    const obj = value as Record<string, unknown>;
    for (const r of (schema.required as string[] | undefined) ?? []) if (!(r in obj)) problems.push(`${where}.${r}: required`);
    for (const [k, s] of Object.entries((schema.properties as Record<string, Schema> | undefined) ?? {})) if (obj[k] !== undefined) problems.push(...check(s, obj[k], doc, `${where}.${k}`));
  }
  if (actual === 'array' && schema.items) (value as unknown[]).forEach((v, i) => problems.push(...check(schema.items as Schema, v, doc, `${where}[${i}]`)));
  return problems;
}

const fill = (p: string, values: Record<string, string>) => p.replace(/\{(\w+)\}/g, (_, k: string) => values[k] ?? 'x');
const validSpec = { name: 'sec-app', runnables: [{ name: 'main', kind: 'batch', image: 'oci:/nonexistent/layout:1', args: ['batch'] }] };

describe('the master API contract and security', () => {
  let t: TestMaster;
  let base: string;
  let admin: string;
  let doc: Schema;
  const tokens: Record<string, string> = {};

  before(async () => {
    t = await startTestMaster();
    base = t.master.url;
    admin = t.adminToken;
    doc = (await call(base, 'GET', '/api/v1/openapi.json')).json;
    for (const [name, roles] of Object.entries({
      viewerA: { 'team-a': 'viewer' },
      operatorA: { 'team-a': 'operator' },
      adminA: { 'team-a': 'admin' },
    })) {
      const r = await call(base, 'POST', '/api/v1/tokens', { token: admin, body: { name, roles } });
      assert.equal(r.status, 201, r.text);
      tokens[name] = r.json.token;
    }
  });
  after(async () => {
    await t?.close();
  });

  test('the admin token file is written once with mode 0600 and read on restart', async () => {
    assert.equal(statSync(t.tokenFile).mode & 0o777, 0o600);
    assert.equal(t.master.adminTokenCreated, true);
    assert.match(admin, /^weft_[A-Za-z0-9_-]{43}$/);
    await t.restart();
    base = t.master.url;
    assert.equal(t.master.adminTokenCreated, false);
    assert.equal((await fs.readFile(t.tokenFile, 'utf8')).trim(), admin);
    assert.equal((await call(base, 'GET', '/api/v1/tokens', { token: admin })).status, 200, 'the same admin token works after a restart');
  });

  test('healthz, readyz, metrics and the OpenAPI document answer without a token', async () => {
    assert.deepEqual((await call(base, 'GET', '/healthz')).json, { status: 'ok' });
    assert.deepEqual((await call(base, 'GET', '/readyz')).json, { status: 'ready', leader: true });
    const metrics = await call(base, 'GET', '/metrics');
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers.get('content-type') ?? '', /text\/plain/);
    assert.match(metrics.text, /^weft_master_runs\{state="RUNNING"\} \d+$/m);
    assert.match(metrics.text, /weft_master_http_request_duration_seconds_bucket\{/);
    assert.match(metrics.text, /# TYPE weft_master_reconciler_actions_total counter/);
    assert.equal(doc.openapi, '3.1.0');
    assert.ok(Object.keys(doc.paths).length >= 15);
  });

  test('every documented operation answers with a documented status and a body matching its schema', async () => {
    const put = await call(base, 'PUT', '/api/v1/namespaces/team-a/apps/sec-app', { token: admin, body: { spec: validSpec } });
    assert.equal(put.status, 201, put.text);
    const started = await call(base, 'POST', '/api/v1/namespaces/team-a/runs', { token: admin, body: { app: 'sec-app' } });
    assert.equal(started.status, 201, started.text);
    // The image does not exist: the runtime refuses it, and the record says so.
    assert.equal(started.json.state, 'FAILED');
    assert.match(started.json.message, /cannot pull image oci:\/nonexistent\/layout:1/);
    const runId = started.json.id as string;
    const bodies: Record<string, unknown> = { putApp: { spec: validSpec }, startRun: { spec: validSpec }, scaleRun: { runnable: 'main', instances: 1 }, restartInstances: { runnable: 'main' }, sendCommand: { command: 'hello' }, createToken: { name: 'x', roles: { 'team-a': 'viewer' } } };
    let checked = 0;
    for (const [p, ops] of Object.entries(doc.paths as Record<string, Record<string, Schema>>)) {
      for (const [method, op] of Object.entries(ops)) {
        if (op.operationId === 'watchRuns' || (op.operationId === 'runLogs')) continue; // streams: tested below
        const url = fill(p, { namespace: 'team-a', app: 'sec-app', run: runId, token: 'tok-none' });
        const body = bodies[op.operationId] ?? (op.requestBody ? {} : undefined);
        const r = await call(base, method.toUpperCase(), url, { token: admin, body });
        const documented = op.responses[String(r.status)];
        assert.ok(documented, `${method.toUpperCase()} ${p} answered ${r.status}, which is not documented: ${r.text}`);
        const media = Object.keys(documented.content)[0];
        if (media === 'application/json') {
          assert.deepEqual(check(documented.content[media].schema, r.json, doc), [], `${op.operationId} ${r.status}: ${r.text.slice(0, 300)}`);
        } else {
          assert.ok(r.headers.get('content-type')?.startsWith(media.split(';')[0]), `${op.operationId}: content-type ${r.headers.get('content-type')}`);
        }
        checked++;
      }
    }
    assert.ok(checked >= 18, `checked ${checked} operations`);
    const logs = await call(base, 'GET', `/api/v1/namespaces/team-a/runs/${runId}/logs?format=json`, { token: admin });
    assert.equal(logs.status, 200);
    assert.ok(doc.paths['/api/v1/namespaces/{namespace}/runs/{run}/logs'].get.responses['200'].content['application/x-ndjson']);
  });

  test('every endpoint that needs a token refuses none or a bad one (401), and a role too small or in another namespace (403)', async () => {
    const roleRank: Record<string, number> = { viewer: 1, operator: 2, admin: 3 };
    let checked = 0;
    for (const [p, ops] of Object.entries(doc.paths as Record<string, Record<string, Schema>>)) {
      for (const [method, op] of Object.entries(ops)) {
        const needed = op['x-weft-role'] as string | undefined;
        const M = method.toUpperCase();
        const inA = fill(p, { namespace: 'team-a', app: 'sec-app', run: 'no-such-run', token: 'tok-none' });
        const inB = fill(p, { namespace: 'team-b', app: 'sec-app', run: 'no-such-run', token: 'tok-none' });
        const body = op.requestBody ? {} : undefined;
        if (!needed) {
          assert.equal((await call(base, M, inA)).status, 200, `${M} ${p} answers without a token`);
          continue;
        }
        for (const bad of [undefined, 'weft_not-a-real-token', `${admin}x`]) {
          const r = await call(base, M, inA, { token: bad, body });
          assert.equal(r.status, 401, `${M} ${p} with ${bad ? 'a bad' : 'no'} token: ${r.text}`);
          assert.equal(r.json.error.code, 'unauthorized');
        }
        const basic = await call(base, M, inA, { body, headers: { authorization: `Basic ${Buffer.from(`u:${admin}`).toString('base64')}` } });
        assert.equal(basic.status, 401, 'only Bearer tokens count');
        for (const [name, role] of [['viewerA', 'viewer'], ['operatorA', 'operator'], ['adminA', 'admin']] as const) {
          const own = await call(base, M, inA, { token: tokens[name], body, statusOnly: op.operationId === 'watchRuns' });
          // Global routes need admin on "*", except those any token may call (whoami).
          const enough = p.includes('{namespace}') || op['x-weft-any-namespace'] ? roleRank[role] >= roleRank[needed] : false;
          if (enough) assert.notEqual(own.status, 403, `${name} may ${op.operationId} in team-a: ${own.text}`);
          else {
            assert.equal(own.status, 403, `${name} may not ${op.operationId}: ${own.text}`);
            assert.equal(own.json.error.code, 'forbidden');
          }
          if (p.includes('{namespace}')) {
            const other = await call(base, M, inB, { token: tokens[name], body, statusOnly: op.operationId === 'watchRuns' });
            assert.equal(other.status, 403, `${name} has no role in team-b (${op.operationId}): ${other.text}`);
          }
        }
        checked++;
      }
    }
    assert.ok(checked >= 17, `checked ${checked} endpoints`);
    const forbidden = (await call(base, 'GET', '/api/v1/namespaces/team-b/audit', { token: admin })).json.items as Array<{ outcome: string }>;
    assert.ok(forbidden.some((a) => a.outcome === 'forbidden'), 'refusals are audited');
  });

  test("another namespace's run is not found through this namespace's path", async () => {
    const started = await call(base, 'POST', '/api/v1/namespaces/team-b/runs', { token: admin, body: { spec: { ...validSpec, name: 'other-ns' } } });
    assert.equal(started.status, 201);
    const viaA = await call(base, 'GET', `/api/v1/namespaces/team-a/runs/${started.json.id}`, { token: tokens.adminA });
    assert.equal(viaA.status, 404);
    assert.equal(viaA.json.error.code, 'not_found');
    const viaB = await call(base, 'GET', `/api/v1/namespaces/team-b/runs/${started.json.id}`, { token: tokens.adminA });
    assert.equal(viaB.status, 403);
    const listA = await call(base, 'GET', '/api/v1/namespaces/team-a/runs?limit=1000', { token: tokens.viewerA });
    assert.ok(!listA.json.items.some((r: { id: string }) => r.id === started.json.id));
  });

  test('bad input gets a clear 400/413/415 and stores nothing', async () => {
    const before = (await call(base, 'GET', '/api/v1/namespaces/team-bad/runs', { token: admin })).json.items.length;
    const post = (body: { body?: unknown; rawBody?: string | Buffer; headers?: Record<string, string> }) => call(base, 'POST', '/api/v1/namespaces/team-bad/runs', { token: admin, ...body });
    const cases: Array<[string, Promise<Awaited<ReturnType<typeof call>>>, number, string, RegExp]> = [
      ['malformed JSON', post({ rawBody: '{"spec": ' }), 400, 'invalid_request', /not valid JSON/],
      ['unknown top-level field', post({ body: { spec: validSpec, colour: 'red' } }), 400, 'invalid_request', /unknown field\(s\) "colour"/],
      ['unknown override field', post({ body: { spec: validSpec, overrides: { cpus: 3 } } }), 400, 'invalid_request', /overrides: unknown field\(s\) "cpus"/],
      ['neither app nor spec', post({ body: {} }), 400, 'invalid_request', /either app .* or spec/],
      ['bad value', post({ body: { spec: validSpec, overrides: { instances: { main: -1 } } } }), 400, 'invalid_request', /overrides\.instances\.main/],
      ['malformed spec', post({ body: { spec: { name: 'Bad Name!', runnables: [] } } }), 400, 'invalid_spec', /invalid app spec/],
      ['unknown field in the spec', post({ body: { spec: { ...validSpec, extra: 1 } } }), 400, 'invalid_spec', /unknown field\(s\) "extra"/],
      ['override of a runnable that does not exist', post({ body: { spec: validSpec, overrides: { instances: { nope: 2 } } } }), 400, 'invalid_request', /runnable "nope"/],
      ['a stored app that does not exist', post({ body: { app: 'missing' } }), 404, 'not_found', /no app missing/],
      ['a huge body', post({ rawBody: Buffer.alloc(2 << 20, 0x20) }), 413, 'body_too_large', /at most 1048576/],
      ['not JSON', post({ rawBody: 'spec=1', headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type', /application\/json/],
      ['a JSON array', post({ rawBody: '[1,2]' }), 400, 'invalid_request', /Expected object, received array/],
    ];
    for (const [what, reply, status, code, message] of cases) {
      const r = await reply;
      assert.equal(r.status, status, `${what}: ${r.text}`);
      assert.equal(r.json.error.code, code, what);
      assert.match(r.json.error.message, message, what);
    }
    const list = (q: string) => call(base, 'GET', `/api/v1/namespaces/team-bad/runs${q}`, { token: admin });
    for (const [q, message] of [
      ['?limit=0', /limit/],
      ['?limit=abc', /limit: a whole number/],
      ['?state=SLEEPING', /state/],
      ['?since=yesterday', /RFC 3339/],
      ['?colour=red', /unknown field\(s\) "colour"/],
      ['?continue=bogus', /continue token/],
    ] as const) {
      const r = await list(q);
      assert.equal(r.status, 400, `${q}: ${r.text}`);
      assert.match(r.json.error.message, message, q);
    }
    const logsQ = await call(base, 'GET', '/api/v1/namespaces/team-a/runs/no-such-run/logs?before=5&follow=true', { token: admin });
    assert.equal(logsQ.status, 400, logsQ.text);
    assert.match(logsQ.json.error.message, /before .* cannot be combined with follow/);
    const counts = await call(base, 'GET', '/api/v1/namespaces/team-bad/run-counts?state=FAILED', { token: admin });
    assert.equal(counts.status, 400);
    assert.match(counts.json.error.message, /unknown field\(s\) "state"/);
    const r404 = await call(base, 'GET', '/api/v1/nothing-here', { token: admin });
    assert.equal(r404.json.error.code, 'not_found');
    const r405 = await call(base, 'DELETE', '/api/v1/namespaces/team-a/runs', { token: admin });
    assert.equal(r405.status, 405);
    const badNs = await call(base, 'GET', '/api/v1/namespaces/Team_A/runs', { token: admin });
    assert.equal(badNs.status, 400);
    assert.equal((await call(base, 'GET', '/api/v1/namespaces/team-bad/runs', { token: admin })).json.items.length, before, 'nothing stored');
    assert.deepEqual((await call(base, 'GET', '/healthz')).json, { status: 'ok' }, 'still serving');
  });

  test('whoami names the calling token and its roles, for any valid token', async () => {
    const viewer = await call(base, 'GET', '/api/v1/whoami', { token: tokens.viewerA });
    assert.equal(viewer.status, 200, viewer.text);
    assert.equal(viewer.json.name, 'viewerA');
    assert.deepEqual(viewer.json.roles, { 'team-a': 'viewer' });
    assert.equal(viewer.json.token, undefined, 'never the token itself');
    assert.equal((await call(base, 'GET', '/api/v1/whoami', { token: admin })).json.roles['*'], 'admin');
  });

  test('the dashboard is served at / with its own files only; the API stays JSON', async () => {
    const page = await call(base, 'GET', '/');
    // The page exists once scripts/setup built it (dist/dashboard); the API never depends on it.
    assert.equal(page.status, 200, `GET / (run scripts/setup to build the dashboard): ${page.text}`);
    assert.match(page.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    assert.equal(page.headers.get('x-frame-options'), 'DENY');
    const js = /src="(\/assets\/[^"]+\.js)"/.exec(page.text)?.[1];
    assert.ok(js, page.text);
    const gz = await fetch(`${base}${js}`, { headers: { 'accept-encoding': 'gzip' } });
    assert.equal(gz.status, 200);
    assert.match(gz.headers.get('cache-control') ?? '', /immutable/);
    for (const bad of ['/assets/../../../etc/passwd', '/assets/%2e%2e/%2e%2e/package.json', '/assets/nope.js']) {
      const r = await call(base, 'GET', bad);
      assert.equal(r.status, 404, bad);
      assert.equal(r.json.error.code, 'not_found');
    }
    assert.equal((await call(base, 'POST', '/')).status, 404, 'only GET and HEAD reach the page');
  });

  test('idempotency keys return the same run for a retried submission', async () => {
    const first = await call(base, 'POST', '/api/v1/namespaces/team-i/runs', { token: admin, body: { spec: validSpec }, headers: { 'idempotency-key': 'retry-1' } });
    const again = await call(base, 'POST', '/api/v1/namespaces/team-i/runs', { token: admin, body: { spec: validSpec }, headers: { 'idempotency-key': 'retry-1' } });
    assert.equal(first.status, 201);
    assert.equal(again.status, 200);
    assert.equal(again.json.id, first.json.id);
    assert.equal((await call(base, 'GET', '/api/v1/namespaces/team-i/runs', { token: admin })).json.items.length, 1);
  });

  test('no token appears in records, errors or the store file', async () => {
    const everything = [
      JSON.stringify((await call(base, 'GET', '/api/v1/namespaces/team-a/audit', { token: admin })).json),
      JSON.stringify((await call(base, 'GET', '/api/v1/tokens', { token: admin })).json),
      (await call(base, 'GET', '/api/v1/namespaces/team-a/runs', { token: `${admin}x` })).text,
      (await fs.readFile(path.join(t.dir, 'master.db'))).toString('latin1'),
      await fs.readFile(path.join(t.dir, 'master.db-wal')).then((b) => b.toString('latin1'), () => ''),
    ].join('\n');
    for (const secret of [admin, ...Object.values(tokens)]) assert.ok(!everything.includes(secret), 'a token leaked');
  });
});
