import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs, readFileSync, symlinkSync, writeFileSync, mkdirSync, chmodSync, utimesSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { BlobStore, LayerCache, LayerError, layerFromDirectory, writeLayer, sha256 } from '../../src/image/index.js';
import { COMMONS_LANG3, run, tempDir } from './helpers.js';
import { waitFor } from '../support/wait.js';

interface TarItem {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  mtime: number;
  linkname?: string;
  data: Buffer;
}

async function listTar(gzipped: Buffer): Promise<TarItem[]> {
  const extract = tar.extract();
  const items: TarItem[] = [];
  const done = (async () => {
    for await (const entry of extract) {
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      const h = entry.header;
      items.push({ name: h.name, type: h.type, mode: h.mode, uid: h.uid, gid: h.gid, uname: h.uname, gname: h.gname, mtime: h.mtime.getTime() / 1000, linkname: h.linkname || undefined, data: Buffer.concat(chunks) });
    }
  })();
  Readable.from([gunzipSync(gzipped)]).pipe(extract as unknown as NodeJS.WritableStream);
  await done;
  return items;
}

test('layer: sorted, explicit parents, root-owned, fixed mtime, normalised modes; digests match content', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const exe = path.join(dir, 'run.sh');
  writeFileSync(exe, '#!/bin/sh\necho hi\n');
  chmodSync(exe, 0o700);
  const plain = path.join(dir, 'plain.txt');
  writeFileSync(plain, 'x');
  chmodSync(plain, 0o600);
  const store = new BlobStore(path.join(dir, 'store'));
  const layer = await writeLayer(
    [
      { type: 'file', path: '/z/run.sh', source: exe },
      { type: 'file', path: 'a/b/c.txt', data: 'hello' },
      { type: 'file', path: './a/plain.txt', source: plain },
      { type: 'symlink', path: 'a/link', target: 'b/c.txt' },
    ],
    { store, mtime: 1 },
  );
  const blob = readFileSync(layer.blobPath);
  assert.equal(layer.descriptor.digest, sha256(blob));
  assert.equal(layer.descriptor.size, blob.length);
  assert.equal(layer.descriptor.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
  assert.equal(layer.diffId, sha256(gunzipSync(blob)));
  assert.equal(layer.fileCount, 4);
  const items = await listTar(blob);
  assert.deepEqual(
    items.map((i) => i.name),
    ['a/', 'a/b/', 'a/b/c.txt', 'a/link', 'a/plain.txt', 'z/', 'z/run.sh'],
  );
  for (const i of items) {
    assert.equal(i.uid, 0);
    assert.equal(i.gid, 0);
    assert.equal(i.uname, '');
    assert.equal(i.gname, '');
    assert.equal(i.mtime, 1);
  }
  const mode = (n: string) => items.find((i) => i.name === n)!.mode;
  assert.equal(mode('a/'), 0o755);
  assert.equal(mode('a/plain.txt'), 0o644);
  assert.equal(mode('z/run.sh'), 0o755);
  assert.equal(items.find((i) => i.name === 'a/link')!.linkname, 'b/c.txt');
  assert.equal(items.find((i) => i.name === 'a/b/c.txt')!.data.toString(), 'hello');
  // GNU tar reads it too.
  const listing = run('tar', ['-tzvf', layer.blobPath]);
  assert.match(listing, /lrwxrwxrwx 0\/0 .* a\/link -> b\/c.txt/);
});

test('layer: the same entries in another order, with touched sources, give the same bytes', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const f = path.join(dir, 'f.txt');
  writeFileSync(f, 'content');
  const store = new BlobStore(path.join(dir, 'store'));
  const entries = [
    { type: 'file' as const, path: 'x/f.txt', source: f },
    { type: 'file' as const, path: 'x/lib.jar', source: COMMONS_LANG3 },
    { type: 'directory' as const, path: 'empty' },
  ];
  const first = await writeLayer(entries, { store });
  utimesSync(f, new Date(), new Date(Date.now() + 5000));
  const second = await writeLayer([...entries].reverse(), { store });
  assert.equal(second.descriptor.digest, first.descriptor.digest);
  assert.equal(second.diffId, first.diffId);
  const other = await writeLayer(entries, { store, mtime: 1000 });
  assert.notEqual(other.diffId, first.diffId, 'mtime is part of the content');
  const level6 = await writeLayer(entries, { store, gzipLevel: 6 });
  assert.equal(level6.diffId, first.diffId, 'gzip level changes only the compressed bytes');
  assert.notEqual(level6.descriptor.digest, first.descriptor.digest);
});

test('layer: long and non-ASCII paths survive (pax headers)', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const long = `app/${'deep/'.repeat(40)}File-with-ünïcode.class`;
  const layer = await writeLayer([{ type: 'file', path: long, data: 'x' }], { store: new BlobStore(dir) });
  const items = await listTar(readFileSync(layer.blobPath));
  assert.ok(items.some((i) => i.name === long), 'long name present');
  const listing = run('tar', ['-tzf', layer.blobPath]);
  assert.ok(listing.split('\n').includes(long), 'GNU tar reads the long name');
});

test('layer: conflicting or escaping paths are refused', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const store = new BlobStore(dir);
  await assert.rejects(writeLayer([{ type: 'file', path: '../etc/passwd', data: 'x' }], { store }), LayerError);
  await assert.rejects(
    writeLayer([{ type: 'file', path: 'a', data: 'x' }, { type: 'file', path: 'a', data: 'y' }], { store }),
    /two entries/,
  );
  await assert.rejects(
    writeLayer([{ type: 'file', path: 'a', data: 'x' }, { type: 'file', path: 'a/b', data: 'y' }], { store }),
    /parent directory/,
  );
  await assert.rejects(writeLayer([{ type: 'file', path: 'a', data: 'x' }], { store, gzipLevel: 11 }), /gzip level/);
});

test('layer: a failing source leaves no blob and no temp file behind', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const store = new BlobStore(path.join(dir, 'store'));
  let calls = 0;
  const failing = async (): Promise<Readable> => {
    calls++;
    if (calls === 1) return Readable.from([Buffer.alloc(2 * 1024 * 1024, 1)]); // the hashing pass succeeds (a large entry is streamed twice)
    return new Readable({
      read() {
        this.destroy(new Error('disk on fire'));
      },
    });
  };
  await assert.rejects(writeLayer([{ type: 'file', path: 'x', size: 2 * 1024 * 1024, open: failing }], { store }), /disk on fire/);
  const left = await fs.readdir(path.join(dir, 'store', 'blobs', 'sha256')).catch(() => []);
  assert.deepEqual(left, []);
});

test('layer cache: an unchanged layer is not rewritten; a record without its blob is ignored', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const cache = new LayerCache(path.join(dir, 'cache'));
  const f = path.join(dir, 'f.txt');
  writeFileSync(f, 'one');
  const entries = [{ type: 'file' as const, path: 'app/f.txt', source: f }];
  const first = await writeLayer(entries, { store: cache.store, cache });
  assert.equal(first.cached, false);
  const statBefore = await fs.stat(first.blobPath);
  const second = await writeLayer(entries, { store: cache.store, cache });
  assert.equal(second.cached, true);
  assert.equal(second.descriptor.digest, first.descriptor.digest);
  assert.equal((await fs.stat(first.blobPath)).mtimeMs, statBefore.mtimeMs, 'blob not rewritten');
  // A different gzip level is a different key.
  assert.equal((await writeLayer(entries, { store: cache.store, cache, gzipLevel: 9 })).cached, false);
  // Changed content is a miss.
  writeFileSync(f, 'two');
  assert.equal((await writeLayer(entries, { store: cache.store, cache })).cached, false);
  // A blob lost (e.g. a killed process, a cleaned cache) means the record is not trusted.
  writeFileSync(f, 'one');
  await fs.rm(first.blobPath);
  const again = await writeLayer(entries, { store: cache.store, cache });
  assert.equal(again.cached, false);
  assert.equal(again.descriptor.digest, first.descriptor.digest);
  // Truncated blob (a crash that somehow left a short file) is also a miss.
  await fs.truncate(first.blobPath, 10);
  assert.equal((await writeLayer(entries, { store: cache.store, cache })).cached, false);
});

test('layerFromDirectory: keeps internal symlinks and executable bits, refuses links leaving the tree', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const tree = path.join(dir, 'jre');
  mkdirSync(path.join(tree, 'bin'), { recursive: true });
  mkdirSync(path.join(tree, 'lib', 'empty'), { recursive: true });
  writeFileSync(path.join(tree, 'bin', 'java'), '#!/bin/sh\n');
  chmodSync(path.join(tree, 'bin', 'java'), 0o750);
  writeFileSync(path.join(tree, 'lib', 'libjvm.so'), 'elf');
  symlinkSync('../lib/libjvm.so', path.join(tree, 'bin', 'libjvm.so'));
  const store = new BlobStore(path.join(dir, 'store'));
  const layer = await layerFromDirectory(tree, '/opt/java', { store });
  const items = await listTar(readFileSync(layer.blobPath));
  const byName = new Map(items.map((i) => [i.name, i]));
  assert.equal(byName.get('opt/java/bin/java')?.mode, 0o755);
  assert.equal(byName.get('opt/java/lib/libjvm.so')?.mode, 0o644);
  assert.equal(byName.get('opt/java/bin/libjvm.so')?.type, 'symlink');
  assert.equal(byName.get('opt/java/bin/libjvm.so')?.linkname, '../lib/libjvm.so');
  assert.ok(byName.has('opt/'), 'parent directories are explicit');
  assert.ok(byName.has('opt/java/lib/empty/'), 'empty directories are kept');

  symlinkSync('/etc/passwd', path.join(tree, 'lib', 'escape'));
  await assert.rejects(layerFromDirectory(tree, 'opt/java', { store }), /points outside/);
  const copied = await layerFromDirectory(tree, 'opt/java', { store, externalSymlinks: 'copy' });
  const copiedItems = await listTar(readFileSync(copied.blobPath));
  assert.equal(copiedItems.find((i) => i.name === 'opt/java/lib/escape')?.type, 'file');
  await fs.rm(path.join(tree, 'lib', 'escape'));
  symlinkSync('../../outside', path.join(tree, 'lib', 'escape2'));
  await assert.rejects(layerFromDirectory(tree, 'opt/java', { store }), /points outside/);
});

test('layer cache: a process killed mid-write leaves no blob under a digest and no record; the next build is correct', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const cacheDir = path.join(dir, 'cache');
  const script = `
    import { Readable } from 'node:stream';
    import { writeLayer, LayerCache } from ${JSON.stringify(path.resolve('dist/src/image/index.js'))};
    const cache = new LayerCache(${JSON.stringify(cacheDir)});
    let n = 0;
    const slow = () => new Readable({ read() {
      if (n === 0) process.stdout.write('started\\n');
      if (n++ >= 64) return this.push(null);
      setTimeout(() => this.push(Buffer.alloc(1024 * 1024, n)), 50);
    } });
    await writeLayer([{ type: 'file', path: 'big.bin', size: 64 * 1024 * 1024, open: async () => slow(), contentDigest: 'sha256:' + '0'.repeat(64) }], { store: cache.store, cache });
    process.stdout.write('finished\\n');
  `;
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => child.kill('SIGKILL'));
  const output: string[] = [];
  child.stdout.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  const exitedEarly = new Promise<never>((_, reject) => child.on('exit', (code) => reject(new Error(`child exited early (${code}): ${output.join('')}`))));
  // Killed once the writer is part way: its temp blob is in the store.
  const blobDir = path.join(cacheDir, 'blobs', 'sha256');
  await Promise.race([
    exitedEarly,
    waitFor('the layer writer to start its temp blob', async () => output.join('').includes('started') && (await fs.readdir(blobDir).catch(() => [])).some((n) => n.includes('.tmp-')), 60_000),
  ]);
  child.removeAllListeners('exit');
  const exited = new Promise((resolve) => child.on('exit', resolve));
  child.kill('SIGKILL');
  await exited;
  assert.ok(!output.join('').includes('finished'), 'killed before finishing');
  const blobs = await fs.readdir(path.join(cacheDir, 'blobs', 'sha256'));
  assert.ok(blobs.length >= 1 && blobs.every((n) => n.includes('.tmp-')), `only temp files in the blob store, got ${blobs.join(', ')}`);
  assert.deepEqual(await fs.readdir(path.join(cacheDir, 'keys')).catch(() => []), [], 'no cache record');
  // The next writer is not fooled, and the stale temp file can be swept.
  const cache = new LayerCache(cacheDir);
  const entries = [{ type: 'file' as const, path: 'small.txt', data: 'ok' }];
  assert.equal((await writeLayer(entries, { store: cache.store, cache })).cached, false);
  assert.equal((await writeLayer(entries, { store: cache.store, cache })).cached, true);
  assert.equal(await cache.sweepTempFiles(0), blobs.length);
  const left = await fs.readdir(path.join(cacheDir, 'blobs', 'sha256'));
  assert.ok(left.every((n) => /^[a-f0-9]{64}$/.test(n)), 'only digest-named blobs remain');
  for (const name of left) assert.equal(sha256(readFileSync(path.join(cacheDir, 'blobs', 'sha256', name))), `sha256:${name}`);
});

test('layer: a multi-chunk layer has the same digests with 1 and 2 gzip threads, and unpacks to its entries', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const { randomBytes } = await import('node:crypto');
  // 5 MB over several files: more than one 1 MiB gzip chunk, part incompressible (like jars).
  const big = Buffer.concat([randomBytes(2 * 1024 * 1024), Buffer.from('x'.repeat(1024 * 1024))]);
  const entries = [
    { type: 'file' as const, path: 'app/libs/a.jar', data: big },
    { type: 'file' as const, path: 'app/libs/b.jar', data: Buffer.concat([big.subarray(0, 1500000), randomBytes(700000)]) },
    { type: 'file' as const, path: 'app/classes/Main.class', data: 'class' },
  ];
  const one = await writeLayer(entries, { store: new BlobStore(path.join(dir, 'one')), gzipThreads: 1 });
  const two = await writeLayer(entries, { store: new BlobStore(path.join(dir, 'two')), gzipThreads: 2 });
  assert.equal(two.descriptor.digest, one.descriptor.digest);
  assert.equal(two.diffId, one.diffId);
  const blob = readFileSync(one.blobPath);
  assert.equal(sha256(blob), one.descriptor.digest);
  assert.equal(sha256(gunzipSync(blob)), one.diffId);
  const items = await listTar(blob);
  assert.ok(items.find((i) => i.name === 'app/libs/a.jar')?.data.equals(big));
});
