// Retries against a real registry behind a flaky proxy, and the rule that
// credentials never travel over plain HTTP to a non-loopback host.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRemoteTransport, InsecureTransportError, isLoopbackHost, mayCarryCredentials, parseChallenges, plainHttpAllowed } from '../../src/registry/client/index.js';
import { parseDockerReference } from '../../src/image/reference.js';
import { blobPushes, startDistribution, startProxy, syntheticImage, type Distribution, type SyntheticImage } from './helpers.js';

let registry: Distribution;
let image: SyntheticImage;

before(async () => {
  registry = await startDistribution();
  image = await syntheticImage([
    { name: 'a', size: 300_000, seed: 'flaky-a' },
    { name: 'b', size: 200_000, seed: 'flaky-b' },
  ]);
});
after(async () => {
  await registry?.close();
});

test('push survives 503s, 429s and dropped connections (re-opening the blob stream)', async () => {
  let failures = 0;
  const kinds = new Set<string>();
  const inject = <T extends string | number>(kind: T): T => {
    failures++;
    kinds.add(String(kind));
    return kind;
  };
  const proxy = await startProxy(registry, (req, i) => {
    if (failures >= 8) return undefined;
    // Requests fail in turn: 503 on HEAD, dropped connection on POST, 429 or a cut-off body on blob PUT.
    if (req.method === 'HEAD' && i % 3 === 0) return inject(503);
    if (req.method === 'POST' && !kinds.has('drop')) return inject('drop');
    if (req.method === 'PUT' && req.url?.includes('/blobs/uploads/')) return inject(kinds.has('drop-midway') ? 429 : 'drop-midway');
    return undefined;
  });
  const retries: string[] = [];
  const client = createRemoteTransport({ retryBaseMs: 10, onExchange: (e) => e.method === 'RETRY' && retries.push(e.url) });
  try {
    const result = await client.push(image, parseDockerReference(`${proxy.host}/flaky/app:1`));
    assert.equal(result.digest, image.manifestDigest);
    assert.deepEqual([...kinds].sort(), ['429', '503', 'drop', 'drop-midway'], `faults injected: ${[...kinds].join(', ')}`);
    assert.ok(retries.length >= 4, `client retried: ${retries.join(', ')}`);
    const pulled = await client.open(parseDockerReference(`${registry.host}/flaky/app:1`));
    assert.equal(pulled.manifestDigest, image.manifestDigest);
    for (const layer of pulled.manifest.layers) {
      for await (const _ of await pulled.openBlob(layer)) void _; // verifies digest of each stored blob
    }
  } finally {
    client.close();
    await proxy.close();
  }
});

test('a registry that keeps failing gives up after the retry budget with a clear error', async () => {
  const proxy = await startProxy(registry, () => 503);
  const client = createRemoteTransport({ retryBaseMs: 5, retries: 2 });
  try {
    await assert.rejects(client.push(image, parseDockerReference(`${proxy.host}/down/app:1`)), /503.*after 3 attempts|after 3 attempts/);
    assert.equal(blobPushes(proxy.requests).length, 0);
  } finally {
    client.close();
    await proxy.close();
  }
});

/** A fake registry on loopback that we reach under a non-loopback name (like curl --resolve). */
async function challengeServer(challenge: (port: number) => string) {
  const seen: Array<{ url: string; authorization?: string }> = [];
  const server = http.createServer((req, res) => {
    seen.push({ url: req.url ?? '', authorization: req.headers.authorization });
    req.resume();
    if (req.url?.startsWith('/token')) {
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ token: 'anonymous-token' }));
      return;
    }
    res.writeHead(401, { 'WWW-Authenticate': challenge((server.address() as AddressInfo).port), 'Content-Type': 'application/json' });
    res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return { port, seen, close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

test('credentials are never sent over plain HTTP to a non-loopback host (Basic)', async () => {
  const fake = await challengeServer(() => 'Basic realm="fake"');
  const host = `registry.example.test:${fake.port}`;
  const client = createRemoteTransport({
    insecureRegistries: [host],
    resolve: { 'registry.example.test': '127.0.0.1' },
    credentials: { [host]: { username: 'alice', password: 'secret' } },
    retries: 0,
  });
  try {
    await assert.rejects(client.open(parseDockerReference(`${host}/team/app:1`)), (error: unknown) => {
      assert.ok(error instanceof InsecureTransportError, String(error));
      assert.match((error as Error).message, /refusing to send credentials .* over plain HTTP/);
      return true;
    });
    assert.ok(fake.seen.length > 0, 'the fake registry was reached over plain HTTP');
    assert.ok(fake.seen.every((s) => s.authorization === undefined), JSON.stringify(fake.seen));
  } finally {
    client.close();
    await fake.close();
  }
});

test('credentials are never sent over plain HTTP to a non-loopback token realm (Bearer)', async () => {
  const fake = await challengeServer((port) => `Bearer realm="http://auth.example.test:${port}/token",service="fake",scope="repository:team/app:pull"`);
  const host = `registry.example.test:${fake.port}`;
  const client = createRemoteTransport({
    insecureRegistries: [host],
    resolve: { 'registry.example.test': '127.0.0.1', 'auth.example.test': '127.0.0.1' },
    credentials: { [host]: { username: 'alice', password: 'secret' } },
    retries: 0,
  });
  try {
    await assert.rejects(client.open(parseDockerReference(`${host}/team/app:1`)), InsecureTransportError);
    assert.ok(fake.seen.every((s) => s.authorization === undefined), JSON.stringify(fake.seen));
  } finally {
    client.close();
    await fake.close();
  }
});

test('a non-loopback host not marked insecure is never spoken to over plain HTTP', async () => {
  const fake = await challengeServer(() => 'Basic realm="fake"');
  const client = createRemoteTransport({ resolve: { 'registry.example.test': '127.0.0.1' }, retries: 0, env: {} });
  try {
    await assert.rejects(client.open(parseDockerReference(`registry.example.test:${fake.port}/team/app:1`)), /--insecure-registry/);
    assert.equal(fake.seen.length, 0, 'no plain HTTP request reached the server');
  } finally {
    client.close();
    await fake.close();
  }
});

test('policy: loopback detection, insecure list, credential carriage', () => {
  for (const h of ['127.0.0.1:5000', '127.1.2.3', 'localhost:5000', '[::1]:5000', 'foo.localhost']) assert.ok(isLoopbackHost(h), h);
  for (const h of ['10.0.0.1', 'registry.example.test:5000', '128.0.0.1', 'localhost.example.com']) assert.ok(!isLoopbackHost(h), h);
  assert.ok(plainHttpAllowed('reg.test:5000', ['reg.test:5000']));
  assert.ok(plainHttpAllowed('reg.test:5000', ['reg.test']));
  assert.ok(!plainHttpAllowed('reg.test:5000', []));
  assert.ok(!mayCarryCredentials(new URL('http://reg.test:5000/v2/')));
  assert.ok(mayCarryCredentials(new URL('http://127.0.0.1:5000/v2/')));
  assert.ok(mayCarryCredentials(new URL('https://reg.test/v2/')));
});

test('WWW-Authenticate parsing: Bearer params, quoted commas, several challenges', () => {
  const [bearer] = parseChallenges('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"');
  assert.deepEqual(bearer, { scheme: 'bearer', params: { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:a/b:pull,push' } });
  const two = parseChallenges('Basic realm="x", Bearer realm="https://t/token", service=svc');
  assert.deepEqual(two.map((c) => c.scheme), ['basic', 'bearer']);
  assert.equal(two[1]!.params.service, 'svc');
});

test('bearer token refreshed once on 401 (expired or revoked token)', async () => {
  let issued = 0;
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    req.resume();
    const port = (server.address() as AddressInfo).port;
    if (req.url?.startsWith('/token')) {
      issued++;
      res.writeHead(200).end(JSON.stringify({ access_token: `t${issued}`, expires_in: 3600 }));
      return;
    }
    seen.push(`${req.method} ${req.url} ${req.headers.authorization ?? '-'}`);
    // Only the second token is accepted: the first one is "revoked".
    if (req.headers.authorization !== 'Bearer t2') {
      res.writeHead(401, { 'WWW-Authenticate': `Bearer realm="http://127.0.0.1:${port}/token",service="s"` }).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ name: 'x', tags: ['one'] }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  const client = createRemoteTransport({ retries: 0, env: {} });
  try {
    assert.deepEqual(await client.listTags(host, 'x'), ['one']);
    assert.equal(issued, 2);
    assert.deepEqual(seen.slice(-2).map((s) => s.split(' ').pop()), ['t1', 't2']);
  } finally {
    client.close();
    await new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); });
  }
});

test('relative Location headers are resolved against the URL of the request that returned them', async () => {
  const puts: string[] = [];
  const stored = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    let size = 0;
    req.on('data', (c: Buffer) => (size += c.length));
    req.on('end', () => {
      if (url.pathname === '/v2/') return void res.writeHead(200).end('{}');
      if (req.method === 'HEAD') return void res.writeHead(404).end();
      if (req.method === 'POST' && url.pathname === '/v2/rel/app/blobs/uploads/') {
        // Relative to the request path, no leading slash: /v2/rel/app/blobs/uploads/session-N
        return void res.writeHead(202, { Location: `session-${puts.length}?state=abc` }).end();
      }
      if (req.method === 'PUT' && url.pathname.startsWith('/v2/rel/app/blobs/uploads/session-')) {
        puts.push(`${url.pathname}?${url.searchParams}`);
        stored.set(url.searchParams.get('digest') ?? '', size);
        return void res.writeHead(201, { Location: `/v2/rel/app/blobs/${url.searchParams.get('digest')}` }).end();
      }
      if (req.method === 'PUT' && url.pathname === '/v2/rel/app/manifests/v1') return void res.writeHead(201).end();
      res.writeHead(404).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  const client = createRemoteTransport({ retries: 0, env: {}, concurrency: 1 });
  try {
    const result = await client.push(image, parseDockerReference(`${host}/rel/app:v1`));
    assert.equal(result.digest, image.manifestDigest);
    assert.equal(puts.length, 3);
    assert.ok(puts.every((p) => /^\/v2\/rel\/app\/blobs\/uploads\/session-\d\?state=abc&digest=sha256%3A[0-9a-f]{64}$/.test(p)), puts.join('\n'));
    for (const [digest, bytes] of image.blobs) assert.equal(stored.get(digest), bytes.length);
  } finally {
    client.close();
    await new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); });
  }
});

test('identity tokens (docker identitytoken) are exchanged with an OAuth2 refresh_token POST', async () => {
  const { promises: fs } = await import('node:fs');
  const { tempDir } = await import('./helpers.js');
  const dir = await tempDir('weft-idtoken-');
  const posts: string[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const port = (server.address() as AddressInfo).port;
      if (req.url?.startsWith('/oauth')) {
        posts.push(`${req.method} ${body}`);
        return void res.writeHead(200).end(JSON.stringify({ access_token: 'from-refresh', expires_in: 600 }));
      }
      if (req.headers.authorization !== 'Bearer from-refresh') {
        return void res.writeHead(401, { 'WWW-Authenticate': `Bearer realm="http://127.0.0.1:${port}/oauth",service="svc"` }).end();
      }
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ name: 'x', tags: ['t'] }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  await fs.writeFile(`${dir}/config.json`, JSON.stringify({ auths: { [`https://${host}/v1/`]: { auth: Buffer.from('bob:').toString('base64'), identitytoken: 'refresh-abc' } } }));
  const client = createRemoteTransport({ retries: 0, env: { DOCKER_CONFIG: dir, HOME: dir } });
  try {
    assert.deepEqual(await client.listTags(host, 'x'), ['t']);
    assert.equal(posts.length, 1);
    const form = new URLSearchParams(posts[0]!.slice('POST '.length));
    assert.equal(posts[0]!.split(' ')[0], 'POST');
    assert.equal(form.get('grant_type'), 'refresh_token');
    assert.equal(form.get('refresh_token'), 'refresh-abc');
    assert.equal(form.get('service'), 'svc');
    assert.equal(form.get('scope'), 'repository:x:pull');
  } finally {
    client.close();
    await new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); });
    await fs.rm(dir, { recursive: true, force: true });
  }
});
