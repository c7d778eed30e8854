// `weft copy`: any of oci:, docker-archive:, docker:// to any other, keeping
// digests. Registry to registry never touches disk (same registry: mount;
// across registries: each blob streamed from source to destination).
import type { ImageHandle } from '../../image/transport.js';
import { formatImageReference, parseImageReference, type ImageReference } from '../../image/reference.js';
import type { TransferProgress } from '../../image/transport.js';
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import type { Descriptor } from '../../image/oci.js';
import type { DockerReference } from '../../image/reference.js';
import type { RegistryClient } from './index.js';
import { openBlobUnverified } from './pull.js';
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
  const image = await openSource(client, from, options.platform ?? (from.transport === 'docker' ? 'linux/amd64' : undefined));
  if (!image) throw new Error(`nothing to copy from ${formatImageReference(from)}`);
  let blobs: BlobReport[];
  let digest: string;
  if (to.transport === 'docker') {
    const result = await client.push(image, to.ref, options.progress);
    blobs = result.blobs;
    digest = result.digest;
  } else {
    if (to.transport === 'oci' && from.transport === 'docker' && (await pullToFreshLayout(client, from.ref, image, to.dir, to.tag))) {
      digest = image.manifestDigest;
    } else if (to.transport === 'oci') {
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
 * `weft copy`); everything else goes through src/image's openImage.
 */
async function openSource(client: RegistryClient, from: ImageReference, platform: string | undefined): Promise<ImageHandle | null> {
  if (from.transport === 'docker') return client.open(from.ref, { platform });
  if (from.transport === 'oci') {
    const { readOciLayout } = await import('../../image/layout.js');
    return withLargeReads(await readOciLayout(from.dir, from.tag, { platform }), from.dir);
  }
  const { openImage } = await import('../../image/images.js');
  return openImage(from, { remote: client, platform });
}

const REF_NAME = 'org.opencontainers.image.ref.name';

/**
 * Registry -> new OCI layout: the layers are fetched concurrently (up to 4 at a
 * time) and hashed once, by BlobStore.putStream, which checks digest and size
 * before a blob is renamed into place. Like writeOciLayout, the layout is
 * assembled in a temp directory beside the target and renamed into place, so a
 * failure leaves nothing. Returns false (nothing written) when the target
 * exists and is not an empty directory, or a digest is not sha256: then
 * writeOciLayout does the work (adding a tag to an existing layout).
 */
async function pullToFreshLayout(client: RegistryClient, ref: DockerReference, image: ImageHandle, dir: string, tag: string | undefined): Promise<boolean> {
  const target = path.resolve(dir);
  const entries = await fs.readdir(target).catch((error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? [] : null));
  if (entries === null || entries.length > 0) return false;
  const descriptors = [image.manifest.config, ...image.manifest.layers];
  if (!descriptors.every((d) => d.digest.startsWith('sha256:')) || !image.manifestDigest.startsWith('sha256:')) return false;
  const { BlobStore, sha256 } = await import('../../image/blobstore.js');
  const session = client.session(ref.registry);
  const tmp = `${target}.tmp-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
  await fs.mkdir(tmp, { recursive: true });
  try {
    const store = new BlobStore(tmp);
    // The config bytes were fetched and verified when the image was opened.
    if (sha256(image.configBytes) !== image.manifest.config.digest) throw new Error(`config of ${ref.registry}/${ref.repository} does not match its digest`);
    await store.putBytes(image.configBytes);
    const seen = new Set<string>([image.manifest.config.digest]);
    const queue = image.manifest.layers.filter((d) => !seen.has(d.digest) && (seen.add(d.digest), true));
    const worker = async (): Promise<void> => {
      for (let d = queue.shift(); d; d = queue.shift()) {
        const layer = d;
        const stream = await openBlobUnverified(session, ref.repository, layer);
        // Socket chunks are 16–64 KiB; writing them to the file one by one costs more main-thread time than the hashing.
        const batched = new Batcher(1024 * 1024);
        stream.on('error', (error) => batched.destroy(error));
        await store.putStream(stream.pipe(batched), { digest: layer.digest, size: layer.size });
      }
    };
    await Promise.all(Array.from({ length: Math.min(4, queue.length) }, worker));
    await store.putBytes(image.manifestBytes);
    await fs.writeFile(path.join(tmp, 'oci-layout'), `${JSON.stringify({ imageLayoutVersion: '1.0.0' })}\n`);
    const descriptor: { mediaType: string; digest: string; size: number; annotations?: Record<string, string> } = {
      mediaType: image.manifestMediaType,
      digest: image.manifestDigest,
      size: image.manifestBytes.length,
    };
    if (tag) descriptor.annotations = { [REF_NAME]: tag };
    await fs.writeFile(path.join(tmp, 'index.json'), `${JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [descriptor] })}\n`);
    try {
      await fs.rename(tmp, target);
    } catch (error) {
      // A concurrent writer created the layout first: writeOciLayout adds this tag to it under the index lock.
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
      await fs.rm(tmp, { recursive: true, force: true });
      return false;
    }
  } catch (error) {
    await fs.rm(tmp, { recursive: true, force: true });
    throw error;
  }
  return true;
}

/**
 * The same image, but layer files are read 1 MiB at a time instead of the
 * stream default of 64 KiB: for a 32 MiB push that is 32 reads instead of 512,
 * which measurably cuts the main thread's time per pushed byte. Anything
 * unusual (the config, a non-sha256 digest, a missing file) goes to the
 * layout's own openBlob, with its checks and error messages.
 */
function withLargeReads(image: ImageHandle, dir: string): ImageHandle {
  const root = path.resolve(dir);
  const openBlob = async (d: Descriptor): Promise<Readable> => {
    const file = /^sha256:[a-f0-9]{64}$/.test(d.digest) && d.digest !== image.manifest.config.digest ? path.join(root, 'blobs', 'sha256', d.digest.slice(7)) : undefined;
    if (file && (await fs.stat(file).then((st) => st.isFile(), () => false))) return createReadStream(file, { highWaterMark: 1024 * 1024 });
    return image.openBlob(d);
  };
  return Object.assign(Object.create(image) as ImageHandle, { openBlob });
}

/** Passes bytes on in chunks of at least `size` bytes (the last one may be smaller). */
class Batcher extends Transform {
  private chunks: Buffer[] = [];
  private length = 0;
  constructor(private readonly size: number) {
    super();
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.chunks.push(chunk);
    this.length += chunk.length;
    if (this.length >= this.size) this.flushChunks();
    callback();
  }
  override _flush(callback: TransformCallback): void {
    this.flushChunks();
    callback();
  }
  private flushChunks(): void {
    if (this.length === 0) return;
    this.push(this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.length));
    this.chunks = [];
    this.length = 0;
  }
}
