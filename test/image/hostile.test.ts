// Bad input gets a clear error and nothing partial is written: each case runs
// the real `weft build` command and checks the output does not exist afterwards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync, copyFileSync } from 'node:fs';
import path from 'node:path';
import { buildJvmImage, writeImage, openJar, planJvmLayers, JarError } from '../../src/image/index.js';
import { COMMONS_LANG3, GUAVA, helloSource, makeJar, tempDir, writeZip } from './helpers.js';

/**
 * Runs a build that must fail with `pattern` (in-process: the same calls `weft build` makes),
 * and checks that neither output nor temp files appear.
 */
async function expectRefused(dir: string, args: string[], pattern: RegExp): Promise<void> {
  const out = path.join(dir, `out-${Math.random().toString(36).slice(2)}`);
  const archive = `${out}.tar`;
  const [program, ...rest] = args;
  const libs: string[] = [];
  let main: string | undefined;
  for (let i = 0; i < rest.length; i += 2) {
    if (rest[i] === '--lib') libs.push(rest[i + 1]);
    else if (rest[i] === '--main') main = rest[i + 1];
    else throw new Error(`test helper does not know ${rest[i]}`);
  }
  for (const output of [`oci:${out}:v1`, `docker-archive:${archive}:app:v1`]) {
    await assert.rejects(
      (async () => {
        const result = await buildJvmImage({ program, libs, main, cacheDir: path.join(dir, 'cache') });
        await writeImage(result.image, output);
      })(),
      (error: Error) => {
        assert.match(error.message, pattern);
        return true;
      },
    );
  }
  assert.equal(existsSync(out), false, 'no layout written');
  assert.equal(existsSync(archive), false, 'no archive written');
  assert.deepEqual(readdirSync(dir).filter((n) => n.includes('.tmp-')), [], 'no temp files left');
}

test('hostile: a file that is not a jar', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const bogus = path.join(dir, 'app.jar');
  writeFileSync(bogus, 'this is not a zip file at all\n'.repeat(20));
  await expectRefused(dir, [bogus], /not a jar \(zip\) file/);
  // also as a dependency
  const good = makeJar(dir, path.join(dir, 'good.jar'), helloSource(), { classpath: [COMMONS_LANG3], manifest: { 'Main-Class': 'com.example.Hello' } });
  await expectRefused(dir, [good, '--lib', bogus], /not a jar \(zip\) file/);
});

test('hostile: a truncated jar', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const whole = readFileSync(GUAVA);
  const cut = path.join(dir, 'cut.jar');
  writeFileSync(cut, whole.subarray(0, Math.floor(whole.length / 2)));
  await expectRefused(dir, [cut, '--main', 'com.google.common.base.Strings'], /truncated/);
  // Cut just before the end record's comment: the central directory is damaged.
  const tail = path.join(dir, 'tail.jar');
  writeFileSync(tail, whole.subarray(0, whole.length - 30));
  await expectRefused(dir, [tail, '--main', 'com.google.common.base.Strings'], /truncated|damaged/);
});

test('hostile: entry names with ../ or absolute paths', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const manifest = { name: 'META-INF/MANIFEST.MF', data: Buffer.from('Manifest-Version: 1.0\nMain-Class: A\n') };
  const dotdot = path.join(dir, 'dotdot.jar');
  writeZip(dotdot, [manifest, { name: 'A.class', data: Buffer.from('x') }, { name: '../../evil.sh', data: Buffer.from('boom') }]);
  await expectRefused(dir, [dotdot], /outside its directory.*invalid relative path/);
  const absolute = path.join(dir, 'absolute.jar');
  writeZip(absolute, [manifest, { name: 'A.class', data: Buffer.from('x') }, { name: '/etc/cron.d/evil', data: Buffer.from('boom') }]);
  await expectRefused(dir, [absolute], /outside its directory.*absolute path/);
  const symlinkEntry = path.join(dir, 'symlink.jar');
  writeZip(symlinkEntry, [manifest, { name: 'A.class', data: Buffer.from('x') }, { name: 'link', data: Buffer.from('/etc/passwd'), method: 'store', unixMode: 0o120777 }]);
  await expectRefused(dir, [symlinkEntry], /symlink entry/);
});

test('hostile: a symlink in a --lib directory pointing outside it', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const app = makeJar(dir, path.join(dir, 'app.jar'), helloSource(), { classpath: [COMMONS_LANG3], manifest: { 'Main-Class': 'com.example.Hello' } });
  const libs = path.join(dir, 'libs');
  mkdirSync(libs);
  copyFileSync(COMMONS_LANG3, path.join(libs, 'commons-lang3.jar'));
  symlinkSync(GUAVA, path.join(libs, 'guava.jar'));
  await expectRefused(dir, [app, '--lib', libs], /symlink to .*outside the directory/);
});

test('hostile: a missing main class', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const app = makeJar(dir, path.join(dir, 'app.jar'), helloSource(), { classpath: [COMMONS_LANG3], manifest: { 'Main-Class': 'com.example.Missing' } });
  await expectRefused(dir, [app, '--lib', COMMONS_LANG3], /main class com\.example\.Missing .*is not in/);
  const noMain = makeJar(dir, path.join(dir, 'nomain.jar'), helloSource(), { classpath: [COMMONS_LANG3] });
  await expectRefused(dir, [noMain, '--lib', COMMONS_LANG3], /no Main-Class.*--main/);
  await expectRefused(dir, [noMain, '--lib', COMMONS_LANG3, '--main', 'not a class'], /not a Java class name/);
});

test('hostile: zip bombs (ratio, total size, lying sizes)', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const manifest = { name: 'META-INF/MANIFEST.MF', data: Buffer.from('Manifest-Version: 1.0\nMain-Class: A\n') };
  // 64 MiB of zeros deflates to ~64 KiB: a 1000x ratio.
  const ratio = path.join(dir, 'ratio.jar');
  writeZip(ratio, [manifest, { name: 'A.class', data: Buffer.from('x') }, { name: 'zeros.bin', data: Buffer.alloc(64 * 1024 * 1024) }]);
  await expectRefused(dir, [ratio], /zip bomb/);
  // Many moderately compressible entries that add up past the total limit (checked with a low limit in-process).
  const total = path.join(dir, 'total.jar');
  const chunk = Buffer.alloc(512 * 1024, 7);
  writeZip(total, [manifest, { name: 'A.class', data: Buffer.from('x') }, ...Array.from({ length: 8 }, (_, i) => ({ name: `r${i}.bin`, data: chunk }))]);
  await assert.rejects(openJar(total, { maxTotalUncompressed: 2 * 1024 * 1024 }), (e: Error) => e instanceof JarError && /zip bomb/.test(e.message));
  // An entry that inflates to more than it declares is stopped while streaming.
  const liar = path.join(dir, 'liar.jar');
  writeZip(liar, [manifest, { name: 'A.class', data: Buffer.from('x') }, { name: 'res.txt', data: Buffer.alloc(200_000, 1), declaredSize: 100 }]);
  await expectRefused(dir, [liar], /too many bytes|damaged|size|expected/i);
  // An entry whose content does not match its CRC-32.
  const badCrc = path.join(dir, 'crc.jar');
  writeZip(badCrc, [manifest, { name: 'A.class', data: Buffer.from('x') }, { name: 'res.txt', data: Buffer.from('hello'), crc: 12345 }]);
  await expectRefused(dir, [badCrc], /CRC-32/);
  // In-process: planning works, but reading the liar's entry fails.
  const plan = await planJvmLayers({ program: liar });
  plan.close();
});

test('hostile: a jar checked by an earlier build and then replaced by a bad one is refused (checks are keyed by content)', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const app = makeJar(dir, path.join(dir, 'app.jar'), helloSource(), { classpath: [COMMONS_LANG3], manifest: { 'Main-Class': 'com.example.Hello' } });
  const libs = path.join(dir, 'libs');
  mkdirSync(libs);
  copyFileSync(COMMONS_LANG3, path.join(libs, 'dep.jar'));
  const cacheDir = path.join(dir, 'cache');
  await buildJvmImage({ program: app, libs: [libs], cacheDir });
  const whole = readFileSync(COMMONS_LANG3);
  writeFileSync(path.join(libs, 'dep.jar'), whole.subarray(0, whole.length - 100));
  await assert.rejects(buildJvmImage({ program: app, libs: [libs], cacheDir }), /truncated|damaged/);
  // The program jar too.
  copyFileSync(COMMONS_LANG3, path.join(libs, 'dep.jar'));
  await buildJvmImage({ program: app, libs: [libs], cacheDir });
  writeZip(app, [{ name: 'META-INF/MANIFEST.MF', data: Buffer.from('Main-Class: com.example.Hello\n') }, { name: '../x.class', data: Buffer.from('x') }]);
  await assert.rejects(buildJvmImage({ program: app, libs: [libs], cacheDir }), /outside its directory/);
});
