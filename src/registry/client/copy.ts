// `weft copy`: any of oci:, docker-archive:, docker:// to any other, keeping
// digests. Registry to registry never touches disk (same registry: mount;
// across registries: each blob streamed from source to destination).
import { openImage, writeImage } from '../../image/images.js';
import { formatImageReference, parseImageReference, type ImageReference } from '../../image/reference.js';
import type { TransferProgress } from '../../image/transport.js';
import type { RegistryClient } from './index.js';
import type { BlobReport } from './push.js';

export interface CopyResult {
  source: string;
  destination: string;
  digest: string;
  mediaType: string;
  /** Per-blob outcome for registry destinations; every blob counts as sent for file destinations. */
  blobs: BlobReport[];
  bytesSent: number;
  seconds: number;
}

export async function copyImage(
  client: RegistryClient,
  src: string | ImageReference,
  dst: string | ImageReference,
  options: { platform?: string; progress?: TransferProgress; all?: boolean } = {},
): Promise<CopyResult> {
  const started = process.hrtime.bigint();
  const from = typeof src === 'string' ? parseImageReference(src) : src;
  const to = typeof dst === 'string' ? parseImageReference(dst) : dst;
  if (options.all) {
    if (from.transport !== 'docker' || to.transport !== 'docker') throw new Error('--all copies whole indexes between registries only: use docker:// for source and destination');
    const result = await client.copyAll(from.ref, to.ref, { progress: options.progress });
    return { source: formatImageReference(from), destination: formatImageReference(to), digest: result.digest, mediaType: result.mediaType, blobs: result.blobs, bytesSent: result.bytesSent, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
  }
  if (from.transport === 'scratch') throw new Error('scratch is not an image to copy: give oci:, docker-archive: or docker:// as the source');
  if (to.transport === 'scratch') throw new Error('cannot copy to scratch: give oci:<dir>:<tag>, docker-archive:<file>:<name:tag> or docker://<host>/<repo>:<tag>');
  const image = await openImage(from, { remote: client, platform: options.platform ?? (from.transport === 'docker' ? 'linux/amd64' : undefined) });
  if (!image) throw new Error(`nothing to copy from ${formatImageReference(from)}`);
  let blobs: BlobReport[];
  let digest: string;
  if (to.transport === 'docker') {
    const result = await client.push(image, to.ref, options.progress);
    blobs = result.blobs;
    digest = result.digest;
  } else {
    const written = await writeImage(image, to, { remote: client, progress: options.progress });
    digest = written.digest;
    blobs = [...image.manifest.layers, image.manifest.config].map((d) => ({ digest: d.digest, size: d.size, status: 'sent' as const, bytesSent: d.size, mediaType: d.mediaType }));
  }
  return {
    source: formatImageReference(from),
    destination: formatImageReference(to),
    digest,
    mediaType: image.manifest.mediaType ?? image.manifestMediaType,
    blobs,
    bytesSent: blobs.reduce((s, b) => s + b.bytesSent, 0),
    seconds: Number(process.hrtime.bigint() - started) / 1e9,
  };
}
