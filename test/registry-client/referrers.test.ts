// Referrers: the OCI 1.1 API where the registry has it (weft's embedded
// registry), the referrers tag schema where it does not (distribution 2.8).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { createRemoteTransport, type RegistryClient } from '../../src/registry/client/index.js';
import { startRegistry } from '../../src/registry/server/index.js';
import { parseDockerReference } from '../../src/image/reference.js';
import { sha256, startDistribution, syntheticImage, tempDir, type SyntheticImage } from './helpers.js';

let client: RegistryClient;
let image: SyntheticImage;
before(async () => {
  client = createRemoteTransport();
  image = await syntheticImage([{ name: 'a', size: 10_000, seed: 'ref-a' }]);
});
after(() => client?.close());

/** A signature-like artifact whose subject is the image. */
async function pushArtifact(host: string, repository: string, artifactType: string, payload: string): Promise<string> {
  const empty = Buffer.from('{}');
  const blob = Buffer.from(payload);
  const artifact = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    artifactType,
    config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256(empty), size: empty.length },
    layers: [{ mediaType: 'text/plain', digest: sha256(blob), size: blob.length }],
    subject: { mediaType: image.manifestMediaType, digest: image.manifestDigest, size: image.manifestBytes.length },
  };
  const bytes = Buffer.from(JSON.stringify(artifact));
  const handle = {
    ...image,
    source: 'artifact',
    manifest: artifact as never,
    manifestBytes: bytes,
    manifestDigest: sha256(bytes),
    configBytes: empty,
    openBlob: async () => (await import('node:stream')).Readable.from([blob]),
  };
  const result = await client.push(handle, parseDockerReference(`${host}/${repository}@${sha256(bytes)}`));
  return result.digest;
}

async function check(host: string, repository: string): Promise<void> {
  await client.push(image, parseDockerReference(`${host}/${repository}:v1`));
  const sig = await pushArtifact(host, repository, 'application/vnd.example.signature', 'signed');
  const sbom = await pushArtifact(host, repository, 'application/vnd.example.sbom', 'sbom');
  const all = await client.referrers(host, repository, image.manifestDigest);
  assert.deepEqual(all.map((d) => d.digest).sort(), [sig, sbom].sort());
  const sigs = await client.referrers(host, repository, image.manifestDigest, 'application/vnd.example.signature');
  assert.deepEqual(sigs.map((d) => d.digest), [sig]);
  assert.equal(sigs[0]!.artifactType, 'application/vnd.example.signature');
  assert.deepEqual(await client.referrers(host, repository, sig), []);
}

test('referrers via the tag schema on distribution (no referrers API)', async () => {
  const registry = await startDistribution();
  try {
    await check(registry.host, 'app/signed');
    // The fallback tag exists and is an index.
    const tags = await client.listTags(registry.host, 'app/signed');
    assert.ok(tags.includes(image.manifestDigest.replace(':', '-')), tags.join(','));
  } finally {
    await registry.close();
  }
});

test('referrers via the OCI 1.1 API on the embedded registry', async () => {
  const root = await tempDir('weft-embedded-');
  const registry = await startRegistry({ root, logLevel: 'silent' });
  try {
    const host = new URL(registry.url).host;
    await check(host, 'app/signed');
    const tags = await client.listTags(host, 'app/signed');
    assert.ok(!tags.includes(image.manifestDigest.replace(':', '-')), 'no fallback tag when the registry answers OCI-Subject');
  } finally {
    await registry.close();
    await fs.rm(root, { recursive: true, force: true });
  }
});
