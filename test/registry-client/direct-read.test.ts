// Blob GETs read straight off the socket (src/registry/client/direct-read.ts),
// against real node:http / node:https servers on loopback and the real
// distribution registry: bodies, keep-alive, back-pressure, the framings it
// declines (repeated through node:http), cut-off and malformed responses, TLS,
// and redirects.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DirectBody, DirectReadDeclined, DirectReader } from '../../src/registry/client/direct-read.js';
import { HttpClient } from '../../src/registry/client/http.js';
import { isRetryable } from '../../src/registry/client/errors.js';
import { copyImage, createRemoteTransport } from '../../src/registry/client/index.js';
import { hashThreadTraffic } from '../../src/registry/client/hash-thread.js';
import { run, startDistribution, syntheticImage, tempDir, writeLayoutByHand, type Distribution } from './helpers.js';

const blob = randomBytes(6 * 1024 * 1024 + 123);
const blobDigest = createHash('sha256').update(blob).digest('hex');

async function collect(body: NodeJS.ReadableStream, slow = false): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of body as AsyncIterable<Buffer>) {
    parts.push(Buffer.from(chunk));
    if (slow && parts.length % 8 === 0) await sleep(2);
  }
  return Buffer.concat(parts);
}

interface Served {
  url: (p: string) => URL;
  connections: () => number;
  close: () => Promise<void>;
}

async function serve(handler: http.RequestListener): Promise<Served> {
  const server = http.createServer(handler);
  let connections = 0;
  server.on('connection', () => connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: (p) => new URL(`http://127.0.0.1:${port}${p}`),
    connections: () => connections,
    close: () => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))),
  };
}

/** A raw TCP server answering each connection with `answer` (bytes written as they are), for responses node:http would not send. */
async function rawServer(answer: (socket: net.Socket) => void): Promise<{ url: URL; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('data', () => answer(socket));
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return { url: new URL(`http://127.0.0.1:${port}/blob`), close: () => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()); }) };
}

let plain: Served;
before(async () => {
  plain = await serve((req, res) => {
    if (req.url === '/chunked') {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' }); // no length: node:http sends it chunked
      res.write(blob.subarray(0, 1000));
      res.end(blob.subarray(1000));
      return;
    }
    res.writeHead(200, { 'Content-Length': String(blob.length), 'Docker-Content-Digest': `sha256:${blobDigest}`, 'X-Twice': 'a' });
    res.end(blob);
  });
});
after(async () => {
  await plain?.close();
});

test('a body read off the socket is every byte, and the connection is kept for the next GET', async () => {
  const reader = new DirectReader();
  try {
    for (let i = 0; i < 3; i++) {
      const res = await reader.get({ url: plain.url('/blob'), headers: { Accept: '*/*' } });
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-length'], String(blob.length));
      assert.equal(res.headers['docker-content-digest'], `sha256:${blobDigest}`);
      assert.ok(res.rawHeaders.includes('X-Twice'), 'raw header names keep their case');
      // The second read is slow: the socket is paused and resumed under it.
      const bytes = await collect(res.body, i === 1);
      assert.equal(createHash('sha256').update(bytes).digest('hex'), blobDigest);
    }
    assert.equal(plain.connections(), 1, 'three GETs in turn share one connection');
  } finally {
    reader.close();
  }
});

test("a body read into the consumer's memory: each buffer handed on whole and once, never written again; the connection's next GET reads into its own slabs", async () => {
  // Written in 48 KiB pieces with pauses: many reads go into each buffer.
  const slow = await serve(async (_req, res) => {
    res.writeHead(200, { 'Content-Length': String(blob.length) });
    for (let at = 0; at < blob.length; at += 48 * 1024) {
      if (!res.write(blob.subarray(at, at + 48 * 1024))) await new Promise((resolve) => res.once('drain', resolve));
      if ((at / (48 * 1024)) % 16 === 0) await sleep(1);
    }
    res.end();
  });
  const reader = new DirectReader();
  try {
    const given = new Set<ArrayBufferLike>();
    const memory = (): Buffer => {
      const bytes = Buffer.alloc(2 * 1024 * 1024);
      given.add(bytes.buffer);
      return bytes;
    };
    const res = await reader.get({ url: slow.url('/blob'), headers: {} });
    const body = res.body as DirectBody;
    const chunks: Array<{ chunk: Buffer; copy: Buffer }> = [];
    await new Promise<void>((resolve, reject) => {
      body.on('data', (chunk: Buffer) => {
        if (!chunks.length) body.readInto(memory);
        chunks.push({ chunk, copy: Buffer.from(chunk) });
      });
      body.on('end', resolve);
      body.on('error', reject);
    });
    assert.deepEqual(Buffer.concat(chunks.map((c) => c.copy)), blob);
    const inMemory = chunks.filter((c) => given.has(c.chunk.buffer));
    assert.ok(inMemory.length >= 3, `${inMemory.length} of ${chunks.length} chunks in the memory given (6 MiB in 2 MiB buffers)`);
    assert.equal(new Set(inMemory.map((c) => c.chunk.buffer)).size, inMemory.length, 'a buffer was handed on in more than one piece');
    inMemory.forEach(({ chunk, copy }, i) => {
      assert.equal(chunk.byteOffset, 0, 'a buffer is handed on from its start');
      if (i < inMemory.length - 1) assert.ok(chunk.length >= 2 * 1024 * 1024 - 64 * 1024, `buffer ${i} handed on with ${chunk.length} bytes, before it was full`);
      assert.deepEqual(chunk, copy, `buffer ${i} was written after it was handed on`);
    });
    // Once a chunk came in the memory given, every later one did (the earlier ones were read before readInto).
    const first = chunks.findIndex((c) => given.has(c.chunk.buffer));
    assert.deepEqual(chunks.slice(first).filter((c) => !given.has(c.chunk.buffer)).length, 0, 'a chunk after the switch came from elsewhere');
    const next = await reader.get({ url: slow.url('/blob'), headers: {} });
    const again: Buffer[] = [];
    for await (const chunk of next.body as AsyncIterable<Buffer>) again.push(chunk);
    assert.deepEqual(Buffer.concat(again), blob);
    assert.ok(again.every((chunk) => !given.has(chunk.buffer)), "the next GET read into the previous body's memory");
    assert.equal(slow.connections(), 1, 'both GETs on one connection');
  } finally {
    reader.close();
    await slow.close();
  }
});

test('HttpClient reads bulk GETs directly, and repeats a chunked answer through node:http', async () => {
  const client = new HttpClient();
  try {
    const direct = await client.request({ method: 'GET', url: plain.url('/blob'), bulk: true });
    assert.ok(direct.body instanceof DirectBody);
    assert.deepEqual(await collect(direct.body), blob);
    const chunked = await client.request({ method: 'GET', url: plain.url('/chunked'), bulk: true });
    assert.ok(!(chunked.body instanceof DirectBody), 'a chunked body is not read directly');
    assert.deepEqual(await collect(chunked.body), blob);
    await assert.rejects(new DirectReader().get({ url: plain.url('/chunked'), headers: {} }), DirectReadDeclined);
    const small = await client.request({ method: 'GET', url: plain.url('/blob') });
    assert.ok(!(small.body instanceof DirectBody), 'without bulk, node:http as before');
    await collect(small.body);
  } finally {
    client.close();
  }
  const off = new HttpClient({ directRead: false });
  try {
    const res = await off.request({ method: 'GET', url: plain.url('/blob'), bulk: true });
    assert.ok(!(res.body instanceof DirectBody), 'directRead: false turns it off');
    assert.deepEqual(await collect(res.body), blob);
  } finally {
    off.close();
  }
});

test('a body that ends with the connection, and one cut off before its length', async () => {
  const untilClose = await rawServer((socket) => socket.end(Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n'), blob])));
  const cutOff = await rawServer((socket) => {
    socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${blob.length}\r\n\r\n`);
    socket.end(blob.subarray(0, 100_000));
  });
  const reader = new DirectReader();
  try {
    const whole = await reader.get({ url: untilClose.url, headers: {} });
    assert.deepEqual(await collect(whole.body), blob);
    const cut = await reader.get({ url: cutOff.url, headers: {} });
    const error = await collect(cut.body).then(() => undefined, (e: Error) => e);
    assert.ok(error, 'a short body fails');
    assert.match(error.message, new RegExp(`closed after \\d+ of ${blob.length} bytes`));
    assert.ok(isRetryable(error), 'a cut-off body may be tried again');
  } finally {
    reader.close();
    await untilClose.close();
    await cutOff.close();
  }
});

test('malformed answers fail with what was wrong', async () => {
  const cases: Array<[string, string | Buffer, RegExp]> = [
    ['not HTTP', 'SSH-2.0-OpenSSH\r\n\r\n', /not an HTTP\/1\.x response/],
    ['bad header', 'HTTP/1.1 200 OK\r\nno colon here\r\n\r\n', /malformed response header/],
    ['bad length', 'HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n', /invalid Content-Length/],
    ['two lengths', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n', /conflicting Content-Length/],
    ['endless head', Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\n'), Buffer.alloc(70 * 1024, 'x-a: b\r\n')]), /head is larger than/],
    ['closed at once', '', /closed before a response/],
  ];
  for (const [name, answer, message] of cases) {
    const server = await rawServer((socket) => socket.end(answer));
    const reader = new DirectReader();
    try {
      await assert.rejects(reader.get({ url: server.url, headers: {} }), message, name);
    } finally {
      reader.close();
      await server.close();
    }
  }
  const reader = new DirectReader();
  await assert.rejects(reader.get({ url: plain.url('/blob'), headers: { 'X-Evil': 'a\r\nInjected: 1' } }), /invalid header/);
  reader.close();
});

test('a server that stops sending mid-body fails the body after the idle timeout', async () => {
  const stalled = await rawServer((socket) => socket.write(`HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n${'x'.repeat(100)}`));
  const reader = new DirectReader();
  try {
    const res = await reader.get({ url: stalled.url, headers: {}, idleTimeoutMs: 300 });
    const error = await collect(res.body).then(() => undefined, (e: Error) => e);
    assert.ok(error, 'a stalled body fails');
    assert.match(error.message, /no data from 127\.0\.0\.1:\d+ for 300 ms/);
    assert.ok(isRetryable(error));
  } finally {
    reader.close();
    await stalled.close();
  }
});

test('bytes beyond Content-Length are not handed on, and that connection is not used again', async () => {
  let accepted = 0;
  const server = await rawServer((socket) => {
    accepted++;
    socket.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789EXTRA-BYTES');
  });
  const reader = new DirectReader();
  try {
    for (let i = 0; i < 2; i++) assert.equal((await collect((await reader.get({ url: server.url, headers: {} })).body)).toString(), '0123456789');
    assert.equal(accepted, 2, 'a connection that sent more than its answer held is closed, not reused');
  } finally {
    reader.close();
    await server.close();
  }
});

test('a kept-alive connection the server closed is replaced without a failure', async () => {
  // The server closes each connection shortly after its answer, as servers close idle keep-alive connections.
  const server = await serve((req, res) => {
    res.writeHead(200, { 'Content-Length': '1048576' });
    res.end(blob.subarray(0, 1048576));
    res.on('finish', () => setTimeout(() => req.socket.destroy(), 30));
  });
  const reader = new DirectReader();
  try {
    assert.equal((await collect((await reader.get({ url: server.url('/a'), headers: {} })).body)).length, 1048576);
    await sleep(300); // the server closes the idle connection
    assert.equal((await collect((await reader.get({ url: server.url('/b'), headers: {} })).body)).length, 1048576);
    assert.equal(server.connections(), 2);
  } finally {
    reader.close();
    await server.close();
  }
  // And one that closes just as the next request comes (no answer to it): that GET goes again on a new connection.
  let accepted = 0;
  const sockets = new Set<net.Socket>();
  const racing = net.createServer((socket) => {
    accepted++;
    sockets.add(socket);
    let requests = 0;
    socket.on('error', () => undefined);
    socket.on('data', () => {
      if (++requests > 1) socket.destroy();
      else socket.write(Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n'), blob.subarray(0, 1000)]));
    });
  });
  await new Promise<void>((resolve) => racing.listen(0, '127.0.0.1', resolve));
  const url = new URL(`http://127.0.0.1:${(racing.address() as net.AddressInfo).port}/blob`);
  const again = new DirectReader();
  try {
    for (let i = 0; i < 3; i++) assert.deepEqual(await collect((await again.get({ url, headers: {} })).body), blob.subarray(0, 1000));
    assert.equal(accepted, 3, 'each GET after the first found its kept connection closed and opened another');
  } finally {
    again.close();
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => racing.close(() => resolve()));
  }
});

test('HTTPS: read directly with the CA given, refused without it', async () => {
  const dir = await tempDir('weft-direct-tls-');
  try {
    const key = path.join(dir, 'key.pem');
    const cert = path.join(dir, 'cert.pem');
    const ssl = await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1']);
    assert.equal(ssl.code, 0, `openssl could not make a certificate: ${ssl.stderr}`);
    const server = https.createServer({ key: await fs.readFile(key), cert: await fs.readFile(cert) }, (_req, res) => {
      res.writeHead(200, { 'Content-Length': String(blob.length) });
      res.end(blob);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    const trusted = new DirectReader({ ca: [await fs.readFile(cert, 'utf8')] });
    const untrusted = new DirectReader();
    try {
      for (const host of ['localhost', '127.0.0.1']) {
        const res = await trusted.get({ url: new URL(`https://${host}:${port}/blob`), headers: {} });
        assert.deepEqual(await collect(res.body), blob, host);
      }
      // Read into memory given, over TLS too: every byte, and the connection serves the next GET.
      const given = new Set<ArrayBufferLike>();
      const into = await trusted.get({ url: new URL(`https://localhost:${port}/blob`), headers: {} });
      const parts: Buffer[] = [];
      let inGiven = 0;
      (into.body as DirectBody).readInto(() => {
        const bytes = Buffer.alloc(2 * 1024 * 1024);
        given.add(bytes.buffer);
        return bytes;
      });
      for await (const chunk of into.body as AsyncIterable<Buffer>) {
        if (given.has(chunk.buffer)) inGiven += chunk.length;
        parts.push(Buffer.from(chunk));
      }
      assert.deepEqual(Buffer.concat(parts), blob, 'read into memory given over TLS');
      assert.ok(inGiven > blob.length / 2, `only ${inGiven} of ${blob.length} bytes came in the memory given over TLS`);
      const after = await trusted.get({ url: new URL(`https://localhost:${port}/blob`), headers: {} });
      assert.deepEqual(await collect(after.body), blob, 'the GET after it');
      await assert.rejects(untrusted.get({ url: new URL(`https://localhost:${port}/blob`), headers: {} }), /self[- ]signed|certificate/i);
    } finally {
      trusted.close();
      untrusted.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('a pull from the real registry, directly and through node:http, and through a redirect', async (t) => {
  const registry: Distribution = await startDistribution();
  t.after(() => registry.close());
  const image = await syntheticImage([
    { name: 'big', size: 5 * 1024 * 1024, seed: 'direct-big' },
    { name: 'small', size: 200_000, seed: 'direct-small' },
  ]);
  const dir = await tempDir('weft-direct-pull-');
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  const source = path.join(dir, 'source');
  await writeLayoutByHand(source, image, 'v1');
  const client = createRemoteTransport({ blobCache: false });
  await copyImage(client, `oci:${source}:v1`, `docker://${registry.host}/direct/app:v1`);
  client.close();
  // Blob GETs answered with a 307 to the registry itself (as registries behind a CDN do).
  const redirecting = await serve((req, res) => {
    const target = `http://${registry.host}${req.url}`;
    if (req.url?.includes('/blobs/')) {
      res.writeHead(307, { Location: target, 'Content-Length': '0' });
      res.end();
      return;
    }
    const up = http.request(target, { method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    req.pipe(up);
  });
  t.after(() => redirecting.close());
  const redirectHost = redirecting.url('/').host;
  for (const [name, options, from] of [
    ['direct', {}, registry.host],
    ['nodehttp', { directRead: false }, registry.host],
    ['redirected', {}, redirectHost],
  ] as const) {
    const out = path.join(dir, name);
    const puller = createRemoteTransport({ blobCache: false, ...options });
    try {
      await copyImage(puller, `docker://${from}/direct/app:v1`, `oci:${out}:v1`);
    } finally {
      puller.close();
    }
    for (const layer of image.manifest.layers) {
      const bytes = await fs.readFile(path.join(out, 'blobs', 'sha256', layer.digest.slice(7)));
      assert.equal(`sha256:${createHash('sha256').update(bytes).digest('hex')}`, layer.digest, `${name}: ${layer.digest}`);
    }
  }
});

test('a layer stored by a hashing thread is read off the socket into its pooled memory: moved there, not copied on the way', async (t) => {
  const registry: Distribution = await startDistribution();
  t.after(() => registry.close());
  const image = await syntheticImage([{ name: 'big', size: 32 * 1024 * 1024, seed: 'direct-pooled' }]);
  const dir = await tempDir('weft-direct-pooled-');
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  await writeLayoutByHand(path.join(dir, 'source'), image, 'v1');
  const pusher = createRemoteTransport({ blobCache: false });
  await copyImage(pusher, `oci:${path.join(dir, 'source')}:v1`, `docker://${registry.host}/direct/pooled:v1`);
  pusher.close();
  const layer = image.manifest.layers[0]!;
  for (const [name, directRead] of [['direct', true], ['nodehttp', false]] as const) {
    const before = hashThreadTraffic();
    const puller = createRemoteTransport({ blobCache: false, hashThread: true, directRead });
    try {
      await copyImage(puller, `docker://${registry.host}/direct/pooled:v1`, `oci:${path.join(dir, name)}:v1`);
    } finally {
      puller.close();
    }
    const bytes = await fs.readFile(path.join(dir, name, 'blobs', 'sha256', layer.digest.slice(7)));
    assert.equal(`sha256:${createHash('sha256').update(bytes).digest('hex')}`, layer.digest, name);
    const after = hashThreadTraffic();
    const [moved, copied] = [after.moved - before.moved, after.copied - before.copied];
    t.diagnostic(`${name}: ${(moved / 2 ** 20).toFixed(1)} MiB moved to the thread, ${(copied / 2 ** 20).toFixed(1)} MiB copied on the way`);
    assert.ok(moved >= layer.size - 8 * 1024 * 1024, `${name}: only ${moved} of ${layer.size} bytes moved`);
    // What came before the store began (a few MiB of buffered body, hashed then written: twice) is copied; nothing after it.
    assert.ok(copied <= 12 * 1024 * 1024, `${name}: ${copied} bytes copied on the way to the thread`);
  }
});
