// Jars in layers: their deflated entries are stored as they are (deflate stored
// blocks) instead of being deflated again, the dependency jars are checked in
// one pass when they are plain, and none of it may change what the image holds
// or make its bytes depend on threads or on how an entry was given.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import tar from 'tar-stream';
import { BlobStore, openJar, writeLayer, sha256, type LayerEntry } from '../../src/image/index.js';
import { CHUNK_SIZE, MIN_STORED_RANGE, deflatedRanges, parallelGzip } from '../../src/image/pgzip/index.js';
import { quickJarNames } from '../../src/image/jar-quick.js';
import { DEFAULT_LIMITS, JarError } from '../../src/image/jar.js';
import { COMMONS_LANG3, GUAVA, run, tempDir, writeZip } from './helpers.js';

async function untar(gzipped: Buffer): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  const extract = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on('entry', (header, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: unknown) => chunks.push(c as Buffer));
      stream.on('end', () => {
        if (header.type === 'file') files.set(header.name, Buffer.concat(chunks));
        next();
      });
    });
    extract.on('finish', resolve);
    extract.on('error', reject);
  });
  extract.end(gunzipSync(gzipped));
  await done;
  return files;
}

test('deflatedRanges: sorted, disjoint, inside the jar, long enough, and most of a real jar; nothing for what is not a zip', () => {
  for (const jar of [GUAVA, COMMONS_LANG3]) {
    const data = readFileSync(jar);
    const ranges = deflatedRanges(data);
    assert.ok(ranges.length > 0, jar);
    let previousEnd = 0;
    let stored = 0;
    for (const [start, end] of ranges) {
      assert.ok(start >= previousEnd && end > start && end <= data.length, `${jar}: [${start}, ${end})`);
      assert.ok(end - start >= MIN_STORED_RANGE);
      previousEnd = end;
      stored += end - start;
    }
    // The central directory (at the end) is never stored: it is the part that compresses.
    assert.ok(previousEnd < data.length - 22);
    assert.ok(stored > 0.8 * data.length, `${jar}: only ${stored} of ${data.length} bytes found deflated`);
  }
  assert.deepEqual(deflatedRanges(Buffer.from('not a zip at all, just text '.repeat(100))), []);
  const guava = readFileSync(GUAVA);
  assert.deepEqual(deflatedRanges(guava.subarray(0, guava.length - 30)), [], 'a truncated jar (no end record) gives no ranges');
  // A damaged central directory: no ranges rather than an error (the bytes are untrusted).
  const damaged = Buffer.from(guava);
  damaged.writeUInt32LE(12345, damaged.length - 6); // the end record's central directory offset
  assert.deepEqual(deflatedRanges(damaged), []);
});

test('pgzip storeAsIs: valid gzip, the input back, the same bytes for 1, 2 and 5 threads, with ranges across chunk cuts and at the end', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const size = 4 * CHUNK_SIZE + 5000;
  const input = Buffer.concat([Buffer.from('class A { int x; }\n'.repeat(size / 19 / 2)), randomBytes(size)]).subarray(0, size);
  const cases: Array<Array<[number, number]>> = [
    [[100, 70_000]],
    [[CHUNK_SIZE - 1000, CHUNK_SIZE + 50_000], [2 * CHUNK_SIZE - 10, 2 * CHUNK_SIZE + 10], [3 * CHUNK_SIZE - 100, size]],
    [[0, size]],
    [[5, 6], [MIN_STORED_RANGE, 3 * MIN_STORED_RANGE]],
  ];
  for (const [k, ranges] of cases.entries()) {
    const one = await parallelGzip(input, { level: 1, threads: 1, storeAsIs: ranges });
    const two = await parallelGzip(input, { level: 1, threads: 2, storeAsIs: ranges });
    const five = await parallelGzip(input, { level: 6, threads: 5, storeAsIs: ranges });
    assert.equal(sha256(two), sha256(one), `case ${k}: 2 threads differ from 1`);
    assert.ok(gunzipSync(one).equals(input), `case ${k}: zlib does not give the input back`);
    assert.ok(gunzipSync(five).equals(input), `case ${k}: level 6`);
    const file = path.join(dir, `${k}.gz`);
    writeFileSync(file, one);
    run('gzip', ['-t', file]); // throws (fails the test) on a bad stream, CRC or length
  }
  const plain = await parallelGzip(input, { level: 1, threads: 2 });
  const allStored = await parallelGzip(input, { level: 1, threads: 2, storeAsIs: [[0, size]] });
  assert.notEqual(sha256(allStored), sha256(plain), 'stored ranges change the bytes');
  assert.ok(allStored.length > input.length, 'a wholly stored input is not compressed at all');
  await assert.rejects(parallelGzip(input, { level: 1, storeAsIs: [[500, 400]] }), RangeError);
  await assert.rejects(parallelGzip(input, { level: 1, storeAsIs: [[1000, 9000], [5000, 20000]] }), RangeError);
});

test('layer: jars are stored, not deflated again; the bytes do not depend on threads or on how an entry is given', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const guava = readFileSync(GUAVA);
  const lang = readFileSync(COMMONS_LANG3);
  const variants: Record<string, LayerEntry[]> = {
    source: [
      { type: 'file', path: 'app/libs/guava.jar', source: GUAVA },
      { type: 'file', path: 'app/libs/commons-lang3.jar', source: COMMONS_LANG3 },
    ],
    data: [
      { type: 'file', path: 'app/libs/guava.jar', data: guava },
      { type: 'file', path: 'app/libs/commons-lang3.jar', data: lang },
    ],
    stream: [
      { type: 'file', path: 'app/libs/guava.jar', size: guava.length, open: async () => createReadStream(GUAVA) },
      { type: 'file', path: 'app/libs/commons-lang3.jar', size: lang.length, contentDigest: sha256(lang), open: async () => createReadStream(COMMONS_LANG3) },
    ],
  };
  const digests = new Set<string>();
  let blob: Buffer | undefined;
  for (const [name, entries] of Object.entries(variants)) {
    for (const threads of [1, 2]) {
      const layer = await writeLayer([...entries, { type: 'file', path: 'app/classes/Main.class', data: 'x'.repeat(9000) }], {
        store: new BlobStore(path.join(dir, `${name}-${threads}`)),
        gzipThreads: threads,
      });
      digests.add(`${layer.descriptor.digest} ${layer.diffId}`);
      blob = readFileSync(layer.blobPath);
    }
  }
  assert.equal(digests.size, 1, `one layer whatever the threads and the kind of entry: ${[...digests].join(', ')}`);
  const files = await untar(blob!);
  assert.ok(files.get('app/libs/guava.jar')?.equals(guava));
  assert.ok(files.get('app/libs/commons-lang3.jar')?.equals(lang));
  // Stored: the blob is about the jars' size (deflating them again would save ~8 % for 17x the CPU).
  assert.ok(blob!.length > 0.9 * (guava.length + lang.length), `blob ${blob!.length} bytes for ${guava.length + lang.length} bytes of jars`);
  const file = path.join(dir, 'layer.tar.gz');
  writeFileSync(file, blob!);
  run('gzip', ['-t', file]);
});

test('quickJarNames: the same names as yauzl for plain jars; "not sure" for every unusual or hostile one, and yauzl refuses those', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  for (const jarFile of [GUAVA, COMMONS_LANG3]) {
    const names = quickJarNames(readFileSync(jarFile), DEFAULT_LIMITS);
    assert.ok(names, `${jarFile} is plain`);
    const jar = await openJar(jarFile);
    assert.deepEqual([...names].sort(), [...jar.entries.keys()].sort());
    jar.close();
  }
  const manifest = { name: 'META-INF/MANIFEST.MF', data: Buffer.from('Manifest-Version: 1.0\nMain-Class: A\n') };
  const plain = path.join(dir, 'plain.jar');
  writeZip(plain, [manifest, { name: 'A.class', data: Buffer.from('x') }]);
  assert.deepEqual([...(quickJarNames(readFileSync(plain), DEFAULT_LIMITS) ?? [])].sort(), ['A.class', 'META-INF/MANIFEST.MF']);
  const hostile: Record<string, Parameters<typeof writeZip>[1]> = {
    dotdot: [manifest, { name: '../../evil.sh', data: Buffer.from('boom') }],
    absolute: [manifest, { name: '/etc/cron.d/evil', data: Buffer.from('boom') }],
    drive: [manifest, { name: 'C:/evil', data: Buffer.from('boom') }],
    backslash: [manifest, { name: 'a\\b.class', data: Buffer.from('x') }],
    symlink: [manifest, { name: 'link', data: Buffer.from('/etc/passwd'), method: 'store', unixMode: 0o120777 }],
    duplicate: [manifest, { name: 'A.class', data: Buffer.from('x') }, { name: 'A.class', data: Buffer.from('y') }],
    nonAscii: [manifest, { name: 'Ä.class', data: Buffer.from('x') }],
    ratio: [manifest, { name: 'zeros.bin', data: Buffer.alloc(4 * 1024 * 1024) }],
    storedLiar: [manifest, { name: 'r.txt', data: Buffer.from('hello'), method: 'store', declaredSize: 100 }],
    badManifestCrc: [{ ...manifest, crc: 12345 }, { name: 'A.class', data: Buffer.from('x') }],
    lyingManifest: [{ ...manifest, declaredSize: 10 }, { name: 'A.class', data: Buffer.from('x') }],
  };
  for (const [name, members] of Object.entries(hostile)) {
    const file = path.join(dir, `${name}.jar`);
    writeZip(file, members);
    assert.equal(quickJarNames(readFileSync(file), DEFAULT_LIMITS), undefined, `${name} must go to yauzl`);
    if (name !== 'nonAscii') await assert.rejects(openJar(file), JarError, `${name}: yauzl and openJar refuse it`);
  }
  const guava = readFileSync(GUAVA);
  assert.equal(quickJarNames(guava.subarray(0, guava.length - 30), DEFAULT_LIMITS), undefined, 'truncated');
  assert.equal(quickJarNames(Buffer.from('just text'), DEFAULT_LIMITS), undefined, 'not a zip');
  assert.equal(quickJarNames(guava, { ...DEFAULT_LIMITS, maxEntries: 10 }), undefined, 'over the entry limit');
  assert.equal(quickJarNames(guava, { ...DEFAULT_LIMITS, maxTotalUncompressed: 1000 }), undefined, 'over the size limit');
});
