// The installed weft (dist/bin/weft.cjs) runs its bundles through V8's code
// cache (src/common/code-cache.ts). The cache must never change what weft does:
// corrupt, truncated, foreign or stale files are ignored and replaced, a cache
// directory that cannot be written costs nothing but the compile, concurrent
// first runs leave one valid file, and output (--help, --json, NO_COLOR) is
// the same with and without it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { codeCacheFile, readCodeCache, writeCodeCache } from '../../src/common/code-cache.js';
import { mustRun, runCommand, type CommandResult } from '../support/command.js';
import { withTempDir } from '../support/temp.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const bundle = path.join(here, '..', '..', 'bin', 'weft.cjs');
const loaderModule = path.join(here, '..', '..', 'src', 'common', 'code-cache.js');

/** Runs the installed weft with its code cache in `cacheDir` (or caching off); never throws, returns what it printed and its exit code. */
function weft(args: string[], cacheDir: string | undefined, env: Record<string, string> = {}): Promise<CommandResult> {
  // This process's NO_COLOR as it is (runCommand would set it), the cache variables only as given here.
  const cache = cacheDir === undefined ? { WEFT_CODE_CACHE: '0', WEFT_CODE_CACHE_DIR: undefined } : { WEFT_CODE_CACHE: undefined, WEFT_CODE_CACHE_DIR: cacheDir };
  return runCommand(process.execPath, [bundle, ...args], { env: { NO_COLOR: process.env.NO_COLOR, ...env, ...cache } });
}

async function cacheFiles(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).sort();
}

test('the first run writes one valid cache file per bundle it ran; later runs print the same', () =>
  withTempDir('weft-code-cache-', async (dir) => {
    const uncached = await weft(['--help'], undefined);
    assert.equal(uncached.code, 0, uncached.stderr);
    const first = await weft(['--help'], dir);
    assert.deepEqual(first, uncached);
    const files = await cacheFiles(dir);
    assert.equal(files.length, 1, files.join(', '));
    assert.match(files[0]!, /^main\.cjs-[0-9a-f]{32}\.bin$/);
    assert.ok(readCodeCache(path.join(dir, files[0]!)), 'the cache file does not pass its own check');
    assert.deepEqual(await weft(['--help'], dir), uncached);
    const copyHelp = await weft(['copy', '--help'], dir);
    assert.equal(copyHelp.code, 0, copyHelp.stderr);
    assert.deepEqual(copyHelp, await weft(['copy', '--help'], undefined));
    assert.ok((await cacheFiles(dir)).some((f) => /^copy\.cjs-[0-9a-f]{32}\.bin$/.test(f)), (await cacheFiles(dir)).join(', '));
  }));

test('corrupt, truncated and foreign cache files are ignored and replaced', () =>
  withTempDir('weft-code-cache-', async (dir) => {
    const expected = await weft(['copy', '--help'], undefined);
    assert.equal((await weft(['copy', '--help'], dir)).code, 0);
    const files = (await cacheFiles(dir)).map((f) => path.join(dir, f));
    assert.equal(files.length, 2, files.join(', '));
    const damages: Array<[string, (bytes: Buffer) => Buffer]> = [
      ['one payload byte flipped', (b) => {
        const c = Buffer.from(b);
        c[c.length - 100]! ^= 0xff;
        return c;
      }],
      ['truncated', (b) => b.subarray(0, Math.floor(b.length / 2))],
      ['empty', () => Buffer.alloc(0)],
      ['random bytes', (b) => Buffer.from(Array.from({ length: b.length }, (_, i) => (i * 7919) % 256))],
    ];
    const original = await Promise.all(files.map((f) => readFile(f)));
    const check = async (what: string): Promise<void> => {
      assert.deepEqual(await weft(['copy', '--help'], dir), expected, what);
      for (const file of files) assert.ok(readCodeCache(file), `${what}: ${path.basename(file)} was not replaced by a valid file`);
    };
    for (const [what, damage] of damages) {
      for (const [i, file] of files.entries()) await writeFile(file, damage(original[i]!));
      await check(what);
    }
    // Well-formed files whose payloads V8 made for the other bundle: our check passes, V8 rejects them.
    for (const [i, file] of files.entries()) await writeFile(file, original[(i + 1) % files.length]!);
    await check('the other bundle’s cache');
    assert.deepEqual((await cacheFiles(dir)).filter((f) => f.endsWith('.tmp')), []);
  }));

test('a cache directory that cannot be written costs nothing but the cache', () =>
  withTempDir('weft-code-cache-', async (dir) => {
    // A regular file where the directory should be: every mkdir and write below it fails (root ignores modes, not this).
    const blocked = path.join(dir, 'not-a-directory');
    await writeFile(blocked, 'x');
    const expected = await weft(['copy', '--help'], undefined);
    assert.deepEqual(await weft(['copy', '--help'], path.join(blocked, 'cache')), expected);
    assert.deepEqual(await weft(['--help'], path.join(blocked, 'cache')), await weft(['--help'], undefined));
    assert.equal(await readFile(blocked, 'utf8'), 'x');
  }));

test('concurrent first runs all succeed and leave one valid file per bundle, no temporary files', () =>
  withTempDir('weft-code-cache-', async (dir) => {
    const expected = await weft(['copy', '--help'], undefined);
    const outs = await Promise.all(Array.from({ length: 6 }, () => weft(['copy', '--help'], dir)));
    for (const out of outs) assert.deepEqual(out, expected);
    const files = await cacheFiles(dir);
    assert.equal(files.length, 2, files.join(', '));
    for (const f of files) assert.ok(readCodeCache(path.join(dir, f)), f);
  }));

test('errors, --json and NO_COLOR print the same with a cold cache, a warm cache and no cache', () =>
  withTempDir('weft-code-cache-', async (dir) => {
    const missing = path.join(dir, 'no-such-layout');
    for (const args of [
      ['copy', '--json', `oci:${missing}:v1`, `oci:${path.join(dir, 'out')}:v1`],
      ['copy', `oci:${missing}:v1`, `oci:${path.join(dir, 'out')}:v1`],
      ['inspect', '--json', `oci:${missing}:v1`],
      ['copy', 'nonsense:ref', 'oci:x'],
    ]) {
      for (const env of [{ NO_COLOR: '1' }, { FORCE_COLOR: '1' }] as Array<Record<string, string>>) {
        const uncached = await weft(args, undefined, env);
        assert.notEqual(uncached.code, 0, `${args.join(' ')} should fail`);
        assert.deepEqual(await weft(args, path.join(dir, 'cache'), env), uncached, `${args.join(' ')} (cold cache)`);
        assert.deepEqual(await weft(args, path.join(dir, 'cache'), env), uncached, `${args.join(' ')} (warm cache)`);
      }
    }
  }));

test('requireWithCodeCache: miss, then hit; a V8-rejected payload is reported and replaced; a changed source gets another file', () =>
  withTempDir('weft-code-cache-', async (dir) => {
    const mod = path.join(dir, 'mod.cjs');
    const cache = path.join(dir, 'cache');
    await writeFile(mod, 'exports.answer = function answer(n) { return n * 2; }; exports.dir = __dirname;\n');
    const probe = `
      const { requireWithCodeCache } = await import(${JSON.stringify(loaderModule)});
      const { exports, cache } = requireWithCodeCache(${JSON.stringify(mod)}, { dir: ${JSON.stringify(cache)} });
      console.log(JSON.stringify({ cache, answer: exports.answer(21), dir: exports.dir }));`;
    const once = async (): Promise<{ cache: string; answer: number; dir: string }> =>
      JSON.parse((await mustRun(process.execPath, ['--input-type=module', '-e', probe])).stdout) as { cache: string; answer: number; dir: string };
    assert.deepEqual(await once(), { cache: 'miss', answer: 42, dir });
    assert.deepEqual(await once(), { cache: 'hit', answer: 42, dir });
    const [file] = await cacheFiles(cache);
    const cacheFile = path.join(cache, file!);
    assert.equal(cacheFile, codeCacheFile(cache, mod, await readFile(mod, 'utf8')));
    // Well-formed for our check, but not V8's data: V8 rejects it, the module still runs, a good file replaces it.
    writeCodeCache(cacheFile, Buffer.from('not a V8 code cache, but long enough to look like one'.repeat(4)));
    assert.ok(readCodeCache(cacheFile));
    assert.deepEqual(await once(), { cache: 'rejected', answer: 42, dir });
    assert.deepEqual(await once(), { cache: 'hit', answer: 42, dir });
    // A corrupt file fails our check before V8 sees it.
    const bytes = await readFile(cacheFile);
    bytes[bytes.length - 1]! ^= 1;
    await writeFile(cacheFile, bytes);
    assert.equal(readCodeCache(cacheFile), undefined);
    assert.deepEqual(await once(), { cache: 'miss', answer: 42, dir });
    // A changed source: another file name (the old file is never read for it), which replaces the old one.
    await writeFile(mod, 'exports.answer = function answer(n) { return n * 2 + 0; }; exports.dir = __dirname;\n');
    assert.deepEqual(await once(), { cache: 'miss', answer: 42, dir });
    const after = await cacheFiles(cache);
    assert.equal(after.length, 1, after.join(', '));
    assert.notEqual(after[0], file);
    assert.equal(path.join(cache, after[0]!), codeCacheFile(cache, mod, await readFile(mod, 'utf8')));
  }));
