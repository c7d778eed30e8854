// A whole build with real dependency jars (several MB, so several 1 MiB gzip
// chunks of stored jar content): the same image with 1 and 2 gzip threads, and
// a rebuild after a one-class change on a warm cache gives the same image as a
// cold build of the changed program, with only the classes layer changed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { buildJvmImage, writeImage } from '../../src/image/index.js';
import { COMMONS_LANG3, helloSource, makeJar, tempDir } from './helpers.js';

/** About 12 MB of the machine's Debian jars, always the same ones (by name), commons-lang3 included. */
function dependencyJars(): string[] {
  const real = [...new Set(readdirSync('/usr/share/java').filter((n) => n.endsWith('.jar')).map((n) => realpathSync(path.join('/usr/share/java', n))))].sort();
  const picked = [realpathSync(COMMONS_LANG3)];
  let total = 0;
  const seenNames = new Set(picked.map((p) => path.basename(p)));
  for (const jar of real) {
    if (total > 12 * 1024 * 1024) break;
    if (seenNames.has(path.basename(jar))) continue;
    seenNames.add(path.basename(jar));
    picked.push(jar);
    total += statSync(jar).size;
  }
  assert.ok(total > 4 * 1024 * 1024, `only ${total} bytes of jars in /usr/share/java: install the test packages (scripts/setup --test)`);
  return picked;
}

async function withThreads<T>(threads: string, work: () => Promise<T>): Promise<T> {
  const previous = process.env.WEFT_GZIP_THREADS;
  process.env.WEFT_GZIP_THREADS = threads;
  try {
    return await work();
  } finally {
    if (previous === undefined) delete process.env.WEFT_GZIP_THREADS;
    else process.env.WEFT_GZIP_THREADS = previous;
  }
}

test('build: one digest for 1 and 2 gzip threads; a one-class rebuild equals a cold build of the change', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const libs = dependencyJars();
  const v1 = makeJar(dir, path.join(dir, 'v1', 'app.jar'), helloSource('one'), { classpath: [COMMONS_LANG3], manifest: { 'Main-Class': 'com.example.Hello' } });
  const v2 = makeJar(dir, path.join(dir, 'v2', 'app.jar'), helloSource('two'), { classpath: [COMMONS_LANG3], manifest: { 'Main-Class': 'com.example.Hello' } });
  const build = (program: string, cache: string) => buildJvmImage({ program, libs, cacheDir: path.join(dir, cache) });

  const oneThread = await withThreads('1', () => build(v1, 'cache-a'));
  const twoThreads = await withThreads('2', () => build(v1, 'cache-b'));
  assert.equal(twoThreads.manifestDigest, oneThread.manifestDigest);
  assert.deepEqual(twoThreads.layers.map((l) => l.digest), oneThread.layers.map((l) => l.digest));
  const dependencies = oneThread.layers.find((l) => l.name === 'dependencies')!;
  assert.ok(dependencies.size > 4 * 1024 * 1024, 'the dependency layer spans several gzip chunks');

  const rebuilt = await withThreads('2', () => build(v2, 'cache-a'));
  const cold = await withThreads('1', () => build(v2, 'cache-c'));
  assert.equal(rebuilt.manifestDigest, cold.manifestDigest, 'warm one-class rebuild = cold build of the changed program');
  assert.notEqual(rebuilt.manifestDigest, oneThread.manifestDigest);
  for (const layer of rebuilt.layers) {
    const before = oneThread.layers.find((l) => l.name === layer.name)!;
    if (layer.name === 'classes') {
      assert.notEqual(layer.digest, before.digest);
      assert.equal(layer.cached, false);
    } else {
      assert.equal(layer.digest, before.digest, `${layer.name} is unchanged by a one-class change`);
      assert.equal(layer.cached, true, `${layer.name} comes from the cache`);
    }
  }
  // Both write out (the layout's blobs are hard links into the cache, checked by size and digest on the way).
  await writeImage(rebuilt.image, `oci:${path.join(dir, 'out')}:v2`);
  await writeImage(cold.image, `oci:${path.join(dir, 'out')}:v2-cold`);
});
