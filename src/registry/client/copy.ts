// `weft copy`: any of oci:, docker-archive:, docker:// to any other, keeping
// digests. Registry to registry never touches disk (same registry: mount;
// across registries: each blob streamed from source to destination). Files are
// written by src/image (layout.ts, images.ts).
import type { ImageHandle } from '../../image/transport.js';
import { formatImageReference, parseImageReference, type ImageReference } from '../../image/reference.js';
import type { TransferProgress } from '../../image/transport.js';
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { Descriptor } from '../../image/oci.js';
import type { RegistryClient } from './client.js';
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
  const image = await openSource(client, from, options.platform ?? (from.transport === 'docker' ? 'linux/amd64' : undefined), to.transport === 'docker');
  if (!image) throw new Error(`nothing to copy from ${formatImageReference(from)}`);
  let blobs: BlobReport[];
  let digest: string;
  if (to.transport === 'docker') {
    const result = await client.push(image, to.ref, options.progress);
    blobs = result.blobs;
    digest = result.digest;
  } else {
    if (to.transport === 'oci') {
      // The layout writer fetches up to 6 blobs at once (the largest first) and hashes each blob once (its stream verifies itself).
      const { writeOciLayout } = await import('../../image/layout.js');
      await writeOciLayout(image, to.dir, to.tag);
      digest = image.manifestDigest;
    } else {
      const { writeImage } = await import('../../image/images.js');
      digest = (await writeImage(image, to, { remote: client, progress: options.progress })).digest;
    }
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

/**
 * Opens the source. oci: and docker:// go straight to their readers, so a copy
 * that involves no docker-archive never loads the tar code (start-up time of
 * `weft copy`); everything else goes through src/image's openImage. Registry to
 * registry, the blobs are not hashed on the way: the destination checks each
 * one against its digest when its upload completes (PUT ?digest=), as crane
 * relies on too.
 */
async function openSource(client: RegistryClient, from: ImageReference, platform: string | undefined, toRegistry: boolean): Promise<ImageHandle | null> {
  if (from.transport === 'docker') return client.open(from.ref, { platform, verifyBlobs: !toRegistry });
  if (from.transport === 'oci') {
    const { readOciLayout } = await import('../../image/layout.js');
    const image = await readOciLayout(from.dir, from.tag, { platform });
    return toRegistry ? withUnverifiedLayers(image, from.dir) : image;
  }
  const { openImage } = await import('../../image/images.js');
  return openImage(from, { remote: client, platform });
}

/**
 * The same image, but its layer files are read as they are, not hashed on the
 * way: for a push, where the registry checks each blob against its digest when
 * the upload completes. Anything unusual (the config, a non-sha256 digest, a
 * missing file) goes to the layout's own openBlob, with its checks and error
 * messages.
 */
function withUnverifiedLayers(image: ImageHandle, dir: string): ImageHandle {
  const root = path.resolve(dir);
  const openBlob = async (d: Descriptor): Promise<Readable> => {
    const file = /^sha256:[a-f0-9]{64}$/.test(d.digest) && d.digest !== image.manifest.config.digest ? path.join(root, 'blobs', 'sha256', d.digest.slice(7)) : undefined;
    if (file && (await fs.stat(file).then((st) => st.isFile(), () => false))) return createReadStream(file, { highWaterMark: 1024 * 1024 });
    return image.openBlob(d);
  };
  return Object.assign(Object.create(image) as ImageHandle, { openBlob });
}
