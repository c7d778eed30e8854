// OCI layout and docker-archive edge cases: refusing to write into foreign
// directories, tag selection, clear errors when reading.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { buildJvmImage, writeImage, readOciLayout, openImage, normaliseArchiveName, LayoutError } from '../../src/image/index.js';
import { COMMONS_LANG3, run, tempDir } from './helpers.js';

test('layout: an empty directory is fine, a foreign one is refused untouched; tags select images', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const image = (await buildJvmImage({ program: COMMONS_LANG3, main: 'org.apache.commons.lang3.StringUtils', cacheDir: path.join(dir, 'cache') })).image;
  const empty = path.join(dir, 'empty');
  mkdirSync(empty);
  await writeImage(image, `oci:${empty}:a`);
  assert.equal(JSON.parse(run('skopeo', ['inspect', `oci:${empty}:a`])).Digest, image.manifestDigest);

  const foreign = path.join(dir, 'foreign');
  mkdirSync(foreign);
  writeFileSync(path.join(foreign, 'notes.txt'), 'mine');
  await assert.rejects(writeImage(image, `oci:${foreign}:a`), /not empty and not an OCI image layout/);
  assert.deepEqual(readdirSync(foreign), ['notes.txt']);

  await writeImage(image, `oci:${empty}:b`);
  await assert.rejects(readOciLayout(empty), /holds 2 images: name one .*tags: a, b/);
  await assert.rejects(readOciLayout(empty, 'c'), (e: Error) => e instanceof LayoutError && /no image tagged "c" \(tags: a, b\)/.test(e.message));
  assert.equal((await readOciLayout(empty, 'b')).manifestDigest, image.manifestDigest);
  await assert.rejects(openImage(`oci:${path.join(dir, 'nowhere')}:x`), /not an OCI image layout/);
  await assert.rejects(writeImage(image, 'scratch'), /scratch cannot be an output/);
});

test('docker-archive: names are checked and normalised; a non-archive is a clear error', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  assert.equal(normaliseArchiveName('app'), 'app:latest');
  assert.equal(normaliseArchiveName('localhost:5000/team/app:1.0'), 'localhost:5000/team/app:1.0');
  assert.throws(() => normaliseArchiveName('App:1'), /not a valid image name/);
  const bogus = path.join(dir, 'bogus.tar');
  writeFileSync(bogus, 'not a tar at all');
  await assert.rejects(openImage(`docker-archive:${bogus}`), /no manifest.json|not a readable docker-archive/);
});

test('layout: blobs weft wrote itself are copied from their file, not re-read through openBlob; a wrong size is refused', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const { StaticImage, jsonBytes, sha256: digestOf, MediaType, writeOciLayout } = await import('../../src/image/index.js');
  const { readFileSync } = await import('node:fs');
  const layer = Buffer.from('pretend this is a gzip layer');
  const layerFile = path.join(dir, 'layer.bin');
  writeFileSync(layerFile, layer);
  const config = jsonBytes({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } });
  const manifestFor = (size: number): Buffer =>
    jsonBytes({
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config: { mediaType: MediaType.ociConfig, digest: digestOf(config), size: config.length },
      layers: [{ mediaType: MediaType.ociLayerGzip, digest: digestOf(layer), size }],
    });
  let opened = 0;
  const opener = async (): Promise<never> => {
    opened++;
    throw new Error('openBlob must not be used for a blob with a file');
  };
  const image = new StaticImage('test', manifestFor(layer.length), config, opener, undefined, undefined, (d) => (d === digestOf(layer) ? layerFile : undefined));
  const out = path.join(dir, 'out');
  await writeOciLayout(image, out, 'latest');
  assert.equal(opened, 0);
  assert.ok(readFileSync(path.join(out, 'blobs', 'sha256', digestOf(layer).slice(7))).equals(layer));
  const lying = new StaticImage('test', manifestFor(layer.length + 1), config, opener, undefined, undefined, (d) => (d === digestOf(layer) ? layerFile : undefined));
  await assert.rejects(writeOciLayout(lying, path.join(dir, 'out2'), 'latest'), /has size/);
});
