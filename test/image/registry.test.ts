// docker:// base and output through the injected RemoteTransport, against a
// real CNCF distribution registry (Debian's docker-registry on 127.0.0.1):
// base layers are mounted, never downloaded or re-uploaded, and skopeo reads
// what weft pushed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { buildJvmImage, writeImage } from '../../src/image/index.js';
import { createRemoteTransport } from '../../src/registry/client/index.js';
import { startDistribution } from '../registry-client/helpers.js';
import { COMMONS_LANG3, GUAVA, helloSource, makeJar, run, tempDir } from './helpers.js';

test('build on a docker:// base and push to docker://: base layers are mounted; skopeo inspects the result', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const registry = await startDistribution();
  t.after(() => registry.close());
  const remote = createRemoteTransport({ blobCache: false });

  // The base: guava alone, built by weft, pushed by skopeo (an independent pusher).
  const base = await buildJvmImage({ program: GUAVA, main: 'com.google.common.base.Strings', cacheDir: path.join(dir, 'cache'), title: 'base' });
  await writeImage(base.image, `oci:${path.join(dir, 'base')}:b`);
  run('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${path.join(dir, 'base')}:b`, `docker://${registry.host}/weft/base:1`]);

  const app = makeJar(dir, path.join(dir, 'app.jar'), helloSource(), { classpath: [COMMONS_LANG3], manifest: { 'Main-Class': 'com.example.Hello' } });
  const result = await buildJvmImage({ program: app, libs: [COMMONS_LANG3], base: `docker://${registry.host}/weft/base:1`, remote, cacheDir: path.join(dir, 'cache') });
  assert.equal(result.base?.name, `${registry.host}/weft/base:1`);
  assert.equal(result.base?.digest, base.manifestDigest, 'skopeo kept the base manifest as weft wrote it');

  const statuses = new Map<string, string>();
  const written = await writeImage(result.image, `docker://${registry.host}/weft/app:v1`, {
    remote,
    progress: { onBlob: (e) => statuses.set(e.digest, e.status) },
  });
  assert.equal(written.digest, result.manifestDigest);
  for (const layer of base.layers) assert.equal(statuses.get(layer.digest), 'mounted', `base layer ${layer.name} mounted from weft/base`);

  const inspected = JSON.parse(run('skopeo', ['inspect', '--tls-verify=false', `docker://${registry.host}/weft/app:v1`]));
  assert.equal(inspected.Digest, result.manifestDigest);
  const raw = JSON.parse(run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${registry.host}/weft/app:v1`]));
  assert.equal(raw.annotations['org.opencontainers.image.base.name'], `${registry.host}/weft/base:1`);
  assert.equal(raw.annotations['org.opencontainers.image.base.digest'], base.manifestDigest);
  assert.equal(raw.layers.length, base.layers.length + result.layers.length);
  // And skopeo copies it back out, verifying every blob.
  run('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${registry.host}/weft/app:v1`, `oci:${path.join(dir, 'pulled')}:p`]);
});
