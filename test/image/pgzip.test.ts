// Parallel gzip: the output is one valid gzip member whatever the number of
// threads, decompresses to the input, and has the same bytes for 1 and N threads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gunzipSync } from 'node:zlib';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { CHUNK_SIZE, parallelGzip } from '../../src/image/pgzip/index.js';

const run = promisify(execFile);
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Text that compresses well, with repeats that cross chunk boundaries, mixed with incompressible runs. */
function sample(size: number, seed: number): Buffer {
  const out = Buffer.alloc(size);
  const noise = randomBytes(64 * 1024);
  let offset = 0;
  let i = seed;
  while (offset < size) {
    const piece = i % 5 === 0 ? noise.subarray(0, 5000 + (i % 17) * 100) : Buffer.from(`class Entry${i % 97} extends Base { int value = ${i}; }\n`.repeat(40));
    offset += piece.copy(out, offset);
    i++;
  }
  return out;
}

const sizes = [0, 1, 100, 32 * 1024 - 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 12345];

test('decompresses to the input (zlib and gzip -t) and gives the same bytes for 1, 2 and 5 threads', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'weft-pgzip-'));
  try {
    for (const size of sizes) {
      const input = sample(size, size);
      const one = await parallelGzip(input, { level: 1, threads: 1 });
      const two = await parallelGzip(input, { level: 1, threads: 2 });
      const five = await parallelGzip(input, { level: 1, threads: 5 });
      assert.equal(sha(two), sha(one), `size ${size}: 2 threads differ from 1`);
      assert.equal(sha(five), sha(one), `size ${size}: 5 threads differ from 1`);
      assert.ok(gunzipSync(one).equals(input), `size ${size}: zlib does not give the input back`);
      const file = path.join(dir, `${size}.gz`);
      await writeFile(file, one);
      await run('gzip', ['-t', file]); // rejects (fails the test) on a bad CRC, length or stream
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('every level gives valid output, and the dictionary keeps compression close to one stream', async () => {
  const input = sample(4 * CHUNK_SIZE + 77, 3);
  for (const level of [0, 1, 6, 9]) {
    const out = await parallelGzip(input, { level, threads: 3 });
    assert.ok(gunzipSync(out).equals(input), `level ${level}`);
  }
  // Without the shared 32 KiB the text repeating across each cut would be coded again;
  // with it, the parallel output stays within 1% of a single deflate stream.
  const parallel = await parallelGzip(input, { level: 6, threads: 2 });
  const single = (await import('node:zlib')).gzipSync(input, { level: 6, memLevel: 9 });
  assert.ok(parallel.length <= single.length * 1.01 + 64, `parallel ${parallel.length} vs single ${single.length}`);
});

test('the output does not depend on how the input is written', async () => {
  const input = sample(2 * CHUNK_SIZE + 5, 11);
  const { ParallelGzip } = await import('../../src/image/pgzip/index.js');
  const gzip = new ParallelGzip({ level: 1, threads: 2 });
  const out: Buffer[] = [];
  gzip.on('data', (b: Buffer) => out.push(b));
  const done = new Promise((resolve) => gzip.on('end', resolve));
  gzip.end(input); // one large write instead of parallelGzip's many small ones
  await done;
  assert.equal(sha(Buffer.concat(out)), sha(await parallelGzip(input, { level: 1, threads: 1 })));
});
