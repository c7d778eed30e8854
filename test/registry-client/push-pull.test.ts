// The weft client against a real CNCF distribution registry (Debian docker-registry).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyImage, createRemoteTransport, type RegistryClient } from '../../src/registry/client/index.js';
import { parseDockerReference } from '../../src/image/reference.js';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { withTempDir } from '../support/temp.js';
import { blobPushes, sha256, startDistribution, startProxy, syntheticImage, tempDir, type Distribution, type Proxy, type SyntheticImage } from './helpers.js';

let registry: Distribution;
let proxy: Proxy;
let client: RegistryClient;
let image: SyntheticImage;

before(async () => {
  registry = await startDistribution();
  proxy = await startProxy(registry);
  client = createRemoteTransport({ retryBaseMs: 20 });
  image = await syntheticImage([
    { name: 'deps.jar', size: 600_000, seed: 'deps' },
    { name: 'resources', size: 90_000, seed: 'res' },
    { name: 'classes', size: 150_000, seed: 'classes' },
  ]);
});

after(async () => {
  client?.close();
  await proxy?.close();
  await registry?.close();
});

const ref = (text: string) => parseDockerReference(text);

test('push sends every blob once, then the manifest; pull gives back identical digests', async () => {
  proxy.reset();
  const events: string[] = [];
  const result = await client.push(image, ref(`${proxy.host}/app/one:v1`), { onBlob: (e) => events.push(`${e.status}:${e.digest}`) });
  assert.equal(result.digest, image.manifestDigest);
  assert.equal(result.blobs.length, 4);
  assert.ok(result.blobs.every((b) => b.status === 'sent'));
  const puts = blobPushes(proxy.requests);
  assert.equal(puts.length, 4, 'one upload per blob');
  const totalBlobBytes = [...image.blobs.values()].reduce((s, b) => s + b.length, 0);
  assert.equal(puts.reduce((s, r) => s + r.requestBytes, 0), totalBlobBytes);
  // config after layers, manifest last
  const order = proxy.requests.filter((r) => r.method === 'PUT').map((r) => r.url);
  assert.ok(order[order.length - 1]!.includes('/manifests/v1'));
  assert.ok(order[order.length - 2]!.includes(encodeURIComponent(image.manifest.config.digest)) || order[order.length - 2]!.includes(image.manifest.config.digest));
  assert.ok(events.some((e) => e.startsWith('sent:')));

  const pulled = await client.open(ref(`${registry.host}/app/one:v1`));
  assert.equal(pulled.manifestDigest, image.manifestDigest);
  assert.deepEqual(pulled.manifestBytes, image.manifestBytes);
  assert.equal(sha256(pulled.configBytes), image.manifest.config.digest);
  for (const layer of pulled.manifest.layers) {
    const chunks: Buffer[] = [];
    for await (const c of await pulled.openBlob(layer)) chunks.push(c as Buffer);
    assert.equal(sha256(Buffer.concat(chunks)), layer.digest);
  }
});

test('re-push sends no blob bytes (HEAD finds them) and only the manifest', async () => {
  await client.push(image, ref(`${registry.host}/app/two:v1`));
  proxy.reset();
  const fresh = createRemoteTransport();
  try {
    const result = await fresh.push(image, ref(`${proxy.host}/app/two:v1`));
    assert.ok(result.blobs.every((b) => b.status === 'exists'), JSON.stringify(result.blobs));
    assert.equal(result.bytesSent, 0);
    assert.equal(blobPushes(proxy.requests).length, 0);
    assert.equal(proxy.requests.filter((r) => r.method === 'POST').length, 0, 'no upload session started');
    const bodyBytes = proxy.requests.reduce((s, r) => s + r.requestBytes, 0);
    assert.equal(bodyBytes, image.manifestBytes.length, 'only the manifest crossed the wire');
  } finally {
    fresh.close();
  }
});

test('one changed layer: only that layer is sent', async () => {
  await client.push(image, ref(`${registry.host}/app/three:v1`));
  const changed = await syntheticImage([
    { name: 'deps.jar', size: 600_000, seed: 'deps' },
    { name: 'resources', size: 90_000, seed: 'res' },
    { name: 'classes', size: 150_000, seed: 'classes-changed' },
  ]);
  proxy.reset();
  const result = await client.push(changed, ref(`${proxy.host}/app/three:v2`));
  const sent = result.blobs.filter((b) => b.status === 'sent').map((b) => b.digest).sort();
  const newLayer = changed.manifest.layers[2]!.digest;
  assert.deepEqual(sent, [changed.manifest.config.digest, newLayer].sort());
  assert.equal(blobPushes(proxy.requests).length, 2);
});

test('cross-repository push within one registry mounts instead of uploading', async () => {
  await client.push(image, ref(`${registry.host}/base/jre:1`));
  const source = await client.open(ref(`${proxy.host}/base/jre:1`));
  assert.deepEqual(source.remote, { registry: proxy.host, repository: 'base/jre' });
  proxy.reset();
  const result = await client.push(source, ref(`${proxy.host}/app/mounted:1`));
  assert.ok(result.blobs.every((b) => b.status === 'mounted'), JSON.stringify(result.blobs));
  const mounts = proxy.requests.filter((r) => r.method === 'POST' && r.url.includes('mount=') && r.url.includes('from=base%2Fjre'));
  assert.equal(mounts.length, 4);
  assert.equal(mounts.filter((r) => r.status === 201).length, 4, 'registry answered 201 Created (mounted)');
  assert.equal(blobPushes(proxy.requests).length, 0);
  assert.equal(proxy.requests.filter((r) => r.method === 'GET' && r.url.includes('/blobs/') && !r.url.includes(image.manifest.config.digest)).length, 0, 'no layer was downloaded');
  const back = await client.getManifest(ref(`${registry.host}/app/mounted:1`));
  assert.equal(back.digest, image.manifestDigest);
});

test('an image built on a registry base mounts the base layers and uploads only its own', async () => {
  const base = await syntheticImage([{ name: 'jre', size: 400_000, seed: 'base-jre' }], 'base');
  await client.push(base, ref(`${registry.host}/base/runtime:1`));
  const app = await syntheticImage([
    { name: 'jre', size: 400_000, seed: 'base-jre' },
    { name: 'classes', size: 50_000, seed: 'app-classes' },
  ]);
  const baseLayer = base.manifest.layers[0]!.digest;
  assert.equal(app.manifest.layers[0]!.digest, baseLayer);
  // What the image builder sets for images built FROM a registry base.
  const built = { ...app, blobOrigin: (digest: string) => (digest === baseLayer ? { registry: proxy.host, repository: 'base/runtime' } : undefined) };
  proxy.reset();
  const result = await client.push(built, ref(`${proxy.host}/app/built:1`));
  const status = Object.fromEntries(result.blobs.map((b) => [b.digest, b.status]));
  assert.equal(status[baseLayer], 'mounted');
  assert.equal(status[app.manifest.layers[1]!.digest], 'sent');
  assert.equal(proxy.requests.filter((r) => r.method === 'GET' && r.url.includes(baseLayer)).length, 0, 'base layer never downloaded');
  assert.equal(blobPushes(proxy.requests).length, 2, 'only the new layer and the config were uploaded');
});

test('the blob-location cache mounts blobs pushed earlier to another repository', async () => {
  const dir = await tempDir('weft-blobcache-');
  try {
    const file = `${dir}/blob-locations.json`;
    const first = createRemoteTransport({ blobCache: file });
    await first.push(image, ref(`${registry.host}/svc/alpha:1`));
    first.close();
    // A later process (new client) pushes an image sharing those blobs to another repository.
    const second = createRemoteTransport({ blobCache: file });
    proxy.reset();
    const viaProxy = await second.push(image, ref(`${registry.host}/svc/beta:1`));
    assert.ok(viaProxy.blobs.every((b) => b.status === 'mounted'), JSON.stringify(viaProxy.blobs));
    assert.equal(viaProxy.bytesSent, 0);
    // A stale entry costs nothing but the attempt: the blob is uploaded.
    const stale = createRemoteTransport({ blobCache: file });
    const other = await startDistribution();
    try {
      const pushed = await stale.push(image, ref(`${other.host}/svc/gamma:1`));
      assert.equal(pushed.digest, image.manifestDigest);
    } finally {
      await other.close();
    }
    second.close();
    stale.close();
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('an image pulled from one repository is remembered: a later push to another repository mounts its blobs', async () => {
  const dir = await tempDir('weft-blobcache-');
  try {
    const file = `${dir}/blob-locations.json`;
    await client.push(image, ref(`${registry.host}/svc/pulled:1`)); // this client keeps no cache
    const puller = createRemoteTransport({ blobCache: file });
    const opened = await puller.open(ref(`${registry.host}/svc/pulled:1`));
    assert.equal(opened.manifestDigest, image.manifestDigest);
    // The pull does not wait for the cache file; flush() does.
    await puller.flush();
    puller.close();
    const table = JSON.parse(await fs.readFile(file, 'utf8')) as Record<string, Record<string, string[]>>;
    for (const d of [image.manifest.config, ...image.manifest.layers]) assert.deepEqual(table[registry.host]?.[d.digest], ['svc/pulled'], d.digest);
    const pusher = createRemoteTransport({ blobCache: file });
    try {
      const pushed = await pusher.push(image, ref(`${registry.host}/svc/delta:1`));
      assert.ok(pushed.blobs.every((b) => b.status === 'mounted'), JSON.stringify(pushed.blobs));
      assert.equal(pushed.bytesSent, 0);
    } finally {
      pusher.close();
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('copy between two registries streams blobs and keeps the digest', async () => {
  const other = await startDistribution();
  try {
    await client.push(image, ref(`${registry.host}/app/src:1`));
    const result = await client.copy(ref(`${registry.host}/app/src:1`), ref(`${other.host}/copied/app:1`));
    assert.equal(result.digest, image.manifestDigest);
    assert.equal(result.blobs.filter((b) => b.status === 'sent').length, 4);
    const head = await client.headManifest(ref(`${other.host}/copied/app:1`));
    assert.equal(head?.digest, image.manifestDigest);
  } finally {
    await other.close();
  }
});

test('tags list follows Link pagination', async () => {
  for (const tag of ['a', 'b', 'c', 'd', 'e']) await client.push(image, ref(`${registry.host}/app/tags:${tag}`));
  const tags = await client.listTags(registry.host, 'app/tags', 2);
  assert.deepEqual(tags.sort(), ['a', 'b', 'c', 'd', 'e']);
});

test('index resolves to the requested platform; a missing platform is a clear error', async () => {
  await client.push(image, ref(`${registry.host}/app/multi@${image.manifestDigest}`));
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      { mediaType: image.manifestMediaType, digest: image.manifestDigest, size: image.manifestBytes.length, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
    ],
  };
  const indexBytes = Buffer.from(JSON.stringify(index));
  await client.putManifest(ref(`${registry.host}/app/multi:idx`), indexBytes, index.mediaType);
  const opened = await client.open(ref(`${registry.host}/app/multi:idx`), { platform: 'linux/arm64' });
  assert.equal(opened.manifestDigest, image.manifestDigest);
  await assert.rejects(client.open(ref(`${registry.host}/app/multi:idx`)), /no image for linux\/amd64; available: linux\/arm64\/v8/);
  // --all: the index and every child, digests unchanged.
  const all = await client.copyAll(ref(`${registry.host}/app/multi:idx`), ref(`${registry.host}/app/multi-copy:idx`));
  assert.equal(all.digest, (await client.getManifest(ref(`${registry.host}/app/multi:idx`))).digest);
  assert.ok(all.blobs.every((b) => b.status === 'mounted'));
  assert.equal((await client.headManifest(ref(`${registry.host}/app/multi-copy@${image.manifestDigest}`)))?.digest, image.manifestDigest);
});

test('manifest and blob delete', async () => {
  await client.push(image, ref(`${registry.host}/app/del:1`));
  await client.deleteManifest(ref(`${registry.host}/app/del@${image.manifestDigest}`));
  assert.equal(await client.headManifest(ref(`${registry.host}/app/del@${image.manifestDigest}`)), undefined);
  const layer = image.manifest.layers[0]!.digest;
  await client.deleteBlob(registry.host, 'app/del', layer);
  await assert.rejects(client.openBlob(registry.host, 'app/del', image.manifest.layers[0]!), /404/);
});

test('a registry serving wrong bytes is caught by digest verification', async () => {
  await client.push(image, ref(`${registry.host}/app/verify:1`));
  const layer = image.manifest.layers[1]!;
  const liar = { ...layer, digest: image.manifest.layers[0]!.digest };
  // Asking for blob A while claiming size of B: size check fails.
  const stream = await client.openBlob(registry.host, 'app/verify', liar);
  await assert.rejects(async () => {
    for await (const _ of stream) void _;
  }, /bytes|expected/);
});

test('a pull into an OCI layout through the hashing thread keeps every digest; wrong bytes leave no layout', async () => {
  const big = await syntheticImage([
    { name: 'deps.jar', size: 6 * 1024 * 1024, seed: 'big-deps' },
    { name: 'classes', size: 100_000, seed: 'big-classes' },
  ], 'big');
  assert.ok(big.manifest.layers[0]!.size >= 4 * 1024 * 1024, 'the first layer is large enough for the thread');
  await client.push(big, ref(`${registry.host}/app/big:1`));
  const threaded = createRemoteTransport({ hashThread: true, retryBaseMs: 20 });
  // A registry serving wrong content: one byte 3 MiB into the large layer's body inverted.
  const layerPath = `/blobs/${big.manifest.layers[0]!.digest}`;
  const tampering = await startProxy(registry, (req) => (req.method === 'GET' && req.url?.endsWith(layerPath) ? { flipByteAt: 3 * 1024 * 1024 } : undefined));
  try {
    await withTempDir('weft-thread-pull-', async (dir) => {
      const layout = path.join(dir, 'good');
      const result = await copyImage(threaded, `docker://${registry.host}/app/big:1`, `oci:${layout}:1`);
      assert.equal(result.digest, big.manifestDigest);
      const names = (await fs.readdir(path.join(layout, 'blobs', 'sha256'))).sort();
      const expected = [...big.blobs.keys(), big.manifestDigest].map((d) => d.slice(7));
      assert.deepEqual(names, [...new Set(expected)].sort(), 'every blob and the manifest, nothing else');
      for (const name of names) assert.equal(sha256(await fs.readFile(path.join(layout, 'blobs', 'sha256', name))), `sha256:${name}`);

      const wrong = path.join(dir, 'wrong');
      await assert.rejects(copyImage(threaded, `docker://${tampering.host}/app/big:1`, `oci:${wrong}:1`), /expected sha256:/);
      assert.deepEqual(await fs.readdir(dir), ['good'], 'a failed pull leaves no layout and no temp directory');
    });
  } finally {
    threaded.close();
    await tampering.close();
  }
});
