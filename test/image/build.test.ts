// weft build against the real tools: skopeo inspects and copies what weft
// writes, umoci unpacks it, podman loads the docker-archive, and the unpacked
// files run with the machine's java.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { buildJvmImage, writeImage, readOciLayout, readDockerArchive, type JvmBuildOptions } from '../../src/image/index.js';
import { COMMONS_LANG3, GUAVA, helloSource, makeJar, run, tempDir, writeZip } from './helpers.js';

const CLI = path.resolve('dist/src/cli/main.js');

interface Fixture {
  dir: string;
  app: string;
  libs: string;
}

/** A thin program jar whose manifest Class-Path names lib/commons-lang3.jar, and a --lib directory with guava. */
function fixture(dir: string, message = 'hello'): Fixture {
  const appDir = path.join(dir, 'app');
  mkdirSync(path.join(appDir, 'lib'), { recursive: true });
  copyFileSync(COMMONS_LANG3, path.join(appDir, 'lib', 'commons-lang3.jar'));
  const app = makeJar(dir, path.join(appDir, 'app.jar'), helloSource(message), {
    classpath: [COMMONS_LANG3],
    manifest: { 'Main-Class': 'com.example.Hello', 'Class-Path': 'lib/commons-lang3.jar' },
    resources: { 'config/app.properties': 'greeting=hi\n' },
  });
  const libs = path.join(dir, 'libs');
  mkdirSync(libs, { recursive: true });
  copyFileSync(GUAVA, path.join(libs, 'guava.jar'));
  return { dir, app, libs };
}

const build = (f: Fixture, extra: Partial<JvmBuildOptions> = {}) =>
  buildJvmImage({ program: f.app, libs: [f.libs], cacheDir: path.join(f.dir, 'cache'), ...extra });

const skopeoInspect = (ref: string, raw = false): any => JSON.parse(run('skopeo', ['inspect', ...(raw ? ['--raw'] : []), ref]));

test('build: skopeo inspects and copies the OCI layout and the docker-archive; umoci unpacks; the files run', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const f = fixture(dir);
  const result = await build(f, { jvmFlags: ['-Dweft.test=1'], labels: { team: 'jvm' }, version: '1.2.3' });
  assert.deepEqual(result.layers.map((l) => l.name), ['dependencies', 'resources', 'classes']);
  assert.deepEqual(result.entrypoint, ['java', '-XX:MaxRAMPercentage=75', '-Dweft.test=1', '-cp', '/app/resources:/app/classes:/app/libs/*', 'com.example.Hello']);
  const layout = path.join(dir, 'out');
  await writeImage(result.image, `oci:${layout}:v1`);

  const inspected = skopeoInspect(`oci:${layout}:v1`);
  assert.equal(inspected.Digest, result.manifestDigest);
  assert.deepEqual(inspected.Layers, result.layers.map((l) => l.digest));
  assert.equal(inspected.Created, '1970-01-01T00:00:01Z');
  assert.deepEqual(inspected.Labels, { team: 'jvm' });
  const raw = skopeoInspect(`oci:${layout}:v1`, true);
  assert.equal(raw.annotations['org.opencontainers.image.title'], 'app');
  assert.equal(raw.annotations['org.opencontainers.image.version'], '1.2.3');
  assert.equal(raw.annotations['org.opencontainers.image.created'], '1970-01-01T00:00:01Z');
  const config = JSON.parse(run('skopeo', ['inspect', '--config', `oci:${layout}:v1`]));
  assert.deepEqual(config.config.Entrypoint, result.entrypoint);
  assert.equal(config.config.WorkingDir, '/app');
  assert.deepEqual(config.rootfs.diff_ids, result.layers.map((l) => l.diffId));

  // skopeo copies it (verifying every digest) into another layout and into a docker-archive.
  run('skopeo', ['copy', '--quiet', `oci:${layout}:v1`, `oci:${path.join(dir, 'copy')}:c`]);
  assert.equal(skopeoInspect(`oci:${path.join(dir, 'copy')}:c`).Digest, result.manifestDigest);

  // umoci unpacks it; files, modes and ownership as planned.
  const bundle = path.join(dir, 'bundle');
  run('umoci', ['unpack', '--rootless', '--image', `${layout}:v1`, bundle]);
  const rootfs = path.join(bundle, 'rootfs');
  for (const file of ['app/libs/commons-lang3.jar', 'app/libs/guava.jar', 'app/classes/com/example/Hello.class', 'app/classes/com/example/util/Helper.class', 'app/resources/config/app.properties']) {
    const stat = statSync(path.join(rootfs, file));
    assert.equal(stat.mode & 0o777, 0o644, `${file} mode`);
  }
  assert.equal(statSync(path.join(rootfs, 'app/classes/com')).mode & 0o777, 0o755);
  assert.equal(existsSync(path.join(rootfs, 'app/resources/META-INF/MANIFEST.MF')), false, 'the manifest is not copied');
  const runtimeConfig = JSON.parse(readFileSync(path.join(bundle, 'config.json'), 'utf8'));
  assert.deepEqual(runtimeConfig.process.args, result.entrypoint);
  // The unpacked class path runs (host java, image paths rebased onto the rootfs).
  const cp = ['app/resources', 'app/classes', 'app/libs/*'].map((p) => path.join(rootfs, p)).join(':');
  assert.equal(run('java', ['-cp', cp, 'com.example.Hello']).trim(), 'HELLO');

  // docker-archive: skopeo reads and copies it, podman loads it.
  const archive = path.join(dir, 'app.tar');
  await writeImage(result.image, `docker-archive:${archive}:weft-test/app:v1`);
  const fromArchive = skopeoInspect(`docker-archive:${archive}`);
  assert.deepEqual(fromArchive.Layers.length, 3);
  assert.equal(fromArchive.Created, '1970-01-01T00:00:01Z');
  run('skopeo', ['copy', '--quiet', `docker-archive:${archive}`, `oci:${path.join(dir, 'fromarchive')}:a`]);
  const copiedConfig = JSON.parse(run('skopeo', ['inspect', '--config', `oci:${path.join(dir, 'fromarchive')}:a`]));
  assert.deepEqual(copiedConfig.rootfs.diff_ids, result.layers.map((l) => l.diffId));
  const storage = path.join(dir, 'podman');
  const podman = ['--root', path.join(storage, 'root'), '--runroot', path.join(storage, 'run'), '--storage-driver', 'vfs'];
  const loaded = run('podman', [...podman, 'load', '-i', archive]);
  assert.match(loaded, /Loaded image.*weft-test\/app:v1/);
  const podmanInspect = JSON.parse(run('podman', [...podman, 'image', 'inspect', 'weft-test/app:v1']));
  assert.deepEqual(podmanInspect[0].Config.Entrypoint, result.entrypoint);
  assert.deepEqual(podmanInspect[0].RootFS.Layers, result.layers.map((l) => l.diffId));
  // vfs storage is plain directories under the test's temp dir: removing the dir cleans it up.

  // weft reads its own outputs back as the same image.
  assert.equal((await readOciLayout(layout, 'v1')).manifestDigest, result.manifestDigest);
  const back = await readDockerArchive(archive, 'weft-test/app:v1');
  assert.equal(back.config.rootfs.diff_ids.join(), result.layers.map((l) => l.diffId).join());
});

test('build: same inputs touched and listed in another order give the same digest; a class change only changes the classes layer; rebuilds hit the cache', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const f = fixture(dir);
  const extra = path.join(dir, 'extra');
  mkdirSync(extra);
  writeZip(path.join(extra, 'commons-io.jar'), [{ name: 'org/apache/commons/io/IOUtils.class', data: Buffer.from('io') }]);
  const first = await buildJvmImage({ program: f.app, libs: [f.libs, extra], cacheDir: path.join(dir, 'cache1') });
  assert.ok(first.layers.every((l) => !l.cached));
  // Touch every input, list the libs in another order, use a fresh cache: same digest.
  const later = new Date(Date.now() + 3_600_000);
  for (const file of [f.app, path.join(f.libs, 'guava.jar'), path.join(extra, 'commons-io.jar'), path.join(dir, 'app/lib/commons-lang3.jar')]) utimesSync(file, later, later);
  const second = await buildJvmImage({ program: f.app, libs: [extra, f.libs], cacheDir: path.join(dir, 'cache2') });
  assert.equal(second.manifestDigest, first.manifestDigest);
  // And byte-identical outputs.
  await writeImage(first.image, `oci:${path.join(dir, 'o1')}:x`);
  await writeImage(second.image, `oci:${path.join(dir, 'o2')}:x`);
  assert.equal(readFileSync(path.join(dir, 'o1/index.json'), 'utf8'), readFileSync(path.join(dir, 'o2/index.json'), 'utf8'));

  // Rebuild with the first cache: every layer cached, same digest.
  const cached = await buildJvmImage({ program: f.app, libs: [f.libs, extra], cacheDir: path.join(dir, 'cache1') });
  assert.ok(cached.layers.every((l) => l.cached), 'all layers from cache');
  assert.equal(cached.manifestDigest, first.manifestDigest);

  // Change one class: only the classes layer changes, and only it is rebuilt.
  makeJar(dir, f.app, helloSource('changed'), {
    classpath: [COMMONS_LANG3],
    manifest: { 'Main-Class': 'com.example.Hello', 'Class-Path': 'lib/commons-lang3.jar' },
    resources: { 'config/app.properties': 'greeting=hi\n' },
  });
  const changed = await buildJvmImage({ program: f.app, libs: [f.libs, extra], cacheDir: path.join(dir, 'cache1') });
  assert.notEqual(changed.manifestDigest, first.manifestDigest);
  for (const [i, layer] of changed.layers.entries()) {
    const before = first.layers[i];
    assert.equal(layer.name, before.name);
    if (layer.name === 'classes') {
      assert.notEqual(layer.digest, before.digest, 'classes layer changed');
      assert.equal(layer.cached, false);
    } else {
      assert.equal(layer.digest, before.digest, `${layer.name} layer unchanged`);
      assert.equal(layer.cached, true, `${layer.name} layer from cache`);
    }
  }
});

test('build: a Spring Boot fat jar is split into the same layers as the thin build', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const f = fixture(dir);
  const thin = await buildJvmImage({ program: f.app, libs: [COMMONS_LANG3], cacheDir: path.join(dir, 'cache') });
  // Assemble the fat jar from the thin one's classes with the jar tool.
  const stage = path.join(dir, 'fat');
  mkdirSync(path.join(stage, 'BOOT-INF/classes'), { recursive: true });
  mkdirSync(path.join(stage, 'BOOT-INF/lib'), { recursive: true });
  mkdirSync(path.join(stage, 'org/springframework/boot/loader'), { recursive: true });
  run('jar', ['--extract', '--file', f.app], { cwd: path.join(stage, 'BOOT-INF/classes') });
  run('rm', ['-rf', path.join(stage, 'BOOT-INF/classes/META-INF')]);
  copyFileSync(COMMONS_LANG3, path.join(stage, 'BOOT-INF/lib/commons-lang3.jar'));
  writeFileSync(path.join(stage, 'org/springframework/boot/loader/JarLauncher.class'), 'not really a class');
  writeFileSync(path.join(stage, 'BOOT-INF/classpath.idx'), '- "BOOT-INF/lib/commons-lang3.jar"\n');
  const manifest = path.join(dir, 'fat.mf');
  writeFileSync(manifest, 'Main-Class: org.springframework.boot.loader.JarLauncher\nStart-Class: com.example.Hello\n');
  const fatJar = path.join(dir, 'fat.jar');
  run('jar', ['--create', '--no-compress', '--file', fatJar, '--manifest', manifest, '-C', stage, '.']);

  const fat = await buildJvmImage({ program: fatJar, cacheDir: path.join(dir, 'cache') });
  assert.equal(fat.fatJar, 'spring-boot');
  assert.equal(fat.mainClass, 'com.example.Hello');
  assert.deepEqual(fat.layers.map((l) => l.name), ['dependencies', 'resources', 'classes']);
  for (const name of ['dependencies', 'resources', 'classes']) {
    assert.equal(fat.layers.find((l) => l.name === name)!.diffId, thin.layers.find((l) => l.name === name)!.diffId, `${name} layer equals the thin build's`);
  }
  assert.ok(fat.layers.every((l) => l.cached), 'the fat build reuses the thin build layers from the cache');
  assert.ok(!fat.layers.some((l) => l.sample.some((s) => s.includes('springframework'))), 'the launcher is left out');

  // A generic fat jar with nested lib/*.jar.
  const nestedStage = path.join(dir, 'nested');
  mkdirSync(path.join(nestedStage, 'lib'), { recursive: true });
  run('jar', ['--extract', '--file', f.app], { cwd: nestedStage });
  run('rm', ['-rf', path.join(nestedStage, 'META-INF')]);
  copyFileSync(COMMONS_LANG3, path.join(nestedStage, 'lib/commons-lang3.jar'));
  const nestedMf = path.join(dir, 'nested.mf');
  writeFileSync(nestedMf, 'Main-Class: com.example.Hello\n');
  const nestedJar = path.join(dir, 'nested.jar');
  run('jar', ['--create', '--file', nestedJar, '--manifest', nestedMf, '-C', nestedStage, '.']);
  const nested = await buildJvmImage({ program: nestedJar, cacheDir: path.join(dir, 'cache') });
  assert.equal(nested.fatJar, 'nested-lib');
  assert.equal(nested.layers.find((l) => l.name === 'dependencies')!.diffId, thin.layers.find((l) => l.name === 'dependencies')!.diffId);
  assert.equal(nested.layers.find((l) => l.name === 'classes')!.diffId, thin.layers.find((l) => l.name === 'classes')!.diffId);
});

test('build: SNAPSHOT and project dependencies get their own layers; empty layers are omitted', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const f = fixture(dir);
  const libs = path.join(dir, 'more');
  mkdirSync(libs);
  writeZip(path.join(libs, 'commons-io-2.99-SNAPSHOT.jar'), [{ name: 'io/Snap.class', data: Buffer.from('snap') }]);
  writeZip(path.join(libs, 'acme-core-1.0.jar'), [{ name: 'acme/Core.class', data: Buffer.from('core') }]);
  const own = path.join(dir, 'own-module.jar');
  writeZip(own, [{ name: 'own/Thing.class', data: Buffer.from('x') }]);
  const result = await buildJvmImage({
    program: f.app,
    libs: [libs],
    projectLibs: [own],
    projectLibPattern: '^acme-',
    cacheDir: path.join(dir, 'cache'),
  });
  const byName = Object.fromEntries(result.layers.map((l) => [l.name, l.sample]));
  assert.deepEqual(Object.keys(byName), ['dependencies', 'snapshot-dependencies', 'project-dependencies', 'resources', 'classes']);
  assert.deepEqual(byName['dependencies'], ['/app/libs/commons-lang3.jar']);
  assert.deepEqual(byName['snapshot-dependencies'], ['/app/libs/commons-io-2.99-SNAPSHOT.jar']);
  assert.deepEqual(byName['project-dependencies'], ['/app/libs/acme-core-1.0.jar', '/app/libs/own-module.jar']);

  // A jar with classes only: no resources layer.
  const bare = makeJar(dir, path.join(dir, 'bare.jar'), { 'Main.java': 'public class Main { public static void main(String[] a) {} }' }, { manifest: { 'Main-Class': 'Main' } });
  const bareResult = await buildJvmImage({ program: bare, cacheDir: path.join(dir, 'cache') });
  assert.deepEqual(bareResult.layers.map((l) => l.name), ['classes']);
  // Two different jars with one file name are refused.
  const clash = path.join(dir, 'clash');
  mkdirSync(clash);
  copyFileSync(GUAVA, path.join(clash, 'commons-lang3.jar'));
  await assert.rejects(buildJvmImage({ program: f.app, libs: [clash], cacheDir: path.join(dir, 'cache') }), /two different dependencies are both named commons-lang3.jar/);
});

test('build: on a base from an OCI layout and from a docker-archive; other tags in the output layout are kept', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const f = fixture(dir);
  // A base image: weft's own build of guava alone, copied by skopeo (so the base layout is skopeo's).
  const baseBuild = await buildJvmImage({ program: GUAVA, main: 'com.google.common.base.Strings', cacheDir: path.join(dir, 'cache'), title: 'base', jvmFlags: ['-Xmx64m'] });
  await writeImage(baseBuild.image, `oci:${path.join(dir, 'staging')}:base`);
  run('skopeo', ['copy', '--quiet', `oci:${path.join(dir, 'staging')}:base`, `oci:${path.join(dir, 'baselayout')}:jre`]);
  run('skopeo', ['copy', '--quiet', `oci:${path.join(dir, 'staging')}:base`, `docker-archive:${path.join(dir, 'base.tar')}:base:1`]);
  const baseDigest = skopeoInspect(`oci:${path.join(dir, 'baselayout')}:jre`).Digest;

  const onLayout = await build(f, { base: `oci:${path.join(dir, 'baselayout')}:jre`, java: '/opt/java/bin/java' });
  // Only the layout's file name, so the digest does not depend on where the base sits on disk.
  assert.deepEqual(onLayout.base, { name: 'oci:baselayout:jre', digest: baseDigest });
  // The same base elsewhere on disk gives the same image: nothing of the builder's directories goes in.
  const moved = path.join(dir, 'elsewhere');
  mkdirSync(moved);
  run('skopeo', ['copy', '--quiet', `oci:${path.join(dir, 'baselayout')}:jre`, `oci:${path.join(moved, 'baselayout')}:jre`]);
  const onMoved = await build(f, { base: `oci:${path.join(moved, 'baselayout')}:jre`, java: '/opt/java/bin/java' });
  assert.equal(onMoved.manifestDigest, onLayout.manifestDigest);
  assert.equal(onLayout.entrypoint[0], '/opt/java/bin/java');
  const out = path.join(dir, 'out');
  await writeImage(onLayout.image, `oci:${out}:on-layout`);
  const raw = skopeoInspect(`oci:${out}:on-layout`, true);
  assert.equal(raw.annotations['org.opencontainers.image.base.digest'], baseDigest);
  assert.equal(raw.annotations['org.opencontainers.image.base.name'], 'oci:baselayout:jre');
  assert.equal(raw.layers.length, baseBuild.layers.length + onLayout.layers.length);
  assert.equal(raw.layers[0].digest, baseBuild.layers[0].digest);
  const config = JSON.parse(run('skopeo', ['inspect', '--config', `oci:${out}:on-layout`]));
  assert.equal(config.rootfs.diff_ids.length, raw.layers.length);
  assert.equal(config.history.length, raw.layers.length);

  const onArchive = await build(f, { base: `docker-archive:${path.join(dir, 'base.tar')}` });
  await writeImage(onArchive.image, `oci:${out}:on-archive`);
  await writeImage(onArchive.image, `docker-archive:${path.join(dir, 'on-archive.tar')}:on:archive`);
  // Both tags are in the layout, and skopeo reads each.
  assert.equal(skopeoInspect(`oci:${out}:on-layout`).Digest, onLayout.manifestDigest);
  assert.equal(skopeoInspect(`oci:${out}:on-archive`).Digest, onArchive.manifestDigest);
  const archiveConfig = JSON.parse(run('skopeo', ['inspect', '--config', `docker-archive:${path.join(dir, 'on-archive.tar')}`]));
  assert.deepEqual(archiveConfig.rootfs.diff_ids, config.rootfs.diff_ids, 'same layers whichever way the base came');
  // Rewriting a tag replaces only that tag.
  await writeImage(onLayout.image, `oci:${out}:on-archive`);
  const index = JSON.parse(readFileSync(path.join(out, 'index.json'), 'utf8'));
  assert.deepEqual(index.manifests.map((m: any) => m.annotations['org.opencontainers.image.ref.name']).sort(), ['on-archive', 'on-layout']);
  // The unpacked image holds the base's files and ours.
  const bundle = path.join(dir, 'bundle');
  run('umoci', ['unpack', '--rootless', '--image', `${out}:on-layout`, bundle]);
  assert.ok(existsSync(path.join(bundle, 'rootfs/app/libs/guava.jar')), 'base layer content');
  assert.ok(existsSync(path.join(bundle, 'rootfs/app/libs/commons-lang3.jar')), 'our layer content');
  // A platform the base does not have is refused with the reason.
  await assert.rejects(build(f, { base: `oci:${path.join(dir, 'baselayout')}:jre`, platform: 'linux/s390x' }), /not the requested linux\/s390x/);
});

test('weft build (CLI): prints the digest, --json describes every layer, bad input is a clear error', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const f = fixture(dir);
  const env = { ...process.env, NO_COLOR: '1', WEFT_CACHE_DIR: path.join(dir, 'cache') };
  const cli = (args: string[]) => spawnSync(process.execPath, [CLI, 'build', ...args], { encoding: 'utf8', env });
  const plain = cli([f.app, '--lib', f.libs, '--output', `oci:${path.join(dir, 'out')}`]);
  assert.equal(plain.status, 0, plain.stderr);
  const digest = plain.stdout.trim();
  assert.match(digest, /^sha256:[a-f0-9]{64}$/);
  assert.equal(skopeoInspect(`oci:${path.join(dir, 'out')}:latest`).Digest, digest);
  const json = cli([f.app, '--lib', f.libs, '--json', '--gzip-level', '6']);
  assert.equal(json.status, 0, json.stderr);
  const report = JSON.parse(json.stdout);
  assert.deepEqual(report.layers.map((l: any) => l.name), ['dependencies', 'resources', 'classes']);
  for (const layer of report.layers) {
    for (const key of ['fileCount', 'sample', 'digest', 'diffId', 'size', 'cached']) assert.ok(key in layer, `layer has ${key}`);
  }
  assert.equal(report.layers[0].fileCount, 2);
  assert.equal(report.mainClass, 'com.example.Hello');
  const bad = cli([path.join(dir, 'missing.jar')]);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /error: cannot read .*missing\.jar/);
  const badRef = cli([f.app, '--output', 'ftp://nope']);
  assert.equal(badRef.status, 1);
  assert.match(badRef.stderr, /unsupported image reference/);
});
