// A build whose output is docker:// uploads each blob as soon as it is ready
// (the base's layers at once, weft's as each is written), so the push overlaps
// the build; the final push then finds them there. Against a real CNCF
// distribution registry (Debian's docker-registry on 127.0.0.1).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { buildJvmImage, sha256, writeImage, type Descriptor, type DockerReference, type RemoteTransport } from '../../src/image/index.js';
import { createRemoteTransport } from '../../src/registry/client/index.js';
import { startDistribution } from '../registry-client/helpers.js';
import { COMMONS_LANG3, GUAVA, helloSource, makeJar, run, tempDir } from './helpers.js';

/** The registry client, recording which blobs were uploaded ahead of the push, and when. */
function recording(remote: RemoteTransport, beforeUpload: () => Promise<void> = async () => undefined) {
  const early: Array<{ digest: string; ok: boolean }> = [];
  const wrapped: RemoteTransport = {
    open: (ref, options) => remote.open(ref, options),
    write: (image, ref, progress) => remote.write(image, ref, progress),
    uploadBlob: async (ref: DockerReference, descriptor: Descriptor, open: () => Promise<Readable>) => {
      await beforeUpload();
      try {
        const report = await remote.uploadBlob!(ref, descriptor, open);
        early.push({ digest: descriptor.digest, ok: true });
        return report;
      } catch (error) {
        early.push({ digest: descriptor.digest, ok: false });
        throw error;
      }
    },
  };
  return { remote: wrapped, early };
}

function inputs(dir: string) {
  const app = makeJar(dir, path.join(dir, 'app.jar'), helloSource(), { classpath: [COMMONS_LANG3], manifest: { 'Main-Class': 'com.example.Hello' } });
  return { program: app, libs: [COMMONS_LANG3, GUAVA] };
}

test('build --output docker://: every layer is uploaded during the build, the push finds them there, skopeo reads the image', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const registry = await startDistribution();
  t.after(() => registry.close());
  const base = await buildJvmImage({ program: GUAVA, main: 'com.google.common.base.Strings', cacheDir: path.join(dir, 'base-cache'), title: 'base' });
  await writeImage(base.image, `oci:${path.join(dir, 'base')}:b`);

  const { remote, early } = recording(createRemoteTransport({ blobCache: false }));
  const ref: DockerReference = { registry: registry.host, repository: 'weft/overlap', tag: 'v1' };
  const result = await buildJvmImage({ ...inputs(dir), base: `oci:${path.join(dir, 'base')}:b`, remote, pushTo: ref, cacheDir: path.join(dir, 'cache') });
  // Uploaded before buildJvmImage returned: the base's layers and each of weft's.
  const expected = [...base.layers.map((l) => l.digest), ...result.layers.map((l) => l.digest)];
  assert.deepEqual(early.map((e) => e.digest).sort(), [...new Set(expected)].sort());
  assert.ok(early.every((e) => e.ok));

  const statuses = new Map<string, string>();
  const written = await writeImage(result.image, `docker://${registry.host}/weft/overlap:v1`, { remote, progress: { onBlob: (e) => statuses.set(e.digest, e.status) } });
  assert.equal(written.digest, result.manifestDigest);
  for (const digest of expected) assert.equal(statuses.get(digest), 'exists', `${digest} was already pushed by the build`);

  const inspected = JSON.parse(run('skopeo', ['inspect', '--tls-verify=false', `docker://${registry.host}/weft/overlap:v1`]));
  assert.equal(inspected.Digest, result.manifestDigest);
  run('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${registry.host}/weft/overlap:v1`, `oci:${path.join(dir, 'pulled')}:p`]);

  // The same image written to an OCI layout has the same digest: pushing ahead changes nothing in it.
  const local = await buildJvmImage({ ...inputs(dir), base: `oci:${path.join(dir, 'base')}:b`, cacheDir: path.join(dir, 'other-cache') });
  assert.equal(local.manifestDigest, result.manifestDigest);
});

test('build --output docker://: a registry that dies mid-build gives a clear push error and leaves a sound cache', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const registry = await startDistribution();
  t.after(() => registry.close());
  let closed = false;
  // The registry goes away as the first upload starts: every upload of the build fails.
  const { remote, early } = recording(createRemoteTransport({ blobCache: false }), async () => {
    if (!closed) {
      closed = true;
      await registry.close();
    }
  });
  const ref: DockerReference = { registry: registry.host, repository: 'weft/dies', tag: 'v1' };
  const cacheDir = path.join(dir, 'cache');
  const messages: string[] = [];
  const result = await buildJvmImage({ ...inputs(dir), remote, pushTo: ref, cacheDir, onProgress: (m) => messages.push(m) });
  assert.ok(early.length > 0 && early.every((e) => !e.ok), 'the uploads ahead of the push failed');
  assert.ok(messages.some((m) => /ahead of the push failed .*the push retries it/.test(m)), messages.join('\n'));
  await assert.rejects(writeImage(result.image, `docker://${registry.host}/weft/dies:v1`, { remote }), (error: Error) => {
    assert.match(error.message, new RegExp(registry.host.replace(/[.]/g, '\\.')), error.message);
    return true;
  });
  // The cache is whole: every blob matches its name, and a rebuild from it gives the same image.
  const blobs = path.join(cacheDir, 'blobs', 'sha256');
  for (const name of readdirSync(blobs)) assert.equal(sha256(readFileSync(path.join(blobs, name))), `sha256:${name}`, `cache blob ${name}`);
  const again = await buildJvmImage({ ...inputs(dir), cacheDir });
  assert.ok(again.layers.every((l) => l.cached));
  assert.equal(again.manifestDigest, result.manifestDigest);
  await writeImage(again.image, `oci:${path.join(dir, 'out')}:v1`);
});
