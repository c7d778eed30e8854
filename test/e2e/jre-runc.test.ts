// End to end, with the real tools: `weft base jre` -> `weft build` on that base
// -> skopeo inspect -> umoci unpack -> runc run -> the example's output.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import {
  expectedHello,
  helloBuild,
  mustRun,
  mustWeft,
  requireExampleBuild,
  runImage,
  tempDir,
  weft,
} from './harness.js';

interface BaseResult {
  digest: string;
  javaVersion: string;
  libraries: string[];
  jars: string[];
  layers: Array<{ name: string; digest: string; diffId: string }>;
}

const feature = (javaVersion: string): number => Number.parseInt(javaVersion.split('.')[0], 10);

describe('weft base jre + weft build, run with runc', () => {
  let work: { dir: string; remove: () => Promise<void> };
  let base: BaseResult;
  let baseLayout: string;

  before(async () => {
    requireExampleBuild();
    work = await tempDir('e2e');
    baseLayout = path.join(work.dir, 'jre');
    const out = await mustWeft(['base', 'jre', '--output', `oci:${baseLayout}:17`, '--json']);
    base = JSON.parse(out.stdout) as BaseResult;
  });

  after(async () => {
    await work?.remove();
  });

  test('the base image is a valid OCI image that skopeo reads, with the runtime, loader and libc', async () => {
    const inspect = JSON.parse((await mustRun('skopeo', ['inspect', `oci:${baseLayout}:17`])).stdout) as {
      Digest: string;
      Env: string[];
      Layers: string[];
    };
    assert.equal(inspect.Digest, base.digest);
    assert.ok(inspect.Env.includes('JAVA_HOME=/opt/java'), `Env: ${inspect.Env.join(' ')}`);
    assert.ok(inspect.Env.some((e) => e.startsWith('PATH=/opt/java/bin:')));
    assert.equal(inspect.Layers.length, 2);
    assert.ok(base.libraries.some((l) => /\/libc\.so\.6$/.test(l)), `libraries: ${base.libraries.join(' ')}`);
    assert.ok(base.libraries.some((l) => /ld-linux/.test(l)), 'the dynamic loader is in the image');
    // skopeo copies it (it re-reads and verifies every blob).
    const copy = path.join(work.dir, 'jre-copy');
    await mustRun('skopeo', ['copy', `oci:${baseLayout}:17`, `oci:${copy}:17`]);
  });

  test('the base image as a docker-archive is read by skopeo, with the same layers', async () => {
    const archive = path.join(work.dir, 'jre.tar');
    await mustWeft(['base', 'jre', '--output', `docker-archive:${archive}:weft/jre:17`]);
    const inspect = JSON.parse((await mustRun('skopeo', ['inspect', '--config', `docker-archive:${archive}`])).stdout) as {
      rootfs: { diff_ids: string[] };
    };
    assert.deepEqual(inspect.rootfs.diff_ids, base.layers.map((l) => l.diffId));
  });

  test('the base image runs java under runc: user lookup through /etc/passwd, JAVA_HOME, java.home', async () => {
    const run = await runImage(baseLayout, '17', { args: ['java', '-XshowSettings:properties', '-version'] });
    assert.equal(run.code, 0, `runc exited ${run.code}: ${run.stderr}`);
    assert.match(run.stderr, /java\.home = \/opt\/java/);
    assert.match(run.stderr, /user\.name = root/);
    assert.match(run.stderr, new RegExp(`openjdk version "${base.javaVersion.replace(/\./g, '\\.')}"`));
  });

  test('same JDK, fresh jlink (no cache): the same manifest digest', async () => {
    const again = path.join(work.dir, 'jre-again');
    const out = await mustWeft(['base', 'jre', '--output', `oci:${again}:17`, '--no-cache', '--json']);
    const second = JSON.parse(out.stdout) as BaseResult;
    assert.equal(second.digest, base.digest);
    assert.deepEqual(
      second.layers.map((l) => l.diffId),
      base.layers.map((l) => l.diffId),
    );
  });

  test('the example program jar, built on the base, prints its greeting under runc', async () => {
    const layout = path.join(work.dir, 'hello');
    await mustWeft(['build', path.join(helloBuild, 'hello.jar'), '--base', `oci:${baseLayout}:17`, '--output', `oci:${layout}:thin`]);
    await mustRun('skopeo', ['inspect', `oci:${layout}:thin`]);
    const run = await runImage(layout, 'thin', { appendArgs: ['b', 'a', 'b'], env: ['HELLO_NAME=runc'] });
    assert.equal(run.code, 0, `runc exited ${run.code}: ${run.stderr}`);
    assert.match(run.stdout, expectedHello(['b', 'a', 'b'], 'runc', feature(base.javaVersion)));
  });

  test('the fat-jar variant, split by weft build, prints the same greeting under runc', async () => {
    const layout = path.join(work.dir, 'hello-fat');
    await mustWeft(['build', path.join(helloBuild, 'hello-fat.jar'), '--base', `oci:${baseLayout}:17`, '--output', `oci:${layout}:fat`]);
    const run = await runImage(layout, 'fat', { appendArgs: ['x'] });
    assert.equal(run.code, 0, `runc exited ${run.code}: ${run.stderr}`);
    assert.match(run.stdout, expectedHello(['x'], 'world', feature(base.javaVersion)));
  });

  test('a base with the dependency jars baked into /app/libs runs the example too', async () => {
    const withLibs = path.join(work.dir, 'jre-libs');
    const out = await mustWeft([
      'base', 'jre', '--output', `oci:${withLibs}:17`, '--add-jars', path.join(helloBuild, 'libs'), '--json',
    ]);
    const result = JSON.parse(out.stdout) as BaseResult;
    assert.deepEqual(result.jars, (await fs.readdir(path.join(helloBuild, 'libs'))).filter((n) => n.endsWith('.jar')).sort());
    assert.equal(result.layers.length, 3);
    // The os and jre layers are the very same blobs as in the plain base: shared, stored once.
    assert.deepEqual(result.layers.slice(0, 2).map((l) => l.digest), base.layers.map((l) => l.digest));
    const layout = path.join(work.dir, 'hello-on-libs');
    await mustWeft(['build', path.join(helloBuild, 'hello.jar'), '--base', `oci:${withLibs}:17`, '--output', `oci:${layout}:app`]);
    const run = await runImage(layout, 'app');
    assert.equal(run.code, 0, `runc exited ${run.code}: ${run.stderr}`);
    assert.match(run.stdout, expectedHello([], 'world', feature(base.javaVersion)));
  });
});

describe('weft base jre: bad input gets a clear error and writes nothing', () => {
  let work: { dir: string; remove: () => Promise<void> };
  before(async () => {
    work = await tempDir('jre-bad');
  });
  after(async () => {
    await work?.remove();
  });

  test('an unknown module', async () => {
    const out = path.join(work.dir, 'm');
    const r = await weft(['base', 'jre', '--output', `oci:${out}:x`, '--modules', 'java.base,java.nosuchthing']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /java\.nosuchthing not in .*jmods.*--list-modules/);
    assert.equal(existsSync(out), false);
  });

  test('a directory that is not a JDK', async () => {
    const out = path.join(work.dir, 'j');
    const r = await weft(['base', 'jre', '--output', `oci:${out}:x`, '--jdk', work.dir]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /is not a JDK: it has no bin\/jlink/);
    assert.equal(existsSync(out), false);
  });

  test('--add-jars with a file that is not a jar', async () => {
    const jars = path.join(work.dir, 'jars');
    await fs.mkdir(jars);
    await fs.writeFile(path.join(jars, 'fake.jar'), 'this is not a zip');
    const out = path.join(work.dir, 'a');
    const r = await weft(['base', 'jre', '--output', `oci:${out}:x`, '--add-jars', jars]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /fake\.jar is not a jar/);
    assert.equal(existsSync(out), false);
  });

  test('an output that is not a destination', async () => {
    const r = await weft(['base', 'jre', '--output', 'scratch']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /not a destination/);
  });
});
