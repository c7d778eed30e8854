// Regression tests of issue 13, finding 3 (the embedded registry and untrusted
// clients): stalled and trickling bodies, one client taking every upload slot,
// wrong-password floods, malformed %-escapes, oversized chunked manifests,
// deletes (opt-in, and never leaving a manifest pointing at nothing), and a
// storage root that cannot be created.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { request, type IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { startRegistry, type RunningRegistry } from '../../src/registry/server/index.js';
import { waitFor } from '../support/wait.js';
import { errorCode, makeImage, pushBlob, pushImage, raw, run, sha256, tempDir, type RawResponse } from './helpers.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));


interface OpenRequest {
  /** Resolves with the response status, or with the socket error's code if the server cut the connection. */
  outcome: Promise<number | string>;
  write(data: Buffer | string): boolean;
  destroy(): void;
}

/** A request whose body the test sends by hand (from `localAddress`, to look like another client). */
function openRequest(base: string, method: string, path: string, headers: Record<string, string>, localAddress?: string): OpenRequest {
  const url = new URL(base);
  const req = request({ host: url.hostname, port: url.port, method, path, headers, agent: false, localAddress });
  const outcome = new Promise<number | string>((resolve) => {
    req.on('response', (res: IncomingMessage) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    req.on('close', () => resolve('closed'));
  });
  req.flushHeaders();
  return { outcome, write: (data) => req.write(data), destroy: () => req.destroy() };
}

async function withRegistry(options: Parameters<typeof startRegistry>[0], fn: (registry: RunningRegistry) => Promise<void>): Promise<void> {
  const dir = await tempDir('registry-hardening');
  const registry = await startRegistry({ logLevel: 'silent', ...options, root: join(dir.path, 'root') });
  try {
    await fn(registry);
  } finally {
    await registry.close();
    await dir.cleanup();
  }
}

async function newSession(base: string, repo: string, localAddress?: string): Promise<string> {
  const url = new URL(base);
  const location = await new Promise<string>((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, method: 'POST', path: `/v2/${repo}/blobs/uploads/`, agent: false, localAddress }, (res) => {
      res.resume();
      if (res.statusCode !== 202) reject(new Error(`POST upload answered ${res.statusCode}`));
      else resolve(String(res.headers.location));
    });
    req.on('error', reject);
    req.end();
  });
  return location;
}

test('a stalled upload body is cut off (408) and its upload slot is released', { timeout: 60_000 }, async () => {
  await withRegistry({ maxConcurrentUploads: 1, bodyIdleTimeoutMs: 300 }, async (registry) => {
    const location = await newSession(registry.url, 'stall/app');
    const stalled = openRequest(registry.url, 'PATCH', location, { 'Content-Length': '10' });
    stalled.write('12345'); // then nothing: the slot must not stay taken
    const freed = await waitFor('a free upload slot', async () => (await raw(registry.url, 'POST', '/v2/stall/other/blobs/uploads/')).status === 202, 10_000).catch(() => false);
    assert.ok(freed, 'the stalled upload kept the only upload slot');
    assert.equal(await stalled.outcome, 408);
    // the session itself is intact (the partial chunk was rolled back) and can be completed
    const data = Buffer.from('0123456789');
    const done = await raw(registry.url, 'PUT', `${location}?digest=${sha256(data)}`, { body: data, headers: { 'Content-Range': '0-9', 'Content-Length': '10' } });
    assert.equal(done.status, 201, done.body.toString());
  });
});

test('a trickling body (a byte now and then, never idle) is cut off by the minimum rate', { timeout: 60_000 }, async () => {
  await withRegistry({ bodyIdleTimeoutMs: 400, minBodyBytesPerSecond: 1000 }, async (registry) => {
    const location = await newSession(registry.url, 'trickle/app');
    const trickle = openRequest(registry.url, 'PATCH', location, { 'Content-Length': '100000' });
    let settled: number | string | undefined;
    void trickle.outcome.then((value) => (settled = value));
    // one byte every 50 ms for at most 5 s: far below 1000 bytes/s, never idle for 400 ms
    for (let i = 0; i < 100 && settled === undefined; i++) {
      trickle.write('x');
      await sleep(50);
    }
    trickle.destroy();
    assert.equal(settled, 408, `the trickling upload was not cut off (outcome: ${String(settled)})`);
  });
});

test('one client cannot take every upload slot: others still push', { timeout: 60_000 }, async () => {
  await withRegistry({ maxConcurrentUploads: 4, maxUploadsPerClient: 2, bodyIdleTimeoutMs: 60_000 }, async (registry) => {
    // the hostile client (127.0.0.2) opens four uploads and stalls them all
    const locations: string[] = [];
    for (let i = 0; i < 4; i++) locations.push(await newSession(registry.url, 'greedy/app', '127.0.0.2'));
    const stalls: OpenRequest[] = [];
    for (const location of locations) {
      const stall = openRequest(registry.url, 'PATCH', location, { 'Content-Length': '1000' }, '127.0.0.2');
      stall.write('x');
      stalls.push(stall);
      await sleep(50); // in order, so that the first two are the ones admitted
    }
    // the client is at its limit (2): more uploads from it are told to retry
    const url = new URL(registry.url);
    const refused = await new Promise<RawResponse>((resolve, reject) => {
      const req = request({ host: url.hostname, port: url.port, method: 'POST', path: `/v2/greedy/app/blobs/uploads/?digest=${sha256('y')}`, headers: { 'Content-Length': '1' }, agent: false, localAddress: '127.0.0.2' }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), json: () => JSON.parse(Buffer.concat(chunks).toString()) }));
      });
      req.on('error', reject);
      req.end('y');
    });
    assert.equal(refused.status, 429);
    assert.equal(errorCode(refused), 'TOOMANYREQUESTS');
    assert.match(refused.json().errors[0].message, /per-client limit/);
    // another client (127.0.0.1) pushes a whole image meanwhile
    const image = await makeImage(2, 20_000, 'fair');
    assert.equal(await pushImage(registry.url, 'fair/app', 'v1', image), 201);
    for (const stall of stalls) stall.destroy();
  });
});

test('a wrong-password flood gets 429 after the per-client budget; known good credentials still get in', { timeout: 120_000 }, async () => {
  const dir = await tempDir('registry-authflood');
  const file = join(dir.path, 'htpasswd');
  const made = await run('htpasswd', ['-B', '-C', '8', '-b', '-c', file, 'alice', 's3cret']);
  assert.equal(made.code, 0, made.stderr);
  const registry = await startRegistry({ root: join(dir.path, 'root'), htpasswd: file, logLevel: 'silent', authFailuresPerMinute: 5 });
  try {
    const url = new URL(registry.url);
    const get = (authorization: string, localAddress?: string) =>
      new Promise<RawResponse>((resolve, reject) => {
        const req = request({ host: url.hostname, port: url.port, path: '/v2/', headers: { Authorization: authorization }, agent: false, localAddress }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), json: () => JSON.parse(Buffer.concat(chunks).toString()) }));
        });
        req.on('error', reject);
        req.end();
      });
    // the good client logs in first (its credentials are then cached)
    assert.equal((await get(basic('alice', 's3cret'))).status, 200);
    // a client guessing one password after another: the budget (5) is checked, then 429 without bcrypt
    const guesses: number[] = [];
    for (let i = 0; i < 8; i++) guesses.push((await get(basic('alice', `guess-${i}`), '127.0.0.2')).status);
    assert.deepEqual(guesses, [401, 401, 401, 401, 401, 429, 429, 429]);
    const overBudget = await Promise.all(Array.from({ length: 40 }, (_, i) => get(basic('alice', `flood-${i}`), '127.0.0.2')));
    assert.deepEqual(new Set(overBudget.map((r) => r.status)), new Set([429]));
    assert.ok(overBudget.every((r) => errorCode(r) === 'TOOMANYREQUESTS' && Number(r.headers['retry-after']) >= 1));
    // a parallel flood from a fresh client: at most the budget plus the checks in flight are ever run
    const flood = await Promise.all(Array.from({ length: 40 }, (_, i) => get(basic('alice', `wrong-${i}`), '127.0.0.4')));
    const unauthorized = flood.filter((r) => r.status === 401).length;
    assert.equal(unauthorized + flood.filter((r) => r.status === 429).length, 40, `unexpected statuses: ${flood.map((r) => r.status).join(',')}`);
    assert.ok(unauthorized <= 5 + 2, `${unauthorized} wrong passwords were checked: the budget is 5 (+2 in flight)`);
    // the good client is unaffected, and good credentials already verified pass even from a limited address
    assert.equal((await get(basic('alice', 's3cret'))).status, 200);
    assert.equal((await get(basic('alice', 's3cret'), '127.0.0.2')).status, 200);
    // a third client with the right password (not yet cached for it, but cached globally) gets in
    assert.equal((await get(basic('alice', 's3cret'), '127.0.0.3')).status, 200);
  } finally {
    await registry.close();
    await dir.cleanup();
  }
});

test('malformed %-escapes in any path parameter are 400 with an OCI error, never a 500', { timeout: 60_000 }, async () => {
  const lines: string[] = [];
  const logger = pino({ level: 'warn' }, new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) }));
  await withRegistry({ logger, enableDelete: true }, async (registry) => {
    const digest = sha256('x');
    const cases: Array<[string, string]> = [];
    for (const bad of ['%ZZ', '%', '%E0%A4%A', 'sha256%3A%G1', `${digest}%`]) {
      for (const method of ['GET', 'HEAD', 'DELETE']) {
        cases.push([method, `/v2/esc/app/blobs/${bad}`]);
        cases.push([method, `/v2/esc/app/manifests/${bad}`]);
      }
      cases.push(['PUT', `/v2/esc/app/manifests/${bad}`]);
      cases.push(['GET', `/v2/esc/app/referrers/${bad}`]);
      cases.push(['PATCH', `/v2/esc/app/blobs/uploads/${bad}`]);
      cases.push(['GET', `/v2/esc%ZZ/app/blobs/${bad}`]);
      cases.push(['POST', `/v2/esc/app/blobs/uploads/?digest=${bad}`]);
      cases.push(['POST', `/v2/esc/app/blobs/uploads/?mount=${bad}&from=${bad}`]);
    }
    for (const [method, path] of cases) {
      const res = await raw(registry.url, method, path, method === 'PUT' || method === 'PATCH' || method === 'POST' ? { body: '{}' } : {});
      assert.ok(res.status >= 400 && res.status < 500, `${method} ${path} answered ${res.status}`);
      if (method !== 'HEAD') assert.ok(errorCode(res), `${method} ${path}: no OCI error body: ${res.body.toString()}`);
    }
    const blobPath = await raw(registry.url, 'GET', '/v2/esc/app/blobs/%ZZ');
    assert.equal(blobPath.status, 400);
    assert.equal(errorCode(blobPath), 'DIGEST_INVALID');
    assert.equal((await raw(registry.url, 'GET', '/v2/esc/app/manifests/%ZZ')).status, 400);
    assert.deepEqual(lines.filter((l) => l.includes('request failed')), [], 'a client mistake was logged as a server error');
  });
});

/**
 * A client that sends its whole request before reading the answer (as Python's
 * http.client and many simple clients do), over a raw socket: `total` bytes as a
 * chunked body or with Content-Length. A server that answers early and closes
 * while the body is still arriving makes it fail with EPIPE/ECONNRESET.
 */
function sendWholeThenRead(base: string, path: string, total: number, chunked: boolean): Promise<{ status: number | string; body: string }> {
  const url = new URL(base);
  return new Promise((resolve) => {
    const socket = connect(Number(url.port), url.hostname);
    let received = '';
    let failed: string | undefined;
    socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
    socket.on('error', (error: NodeJS.ErrnoException) => (failed ??= error.code ?? error.message));
    socket.on('close', () => {
      if (failed) return resolve({ status: failed, body: '' });
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(received)?.[1] ?? NaN);
      const body = received.slice(received.indexOf('\r\n\r\n') + 4);
      resolve({ status, body });
    });
    const head = `PUT ${path} HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n${chunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${total}`}\r\n\r\n`;
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    const frame = chunked ? Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]) : chunk;
    socket.write(head);
    let sent = 0;
    const pump = (): void => {
      while (sent < total && !failed) {
        sent += chunk.length;
        if (!socket.write(frame)) {
          socket.once('drain', pump);
          return;
        }
      }
      if (!failed && chunked) socket.write('0\r\n\r\n');
    };
    pump();
  });
}

test('an oversized manifest, chunked or with Content-Length, is answered 413, not a connection reset', { timeout: 60_000 }, async () => {
  await withRegistry({ maxManifestBytes: 64 * 1024 }, async (registry) => {
    for (const chunked of [true, false]) {
      const result = await sendWholeThenRead(registry.url, '/v2/big/app/manifests/v1', 10 * 1024 * 1024, chunked);
      assert.equal(result.status, 413, `${chunked ? 'chunked' : 'Content-Length'}: ${result.body}`);
      // the chunked answer body may itself be chunked: find the JSON inside
      assert.match(result.body, /"code":"MANIFEST_INVALID"/);
    }
    // and the registry still serves
    assert.equal((await raw(registry.url, 'GET', '/v2/')).status, 200);
  });
});

test('deletes are off by default (405 UNSUPPORTED, nothing removed); upload cancel still works', { timeout: 60_000 }, async () => {
  await withRegistry({}, async (registry) => {
    const image = await makeImage(1, 4096, 'nodelete');
    assert.equal(await pushImage(registry.url, 'keep/app', 'v1', image), 201);
    for (const path of [`/v2/keep/app/manifests/${image.manifestDigest}`, '/v2/keep/app/manifests/v1', `/v2/keep/app/blobs/${image.layerDigests[0]}`]) {
      const res = await raw(registry.url, 'DELETE', path);
      assert.equal(res.status, 405, path);
      assert.equal(errorCode(res), 'UNSUPPORTED', path);
    }
    assert.equal((await raw(registry.url, 'GET', '/v2/keep/app/manifests/v1')).status, 200);
    assert.equal((await raw(registry.url, 'GET', `/v2/keep/app/blobs/${image.layerDigests[0]}`)).status, 200);
    const location = await newSession(registry.url, 'keep/app');
    assert.equal((await raw(registry.url, 'DELETE', location)).status, 204);
  });
});

test('a blob or index child still referenced by a manifest cannot be deleted (409); it can once the manifests are gone', { timeout: 60_000 }, async () => {
  await withRegistry({ enableDelete: true }, async (registry) => {
    const base = registry.url;
    const image = await makeImage(2, 4096, 'refs');
    assert.equal(await pushImage(base, 'ref/app', 'v1', image), 201);
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: image.manifestDigest, size: image.manifest.length, platform: { os: 'linux', architecture: 'amd64' } }],
      }),
    );
    assert.equal((await raw(base, 'PUT', '/v2/ref/app/manifests/multi', { body: index, headers: { 'Content-Type': 'application/vnd.oci.image.index.v1+json' } })).status, 201);

    for (const digest of [image.configDigest, ...image.layerDigests]) {
      const refused = await raw(base, 'DELETE', `/v2/ref/app/blobs/${digest}`);
      assert.equal(refused.status, 409, digest);
      assert.equal(errorCode(refused), 'DENIED');
      assert.deepEqual(refused.json().errors[0].detail.manifests, [image.manifestDigest]);
    }
    const child = await raw(base, 'DELETE', `/v2/ref/app/manifests/${image.manifestDigest}`);
    assert.equal(child.status, 409);
    assert.deepEqual(child.json().errors[0].detail.manifests, [sha256(index)]);
    // everything the index names is still there
    assert.equal((await raw(base, 'GET', `/v2/ref/app/manifests/${image.manifestDigest}`)).status, 200);
    for (const digest of [image.configDigest, ...image.layerDigests]) assert.equal((await raw(base, 'GET', `/v2/ref/app/blobs/${digest}`)).status, 200);

    // a blob no manifest names is deleted at once
    const loose = await pushBlob(base, 'ref/app', randomBytes(100));
    assert.equal((await raw(base, 'DELETE', `/v2/ref/app/blobs/${loose.digest}`)).status, 202);
    // top down: index, manifest, then its blobs
    assert.equal((await raw(base, 'DELETE', `/v2/ref/app/manifests/${sha256(index)}`)).status, 202);
    assert.equal((await raw(base, 'DELETE', `/v2/ref/app/manifests/${image.manifestDigest}`)).status, 202);
    for (const digest of [image.configDigest, ...image.layerDigests]) {
      assert.equal((await raw(base, 'DELETE', `/v2/ref/app/blobs/${digest}`)).status, 202);
      assert.equal((await raw(base, 'HEAD', `/v2/ref/app/blobs/${digest}`)).status, 404);
    }
    // a blob referenced in another repository only is that repository's business
    assert.equal(await pushImage(base, 'ref/one', 'v1', image), 201);
    assert.equal((await pushBlob(base, 'ref/two', image.layers[0])).status, 201);
    assert.equal((await raw(base, 'DELETE', `/v2/ref/two/blobs/${image.layerDigests[0]}`)).status, 202);
    assert.equal((await raw(base, 'GET', `/v2/ref/one/blobs/${image.layerDigests[0]}`)).status, 200);
  });
});

test('`weft registry serve --root` on a folder that cannot be created fails at once with a clear error', { timeout: 60_000 }, async () => {
  for (const root of ['/proc/1/nope', '/proc/self/nope/deeper', '/dev/null/nope']) {
    const result = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [cli, 'registry', 'serve', '--root', root, '--addr', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      // a hang is the bug: kill it after 20 s and let the assertions say so
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, stderr });
      });
    });
    assert.equal(result.signal, null, `serve --root ${root} hung and was killed`);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, new RegExp(`cannot create the registry storage in ${root.replace(/\//g, '\\/')}.*pass --root with a writable folder`));
  }
});

test('bcrypt checks run on a worker in turn across clients: addresses that logged in before first, then new ones, then those with failed logins', { timeout: 60_000 }, async () => {
  const { BcryptPool, Priority } = await import('../../src/registry/server/auth.js');
  const { hashSync } = await import('bcryptjs');
  const hash = hashSync('right', 4);
  const pool = new BcryptPool(1, 2);
  try {
    const order: string[] = [];
    const check = (client: string, password: string, suspect: boolean) => pool.verify(client, password, hash, suspect ? Priority.suspect : Priority.unknown).then((ok) => order.push(`${client}:${ok}`));
    // one worker: the first job runs at once, the rest queue
    const jobs = [check('a', 'x1', true), check('b', 'y1', true), check('b', 'y2', true), check('a', 'x2', true), check('newcomer', 'right', false)];
    // a third pending check from one client is refused at once
    await assert.rejects(pool.verify('a', 'x3', hash, Priority.suspect), (error: Error & { status?: number }) => error.status === 429);
    const known = pool.verify('known', 'right', hash, Priority.trusted).then((ok) => order.push(`known:${ok}`));
    await Promise.all([...jobs, known]);
    // an address that logged in before goes first, then newcomers, then the suspects, who take turns (a's second check before b's second)
    assert.deepEqual(order, ['a:false', 'known:true', 'newcomer:true', 'b:false', 'a:false', 'b:false']);
  } finally {
    await pool.close();
  }
});
