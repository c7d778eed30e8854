// VerifiedBody: a blob body hashed as it arrives, batched for the file writer.
// It must end cleanly only for exactly the right bytes, and keep flow control,
// whether it hashes on this thread or on the worker thread (bodies of 4 MiB or
// more), and when the worker thread also writes it into a BlobStore.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { availableParallelism } from 'node:os';
import { VerifiedBody } from '../../src/registry/client/digest.js';
import { hashThreadsRunning, useHashThread } from '../../src/registry/client/hash-thread.js';
import { RegistrySession } from '../../src/registry/client/session.js';
import { BlobStore, SELF_STORING, verifiesItself } from '../../src/image/blobstore.js';
import { withTempDir } from '../support/temp.js';

/** The compiled module beside this test's tree, for scripts run in a child process. */
const compiled = (relative: string): string => path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src', relative);

const data = randomBytes(3 * 1024 * 1024 + 12345);
const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;

/** The bytes as a socket would deliver them: 64 KiB chunks. */
function source(bytes: Buffer): Readable {
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += 65536) chunks.push(bytes.subarray(i, i + 65536));
  return Readable.from(chunks, { objectMode: false });
}

async function collect(stream: Readable, slow = false): Promise<Buffer> {
  const parts: Buffer[] = [];
  await pipeline(
    stream,
    new Writable({
      highWaterMark: 1,
      write(chunk: Buffer, _enc, callback) {
        parts.push(chunk);
        if (slow) setTimeout(callback, 2);
        else callback();
      },
    }),
  );
  return Buffer.concat(parts);
}

for (const hashThread of [false, true]) {
  const options = { hashThread };
  const where = hashThread ? 'hashed on the worker thread' : 'hashed on this thread';

  test(`${where}: the right bytes pass whole, in batches, and the stream says it verifies itself`, async () => {
    const body = new VerifiedBody(source(data), digest, data.length, 'blob', undefined, options);
    assert.ok(verifiesItself(body, { digest, size: data.length }));
    const sizes: number[] = [];
    body.on('data', (c: Buffer) => sizes.push(c.length));
    body.pause();
    const out = await collect(body);
    assert.ok(out.equals(data));
    assert.ok(sizes.filter((s) => s >= 1024 * 1024).length >= 3, `batches: ${sizes.join(', ')}`);
  });

  test(`${where}: a consumer reading with for await gets every byte`, async () => {
    const parts: Buffer[] = [];
    for await (const chunk of new VerifiedBody(source(data), digest, data.length, 'blob', 64 * 1024, options)) {
      parts.push(chunk as Buffer);
      await sleep(0);
    }
    assert.ok(Buffer.concat(parts).equals(data));
  });

  test(`${where}: a slow consumer gets every byte (the source is paused and resumed)`, async () => {
    const out = await collect(new VerifiedBody(source(data), digest, data.length, 'blob', 128 * 1024, options), true);
    assert.ok(out.equals(data));
  });

  test(`${where}: wrong content, a short body, a long body and an unknown size with wrong content all fail before the end`, async () => {
    const wrong = Buffer.from(data);
    wrong[1000]! ^= 1;
    await assert.rejects(collect(new VerifiedBody(source(wrong), digest, data.length, 'blob X', undefined, options)), /blob X: expected sha256:/);
    await assert.rejects(collect(new VerifiedBody(source(data.subarray(0, data.length - 1)), digest, data.length, 'blob X', undefined, options)), /got \d+ bytes, expected/);
    await assert.rejects(collect(new VerifiedBody(source(Buffer.concat([data, Buffer.from('x')])), digest, data.length, 'blob X', undefined, options)), /more than the \d+ bytes/);
    await assert.rejects(collect(new VerifiedBody(source(wrong), digest, undefined, 'blob X', undefined, options)), /expected sha256:/);
    assert.ok((await collect(new VerifiedBody(source(data), digest, undefined, 'blob X', undefined, options))).equals(data));
  });

  test(`${where}: a source that fails or closes early fails the body`, async () => {
    const failing = new PassThrough();
    const body = new VerifiedBody(failing, digest, data.length, 'blob', undefined, options);
    const done = collect(body);
    failing.write(data.subarray(0, 100000));
    await sleep(5);
    failing.destroy(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
    await assert.rejects(done, /socket hang up/);
    const closing = new PassThrough();
    const cut = collect(new VerifiedBody(closing, digest, data.length, 'blob', undefined, options));
    closing.write(data.subarray(0, 100000));
    await sleep(5);
    closing.destroy();
    await assert.rejects(cut, /closed after|premature/i);
  });
}

/** A store in a temp dir; what its blob directory holds afterwards (no temp files may be left). */
async function withStore(run: (store: BlobStore, blobFiles: () => Promise<string[]>) => Promise<void>): Promise<void> {
  await withTempDir('weft-verified-store-', async (dir) => {
    const store = new BlobStore(dir);
    await run(store, () => fs.readdir(path.join(dir, 'blobs', 'sha256')).catch(() => []));
  });
}

const big = randomBytes(9 * 1024 * 1024 + 777);
const bigDigest = `sha256:${createHash('sha256').update(big).digest('hex')}`;

test('a large body is written by the worker thread into the store, under its digest', async () => {
  await withStore(async (store, blobFiles) => {
    const body = new VerifiedBody(source(big), bigDigest, big.length, 'blob', undefined, { hashThread: true });
    assert.equal(typeof (body as VerifiedBody & { [SELF_STORING]?: unknown })[SELF_STORING], 'function', 'a 9 MiB body stores itself on the thread');
    assert.deepEqual(await store.putStream(body, { digest: bigDigest, size: big.length }), { digest: bigDigest, size: big.length });
    assert.deepEqual(await blobFiles(), [bigDigest.slice(7)]);
    assert.ok((await fs.readFile(store.path(bigDigest))).equals(big));
  });
});

test('a body asked to store itself after some of it was read keeps every byte in order', async () => {
  await withStore(async (store) => {
    const body = new VerifiedBody(source(big), bigDigest, big.length, 'blob', 256 * 1024, { hashThread: true });
    await sleep(20); // batches wait in the stream's buffer, already hashed, before the store asks
    await store.putStream(body, { digest: bigDigest, size: big.length });
    assert.ok((await fs.readFile(store.path(bigDigest))).equals(big));
  });
});

test('a body that came whole before the store asked is read as a stream, and stored right', async () => {
  await withStore(async (store) => {
    const body = new VerifiedBody(source(data), digest, data.length, 'blob', 8 * 1024 * 1024, { hashThread: true });
    await sleep(50); // all of it arrives and is checked before putStream runs
    await store.putStream(body, { digest, size: data.length });
    assert.ok((await fs.readFile(store.path(digest))).equals(data));
  });
});

test('wrong, short or broken large bodies stored by the thread fail and leave no file', async () => {
  await withStore(async (store, blobFiles) => {
    const wrong = Buffer.from(big);
    wrong[5 * 1024 * 1024]! ^= 1;
    await assert.rejects(store.putStream(new VerifiedBody(source(wrong), bigDigest, big.length, 'blob X', undefined, { hashThread: true }), { digest: bigDigest, size: big.length }), /blob X: expected sha256:/);
    assert.deepEqual(await blobFiles(), []);
    await assert.rejects(store.putStream(new VerifiedBody(source(big.subarray(0, big.length - 5)), bigDigest, big.length, 'blob X', undefined, { hashThread: true }), { digest: bigDigest, size: big.length }), /got \d+ bytes, expected/);
    assert.deepEqual(await blobFiles(), []);
    const failing = new PassThrough();
    const stored = store.putStream(new VerifiedBody(failing, bigDigest, big.length, 'blob X', undefined, { hashThread: true }), { digest: bigDigest, size: big.length });
    failing.write(big.subarray(0, 3 * 1024 * 1024));
    await sleep(20);
    failing.destroy(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
    await assert.rejects(stored, /socket hang up/);
    assert.deepEqual(await blobFiles(), []);
  });
});

test('bodies stored at once go to more than one worker thread, and a wrong one fails alone', async () => {
  await withStore(async (store, blobFiles) => {
    const others = [randomBytes(6 * 1024 * 1024), randomBytes(5 * 1024 * 1024)];
    const digestOf = (bytes: Buffer): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    const wrong = Buffer.from(big);
    wrong[1000]! ^= 1;
    const results = await Promise.allSettled([
      store.putStream(new VerifiedBody(source(big), bigDigest, big.length, 'blob A', undefined, { hashThread: true }), { digest: bigDigest, size: big.length }),
      ...others.map((bytes, i) => store.putStream(new VerifiedBody(source(bytes), digestOf(bytes), bytes.length, `blob ${i}`, undefined, { hashThread: true }), { digest: digestOf(bytes), size: bytes.length })),
      store.putStream(new VerifiedBody(source(wrong), bigDigest, big.length, 'blob W', undefined, { hashThread: true }), { digest: bigDigest, size: big.length }),
    ]);
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'fulfilled', 'fulfilled', 'rejected']);
    assert.match(String((results[3] as PromiseRejectedResult).reason), /blob W: expected sha256:/);
    assert.deepEqual((await blobFiles()).sort(), [bigDigest, ...others.map(digestOf)].map((d) => d.slice(7)).sort());
    for (const bytes of [big, ...others]) assert.ok((await fs.readFile(store.path(digestOf(bytes)))).equals(bytes));
    assert.equal(hashThreadsRunning(), Math.min(2, availableParallelism()), `hashing threads on ${availableParallelism()} cores`);
  });
});

test('the worker thread keeps a process alive for a digest it owes, and never otherwise', () => {
  const digestModule = compiled('registry/client/digest.js');
  const script = (consume: boolean): string => `
    import { VerifiedBody } from ${JSON.stringify(digestModule)};
    import { Readable, PassThrough, Writable } from 'node:stream';
    import { createHash, randomBytes } from 'node:crypto';
    const bytes = randomBytes(6 * 1024 * 1024);
    const digest = 'sha256:' + createHash('sha256').update(bytes).digest('hex');
    if (${consume}) {
      const body = new VerifiedBody(Readable.from([bytes]), digest, bytes.length, 'blob', undefined, { hashThread: true });
      let n = 0;
      body.pipe(new Writable({ write(c, _e, cb) { n += c.length; cb(); } })).on('finish', () => console.log('verified ' + n));
    } else {
      const source = new PassThrough();
      new VerifiedBody(source, digest, bytes.length, 'blob', undefined, { hashThread: true });
      source.write(bytes.subarray(0, 2 * 1024 * 1024));
      console.log('abandoned');
    }`;
  const consumed = spawnSync(process.execPath, ['--input-type=module', '-e', script(true)], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(consumed.status, 0, consumed.stderr);
  assert.equal(consumed.stdout.trim(), `verified ${6 * 1024 * 1024}`);
  const abandoned = spawnSync(process.execPath, ['--input-type=module', '-e', script(false)], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(abandoned.status, 0, `an abandoned body must not keep the process alive (signal ${abandoned.signal}): ${abandoned.stderr}`);
  assert.equal(abandoned.stdout.trim(), 'abandoned');});

test('a body held back while the thread catches up keeps the process alive until it is stored', async () => {
  // A file source outruns the thread's hashing and writing, so the body pauses it (16 MiB waiting);
  // a paused file stream keeps nothing alive, so the thread must (this exited with the store unsettled).
  await withTempDir('weft-verified-held-', async (dir) => {
    const file = path.join(dir, 'blob');
    const bytes = randomBytes(64 * 1024 * 1024);
    await fs.writeFile(file, bytes);
    const blobDigest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    const script = `
      import { VerifiedBody } from ${JSON.stringify(compiled('registry/client/digest.js'))};
      import { BlobStore } from ${JSON.stringify(compiled('image/blobstore.js'))};
      import { createReadStream, statSync } from 'node:fs';
      const store = new BlobStore(${JSON.stringify(path.join(dir, 'store'))});
      const body = new VerifiedBody(createReadStream(${JSON.stringify(file)}, { highWaterMark: 1024 * 1024 }), ${JSON.stringify(blobDigest)}, ${bytes.length}, 'blob', undefined, { hashThread: true });
      await store.putStream(body, { digest: ${JSON.stringify(blobDigest)}, size: ${bytes.length} });
      console.log('stored ' + statSync(store.path(${JSON.stringify(blobDigest)})).size);`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(run.status, 0, `exit ${run.status} (13: the store never settled): ${run.stderr}`);
    assert.equal(run.stdout.trim(), `stored ${bytes.length}`);
  });
});

test('which bodies go through the thread: the caller, WEFT_HASH_THREAD, else by size and whether it runs', () => {
  const MiB = 1024 * 1024;
  // Earlier tests in this file started the thread, so "auto" now takes every body of 4 MiB or more.
  assert.equal(useHashThread(4 * MiB - 1), false, 'under 4 MiB: hashed here');
  assert.equal(useHashThread(undefined), false, 'unknown size: hashed here');
  assert.equal(useHashThread(4 * MiB), true, 'the thread runs: 4 MiB goes there');
  assert.equal(useHashThread(64 * MiB, false), false, 'false: never');
  assert.equal(useHashThread(4 * MiB, true), true);
  const session = (env: NodeJS.ProcessEnv, hashThread?: boolean): RegistrySession =>
    new RegistrySession('127.0.0.1:1', {} as never, { env, ...(hashThread === undefined ? {} : { hashThread }) });
  assert.equal(session({ WEFT_HASH_THREAD: '0' }).hashThread, false);
  assert.equal(session({ WEFT_HASH_THREAD: 'on' }).hashThread, true);
  assert.equal(session({}).hashThread, undefined);
  assert.equal(session({ WEFT_HASH_THREAD: '0' }, true).hashThread, true, 'the caller\'s choice wins over the environment');
});

test('a short-lived process does not start the thread for bodies that cannot pay for it', () => {
  const hashModule = compiled('registry/client/hash-thread.js');
  const probe = spawnSync(
    process.execPath,
    ['--input-type=module', '-e', `import { useHashThread } from ${JSON.stringify(hashModule)}; console.log(useHashThread(32 * 1024 * 1024), useHashThread(64 * 1024 * 1024));`],
    { encoding: 'utf8', timeout: 30_000 },
  );
  assert.equal(probe.status, 0, probe.stderr);
  assert.equal(probe.stdout.trim(), 'false true', 'not running: 32 MiB is hashed here, 64 MiB starts the thread');
});
