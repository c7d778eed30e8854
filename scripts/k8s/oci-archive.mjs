// Writes a one-layer OCI image archive (an OCI layout in a tar) holding one static binary, for
// `ctr images import`: node scripts/k8s/oci-archive.mjs <binary> <path in image> <name> <out.tar>.
// Used for the real node's pause image; reproducible (fixed times, sorted entries).
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(fileURLToPath(new URL('../../package.json', import.meta.url)));
const tar = require('tar-stream');
const [binary, target, name, out] = process.argv.slice(2);
if (!out) { console.error('usage: oci-archive.mjs <binary> <path in image> <name> <out.tar>'); process.exit(2); }

const epoch = new Date(1000);
async function tarOf(entries) {
  const pack = tar.pack();
  const chunks = [];
  pack.on('data', (c) => chunks.push(c));
  const done = new Promise((resolve, reject) => { pack.on('end', resolve); pack.on('error', reject); });
  for (const e of entries) {
    await new Promise((resolve, reject) => pack.entry({ name: e.name, mode: e.mode, mtime: epoch, uid: 0, gid: 0, type: e.type ?? 'file' }, e.data, (err) => (err ? reject(err) : resolve())));
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}
const sha = (b) => 'sha256:' + createHash('sha256').update(b).digest('hex');

const layerTar = await tarOf([{ name: target.replace(/^\//, ''), mode: 0o755, data: readFileSync(binary) }]);
const layer = gzipSync(layerTar, { level: 9 });
const config = Buffer.from(JSON.stringify({
  architecture: 'amd64', os: 'linux', created: epoch.toISOString(),
  config: { Entrypoint: [target] },
  rootfs: { type: 'layers', diff_ids: [sha(layerTar)] },
}));
const manifest = Buffer.from(JSON.stringify({
  schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
  config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length },
  layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha(layer), size: layer.length }],
}));
const index = Buffer.from(JSON.stringify({
  schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json',
  manifests: [{
    mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha(manifest), size: manifest.length,
    platform: { architecture: 'amd64', os: 'linux' },
    annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': name.split(':').pop() },
  }],
}));
const blob = (b) => ({ name: `blobs/sha256/${sha(b).slice(7)}`, mode: 0o644, data: b });
const archive = await tarOf([
  { name: 'blobs/', mode: 0o755, type: 'directory', data: '' },
  { name: 'blobs/sha256/', mode: 0o755, type: 'directory', data: '' },
  ...[config, layer, manifest].map(blob).sort((a, b) => a.name.localeCompare(b.name)),
  { name: 'index.json', mode: 0o644, data: index },
  { name: 'oci-layout', mode: 0o644, data: Buffer.from('{"imageLayoutVersion":"1.0.0"}') },
]);
writeFileSync(out + '.partial', archive);
renameSync(out + '.partial', out);
