// Issue 13 ("Hardening"), the image and CLI findings: concurrent writers of
// one OCI layout (5), unverified base images (6), and untrusted jars and
// build inputs (9). Each test failed before its fix.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, promises as fs, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { pack } from 'tar-stream';
import {
  buildJvmImage,
  jsonBytes,
  listOciLayoutTags,
  MediaType,
  openImage,
  parseImageReference,
  parsePlatform,
  planJvmLayers,
  readDockerArchive,
  readOciLayout,
  sha256,
  StaticImage,
  writeImage,
  writeOciLayout,
  type ImageHandle,
} from '../../src/image/index.js';
import { COMMONS_LANG3, tempDir, writeZip } from './helpers.js';

const execFileAsync = promisify(execFile);
const CLI = path.resolve('dist/src/cli/main.js');

async function tarBytes(files: Record<string, Buffer | string>): Promise<Buffer> {
  const p = pack();
  for (const [name, data] of Object.entries(files)) p.entry({ name, mode: 0o644, mtime: new Date(0) }, data);
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** A small single-layer image (uncompressed layer) whose content depends on `seed`. */
async function tinyImage(seed: string, layerSize = 64): Promise<ImageHandle> {
  const layer = await tarBytes({ [`app/${seed}.txt`]: Buffer.concat([Buffer.from(seed), randomBytes(layerSize)]) });
  const config = jsonBytes({ architecture: 'amd64', os: 'linux', config: { Env: [`SEED=${seed}`], Cmd: ['/bin/true'] }, rootfs: { type: 'layers', diff_ids: [sha256(layer)] } });
  const manifest = jsonBytes({
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: sha256(config), size: config.length },
    layers: [{ mediaType: MediaType.ociLayer, digest: sha256(layer), size: layer.length }],
  });
  return new StaticImage(`tiny ${seed}`, manifest, config, async () => Readable.from([layer]));
}

const blobPath = (layout: string, digest: string) => path.join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length));

// ---- 5: concurrent writers of one OCI layout ----

test('issue 13 #5: parallel writes of different tags into one OCI layout keep every tag (new and existing layouts)', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const images = await Promise.all(['a', 'b', 'c', 'd'].map((s) => tinyImage(s)));
  for (let round = 0; round < 6; round++) {
    const layout = path.join(dir, `layout-${round}`);
    if (round % 2 === 1) await writeOciLayout(await tinyImage('existing'), layout, 'existing');
    await Promise.all(images.map((image, i) => writeOciLayout(image, layout, `t${i}`)));
    const tags = (await listOciLayoutTags(layout)).sort();
    assert.deepEqual(tags, [...(round % 2 === 1 ? ['existing'] : []), 't0', 't1', 't2', 't3'], `round ${round}`);
    for (const [i, image] of images.entries()) assert.equal((await readOciLayout(layout, `t${i}`)).manifestDigest, image.manifestDigest);
    assert.deepEqual(readdirSync(dir).filter((n) => n.includes('.tmp-')), [], 'no temp directories left');
    assert.deepEqual(readdirSync(layout).sort(), ['blobs', 'index.json', 'oci-layout'], 'no lock or temp file left in the layout');
  }
});

test('issue 13 #5: parallel `weft copy` processes into one new OCI layout keep every tag', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const source = path.join(dir, 'source');
  for (const s of ['p0', 'p1', 'p2']) await writeOciLayout(await tinyImage(s, 256 * 1024), source, s);
  for (let round = 0; round < 3; round++) {
    const layout = path.join(dir, `out-${round}`);
    const runs = ['p0', 'p1', 'p2'].map((s) => execFileAsync(process.execPath, [CLI, 'copy', `oci:${source}:${s}`, `oci:${layout}:${s}`]));
    const results = await Promise.allSettled(runs);
    for (const r of results) assert.equal(r.status, 'fulfilled', r.status === 'rejected' ? String((r.reason as Error).message) : '');
    assert.deepEqual((await listOciLayoutTags(layout)).sort(), ['p0', 'p1', 'p2'], `round ${round}`);
  }
});

// ---- 6: every blob read is checked against its digest ----

test('issue 13 #6: an OCI layout whose config, manifest or layer blob was edited is refused with a clear error', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const image = await tinyImage('base');
  const fresh = async (name: string) => {
    const layout = path.join(dir, name);
    await writeOciLayout(image, layout, 'v1');
    return layout;
  };

  const configEdited = await fresh('config');
  const config = blobPath(configEdited, image.manifest.config.digest);
  await fs.writeFile(config, (await fs.readFile(config, 'utf8')).replace('SEED=base', 'SEED=evil'));
  await assert.rejects(openImage(`oci:${configEdited}:v1`), /config sha256:[a-f0-9]{64} does not match its digest/);

  const manifestEdited = await fresh('manifest');
  const manifest = blobPath(manifestEdited, image.manifestDigest);
  await fs.writeFile(manifest, (await fs.readFile(manifest, 'utf8')).replace('"schemaVersion":2', '"schemaVersion":2 '));
  await assert.rejects(openImage(`oci:${manifestEdited}:v1`), /manifest sha256:[a-f0-9]{64} does not match its digest/);

  const layerEdited = await fresh('layer');
  const layer = blobPath(layerEdited, image.manifest.layers[0].digest);
  const bytes = await fs.readFile(layer);
  bytes[600] ^= 0xff; // same size, different content
  await fs.writeFile(layer, bytes);
  const opened = await openImage(`oci:${layerEdited}:v1`);
  assert.ok(opened);
  const out = path.join(dir, 'copied');
  await assert.rejects(writeImage(opened, `oci:${out}:v1`), /does not match its digest/);
  assert.equal(existsSync(out), false, 'nothing written from a modified base');
  await assert.rejects(writeImage(opened, `docker-archive:${path.join(dir, 'copied.tar')}:app:v1`), /does not match/);
  assert.equal(existsSync(path.join(dir, 'copied.tar')), false);
});

test('issue 13 #6: a docker-archive whose layer does not match its diffID, or whose config does not match its name, is refused', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const goodLayer = await tarBytes({ 'app/a.txt': 'good' });
  const evilLayer = await tarBytes({ 'app/a.txt': 'evil' });
  const config = jsonBytes({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [sha256(goodLayer)] } });
  const configName = `${sha256(config).slice(7)}.json`;
  const archive = async (file: string, layer: Buffer, configBytes: Buffer) =>
    fs.writeFile(
      file,
      await tarBytes({
        'layer.tar': layer,
        [configName]: configBytes,
        'manifest.json': JSON.stringify([{ Config: configName, RepoTags: ['app:v1'], Layers: ['layer.tar'] }]),
      }),
    );
  const good = path.join(dir, 'good.tar');
  await archive(good, goodLayer, config);
  assert.equal((await readDockerArchive(good)).manifest.layers.length, 1, 'the untampered archive opens');
  const swapped = path.join(dir, 'swapped.tar');
  await archive(swapped, evilLayer, config);
  await assert.rejects(readDockerArchive(swapped), /layer layer.tar does not match its diffID sha256:[a-f0-9]{64}/);
  const editedConfig = path.join(dir, 'edited-config.tar');
  await archive(editedConfig, goodLayer, Buffer.from(config.toString().replace('"config":{}', '"config":{"Env":["X=1"]}')));
  await assert.rejects(readDockerArchive(editedConfig), /config .* does not match its digest/);
});

// ---- 9: untrusted jars and build inputs ----

test('issue 13 #9: a Class-Path outside the jar directory, or naming a FIFO or device, is refused instead of added or read', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  mkdirSync(path.join(dir, 'app'));
  writeFileSync(path.join(dir, 'secret.jar'), 'not for the image');
  execFileSync('mkfifo', [path.join(dir, 'app', 'pipe.jar')]);
  // Planning only needs the manifest and the main class entry: a hand-written zip is enough.
  const jarWith = (classPath: string) => {
    const jar = path.join(dir, 'app', `p-${Math.random().toString(36).slice(2)}.jar`);
    writeZip(jar, [
      { name: 'META-INF/MANIFEST.MF', data: Buffer.from(`Manifest-Version: 1.0\nMain-Class: com.example.Hello\nClass-Path: ${classPath}\n\n`) },
      { name: 'com/example/Hello.class', data: Buffer.from('cafebabe') },
    ]);
    return jar;
  };
  for (const [classPath, pattern] of [
    ['../secret.jar', /outside the jar's directory/],
    ['/dev/zero', /outside the jar's directory/],
    ['file:/etc/passwd', /outside the jar's directory/],
    ['pipe.jar', /not a regular file/],
  ] as const) {
    await assert.rejects(planJvmLayers({ program: jarWith(classPath), libs: [COMMONS_LANG3] }), pattern, classPath);
  }
  // Given explicitly with --lib, the same jar is fine: the user chose it.
  const lib = path.join(dir, 'lib.jar');
  await fs.copyFile(COMMONS_LANG3, lib);
  const plan = await planJvmLayers({ program: jarWith('../lib.jar'), libs: [lib] });
  plan.close();
  assert.deepEqual(plan.dependencies, ['lib.jar']);
  // The program itself must be a regular file (reading a FIFO would block forever).
  await assert.rejects(planJvmLayers({ program: path.join(dir, 'app', 'pipe.jar') }), /not a regular file/);
});

test('issue 13 #9: a jar with 150 000 entries is planned without overflowing the call stack', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const jar = path.join(dir, 'many.jar');
  // More than 65 535 entries needs zip64, which Python's zipfile writes (the test helper's writer does not).
  const script = [
    'import sys, zipfile',
    "z = zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_STORED)",
    "z.writestr('META-INF/MANIFEST.MF', 'Manifest-Version: 1.0\\nMain-Class: Main\\n\\n')",
    "z.writestr('Main.class', 'cafebabe')",
    "[z.writestr('r/%d.txt' % i, '') for i in range(150000)]",
    'z.close()',
  ].join('\n');
  execFileSync('python3', ['-c', script, jar]);
  const plan = await planJvmLayers({ program: jar });
  plan.close();
  assert.equal(plan.layers.find((l) => l.name === 'resources')?.entries.length, 150_000);
});

test('issue 13 #9: a docker-archive output on a full disk is a clear error and leaves no temp file', async (t) => {
  const { dir, cleanup } = tempDir();
  const full = path.join(dir, 'full');
  mkdirSync(full);
  // A real full file system: a 64 KiB tmpfs (the tests run as root, as on every weft test machine).
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', full]);
  t.after(() => {
    execFileSync('umount', [full]);
    cleanup();
  });
  const image = await tinyImage('big', 512 * 1024);
  await assert.rejects(writeImage(image, `docker-archive:${path.join(full, 'app.tar')}:app:v1`), /cannot write docker-archive .*the disk is full/);
  assert.deepEqual(readdirSync(full), [], 'no archive and no temp file');
  await assert.rejects(writeImage(image, `oci:${path.join(full, 'layout')}:v1`), /ENOSPC|no space/);
  assert.deepEqual(readdirSync(full), [], 'no layout and no temp directory');
});

test('issue 13 #9: outputs under /proc fail at once instead of spinning', { timeout: 30_000 }, async () => {
  const image = await tinyImage('proc');
  await assert.rejects(writeImage(image, 'oci:/proc/self/x:v1'), /cannot write OCI layout \/proc\/self\/x/);
  await assert.rejects(writeImage(image, 'oci:/proc/1/nope/deeper:v1'), /cannot create directory \/proc\/1\/nope/);
  await assert.rejects(writeImage(image, 'docker-archive:/proc/self/x.tar:app:v1'), /cannot write docker-archive/);
});

test('issue 13 #9: tags, platforms and layout references are validated', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  assert.throws(() => parseImageReference('oci:x:../../etc/evil'), /invalid tag "..\/..\/etc\/evil"/);
  assert.throws(() => parseImageReference('oci:out:bad tag!'), /invalid tag "bad tag!"/);
  assert.throws(() => parseImageReference('docker://localhost:5000/app:bad tag!'), /invalid tag/);
  assert.deepEqual(parseImageReference('oci:out:1.0-rc1'), { transport: 'oci', dir: 'out', tag: '1.0-rc1' });
  assert.deepEqual(parseImageReference('oci:out'), { transport: 'oci', dir: 'out', tag: undefined });
  const image = await tinyImage('tags');
  await assert.rejects(writeOciLayout(image, path.join(dir, 'x'), '../../etc/evil'), /not a valid OCI layout tag/);
  assert.equal(existsSync(path.join(dir, 'x')), false);
  for (const bad of ['foo/bar/baz/qux', 'linux', 'linux/', '/amd64', 'linux/amd 64']) assert.throws(() => parsePlatform(bad), /not os\/arch\[\/variant\]/, bad);
  assert.deepEqual(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64', variant: 'v8' });
  // The CLI refuses before building anything.
  const cli = (args: string[]) => execFileAsync(process.execPath, [CLI, 'build', COMMONS_LANG3, '--main', 'org.apache.commons.lang3.StringUtils', '--cache-dir', path.join(dir, 'cache'), ...args]);
  await assert.rejects(cli(['--output', `oci:${path.join(dir, 'out')}`, '--tag', 'bad tag!']), (e: Error & { stderr: string }) => /invalid tag "bad tag!"/.test(e.stderr) && !/\n\s+at /.test(e.stderr));
  await assert.rejects(cli(['--platform', 'foo/bar/baz/qux']), (e: Error & { stderr: string }) => /not os\/arch/.test(e.stderr));
  assert.equal(existsSync(path.join(dir, 'out')), false);
});

test('a build on an edited OCI layout base fails before writing anything', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const base = path.join(dir, 'base');
  const baseImage = await tinyImage('jre');
  await writeOciLayout(baseImage, base, 'jre');
  const config = blobPath(base, baseImage.manifest.config.digest);
  await fs.writeFile(config, (await fs.readFile(config, 'utf8')).replace('SEED=jre', 'SEED=pwned'));
  await assert.rejects(
    buildJvmImage({ program: COMMONS_LANG3, main: 'org.apache.commons.lang3.StringUtils', base: `oci:${base}:jre`, cacheDir: path.join(dir, 'cache') }),
    /config sha256:[a-f0-9]{64} does not match its digest/,
  );
});
