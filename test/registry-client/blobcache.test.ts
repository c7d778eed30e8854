// The blob-location cache (where each blob was last pushed, per registry) stays
// bounded however many registries it sees: tests and benchmarks start a
// registry on a new port every time, and every push reads and rewrites it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { BlobLocationCache } from '../../src/registry/client/blobcache.js';

const digest = (registry: number, n: number): string => `sha256:${registry.toString(16).padStart(8, '0')}${n.toString(16).padStart(56, '0')}`;

test('the least recently used registries are dropped once the cache holds more than 20,000 digests', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'weft-blobcache-'));
  try {
    const file = path.join(dir, 'blob-locations.json');
    for (let r = 0; r < 30; r++) {
      const cache = new BlobLocationCache(file);
      await cache.record(`127.0.0.1:${10000 + r}`, 'repo', Array.from({ length: 1000 }, (_, n) => digest(r, n)));
      // Registry 0 is used again half-way: it becomes recent and must survive.
      if (r === 15) await cache.record('127.0.0.1:10000', 'other', [digest(0, 0)]);
      await cache.save();
    }
    const table = JSON.parse(await readFile(file, 'utf8')) as Record<string, Record<string, string[]>>;
    const total = Object.values(table).reduce((sum, d) => sum + Object.keys(d).length, 0);
    assert.ok(total <= 20_000, `${total} digests kept`);
    assert.ok(total >= 19_000, `${total} digests kept: too many dropped`);
    assert.ok(!('127.0.0.1:10001' in table), 'the oldest registry is still there');
    assert.ok('127.0.0.1:10029' in table);
    const fresh = new BlobLocationCache(file);
    assert.equal(await fresh.lookup('127.0.0.1:10029', digest(29, 999), 'elsewhere'), 'repo');
    assert.equal(await fresh.lookup('127.0.0.1:10000', digest(0, 0), 'repo'), 'other');
    assert.equal(await fresh.lookup('127.0.0.1:10001', digest(1, 0), 'elsewhere'), undefined);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a damaged cache file is ignored: lookups miss, the next save writes a good one', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'weft-blobcache-'));
  try {
    const file = path.join(dir, 'blob-locations.json');
    for (const text of ['{not json', '[1,2]', '{"127.0.0.1:5000": null, "127.0.0.1:5001": 7}', '']) {
      await writeFile(file, text);
      const cache = new BlobLocationCache(file);
      assert.equal(await cache.lookup('127.0.0.1:5000', digest(1, 1), 'x'), undefined, text);
      await cache.record('127.0.0.1:5000', 'repo', [digest(1, 1)]);
      await cache.save();
      assert.equal(await new BlobLocationCache(file).lookup('127.0.0.1:5000', digest(1, 1), 'x'), 'repo', text);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('recording what the file already says does not rewrite it; saves of two caches at once leave one good file', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'weft-blobcache-'));
  try {
    const file = path.join(dir, 'blob-locations.json');
    const digests = [digest(1, 1), digest(1, 2)];
    const first = new BlobLocationCache(file);
    await first.record('127.0.0.1:5000', 'repo', digests);
    await first.save();
    const written = await stat(file);
    // The same pull again (another process): nothing a lookup would answer differently, no write.
    const again = new BlobLocationCache(file);
    await again.record('127.0.0.1:5000', 'repo', digests);
    await again.save();
    assert.equal((await stat(file)).ino, written.ino, 'the file was rewritten although nothing changed');
    // Another repository first, or another registry last: written (a rename gives a new inode).
    await again.record('127.0.0.1:5000', 'other', [digest(1, 2)]);
    await again.save();
    const rewritten = await stat(file);
    assert.notEqual(rewritten.ino, written.ino, 'a change was not written');
    assert.equal(await new BlobLocationCache(file).lookup('127.0.0.1:5000', digest(1, 2), 'x'), 'other');
    // Two caches of one process saving at once (the same millisecond): each save is whole, no temp file left.
    const a = new BlobLocationCache(file);
    const b = new BlobLocationCache(file);
    await a.record('127.0.0.1:6000', 'a', [digest(2, 1)]);
    await b.record('127.0.0.1:7000', 'b', [digest(3, 1)]);
    await Promise.all([a.save(), b.save(), a.save()]);
    const table = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    assert.ok('127.0.0.1:6000' in table || '127.0.0.1:7000' in table, JSON.stringify(Object.keys(table)));
    assert.deepEqual((await readdir(dir)).filter((f) => f.endsWith('.tmp')), []);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
