// One image assembly for images weft makes from planned layers (`weft base jre`,
// `weft self-image`): write each layer (reproducibly, through the layer cache),
// then the config with fixed `created` and history, then the manifest with its
// annotations. The result is an image handle not yet written anywhere.
import { createReadStream, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BlobStore, sha256 } from './blobstore.js';
import { LayerCache } from './cache.js';
import { jsonBytes, StaticImage } from './image.js';
import { defaultEpoch, mapBounded, writeLayer, type LayerEntry } from './layer.js';
import { MediaType, type Descriptor, type ImageConfig, type ImageManifest } from './oci.js';
import { writeImage } from './images.js';
import { formatImageReference, parseImageReference, type ImageReference } from './reference.js';
import type { RemoteTransport } from './transport.js';

export interface PlannedImageLayer<Name extends string = string> {
  name: Name;
  description: string;
  entries: LayerEntry[];
}

export interface AssembleOptions<Name extends string = string> {
  /** What made the image, for history entries and errors (e.g. "weft base jre"). */
  source: string;
  layers: readonly PlannedImageLayer<Name>[];
  /** The config without rootfs, history and created (filled in here). */
  config: Pick<ImageConfig, 'architecture' | 'os'> & { config: NonNullable<ImageConfig['config']> };
  annotations: Record<string, string>;
  /** gzip level 0-9 for the layers. */
  gzipLevel?: number;
  /** Layer cache (default: the shared LayerCache); false writes into a temp store, nothing cached. */
  layerCache?: LayerCache | false;
  onProgress?: (message: string) => void;
}

export interface AssembledLayerReport<Name extends string = string> {
  name: Name;
  description: string;
  digest: string;
  diffId: string;
  size: number;
  uncompressedSize: number;
  files: number;
  cached: boolean;
}

export interface AssembledImage<Name extends string = string> {
  image: StaticImage;
  layers: AssembledLayerReport<Name>[];
  /** Removes the temp blob store (when uncached). Call after the image was written. */
  cleanup(): Promise<void>;
}

export async function assembleImage<Name extends string>(options: AssembleOptions<Name>): Promise<AssembledImage<Name>> {
  const level = options.gzipLevel;
  if (level !== undefined && (!Number.isInteger(level) || level < 0 || level > 9)) {
    throw new RangeError(`--gzip-level must be a whole number from 0 to 9, got ${level}`);
  }
  const temps: string[] = [];
  const cleanup = async (): Promise<void> => {
    for (const t of temps) await fs.rm(t, { recursive: true, force: true });
  };
  try {
    let store: BlobStore;
    let cache: LayerCache | undefined;
    if (options.layerCache === false) {
      const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-image-blobs-'));
      temps.push(tmp);
      store = new BlobStore(tmp);
    } else {
      cache = options.layerCache ?? new LayerCache();
      store = cache.store;
    }
    const epoch = defaultEpoch();
    const results = await mapBounded(options.layers, 2, async (layer) => {
      options.onProgress?.(`layer ${layer.name}: ${layer.description}`);
      return writeLayer(layer.entries, { store, cache, gzipLevel: level, mtime: epoch });
    });
    const created = new Date(epoch * 1000).toISOString();
    const config: ImageConfig = {
      created,
      architecture: options.config.architecture,
      os: options.config.os,
      config: options.config.config,
      rootfs: { type: 'layers', diff_ids: results.map((r) => r.diffId) },
      history: options.layers.map((l) => ({ created, created_by: `${options.source}: ${l.name}`, comment: l.description })),
    };
    const configBytes = jsonBytes(config);
    const configDescriptor: Descriptor = { mediaType: MediaType.ociConfig, digest: sha256(configBytes), size: configBytes.length };
    const manifest: ImageManifest = {
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config: configDescriptor,
      layers: results.map((r) => r.descriptor),
      annotations: { ...options.annotations, 'org.opencontainers.image.created': created },
    };
    const blobPaths = new Map(results.map((r) => [r.descriptor.digest, r.blobPath]));
    const image = new StaticImage(options.source, jsonBytes(manifest), configBytes, async (descriptor) => {
      const file = blobPaths.get(descriptor.digest);
      if (!file) throw new Error(`blob ${descriptor.digest} is not part of the image made by ${options.source}`);
      return createReadStream(file);
    });
    return {
      image,
      layers: results.map((r, i) => ({
        name: options.layers[i].name,
        description: options.layers[i].description,
        digest: r.descriptor.digest,
        diffId: r.diffId,
        size: r.descriptor.size,
        uncompressedSize: r.uncompressedSize,
        files: r.fileCount,
        cached: r.cached,
      })),
      cleanup,
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

/** Checks a destination before the slow build: oci:, docker-archive:, or docker:// (which needs `remote`). */
export function outputReference(output: string, remote: RemoteTransport | undefined, fail: (message: string) => Error): ImageReference {
  const ref = parseImageReference(output);
  if (ref.transport === 'scratch') throw fail('--output scratch is not a destination: use oci:<dir>:<tag>, docker-archive:<file>:<name:tag> or docker://<host>/<repo>:<tag>');
  if (ref.transport === 'docker' && !remote) throw fail('writing to docker:// needs the registry client; use the weft CLI');
  return ref;
}

/** Writes an assembled image to its destination; returns where, its digest and its sizes. */
export async function writeAssembledImage(
  assembled: Pick<AssembledImage, 'image' | 'layers'>,
  ref: ImageReference,
  options: { remote?: RemoteTransport; onProgress?: (message: string) => void },
): Promise<{ reference: string; digest: string; size: number; uncompressedSize: number }> {
  options.onProgress?.(`writing ${formatImageReference(ref)}`);
  const written = await writeImage(assembled.image, ref, { remote: options.remote });
  return {
    reference: written.reference,
    digest: written.digest,
    size: assembled.layers.reduce((n, l) => n + l.size, 0),
    uncompressedSize: assembled.layers.reduce((n, l) => n + l.uncompressedSize, 0),
  };
}

/**
 * The one flow of `weft base jre` and `weft self-image`: check the destination before the slow
 * build, build, write, and remove the build's temp files whatever happens. `describe` adds what
 * the result says of the build besides where it went, its digest and its sizes.
 */
export async function buildAndWriteImage<Built extends Pick<AssembledImage, 'image' | 'layers' | 'cleanup'>, Extra>(
  options: { output: string; remote?: RemoteTransport; onProgress?: (message: string) => void },
  fail: (message: string) => Error,
  build: () => Promise<Built>,
  describe: (built: Built) => Extra,
): Promise<{ reference: string; digest: string; size: number; uncompressedSize: number } & Extra> {
  const ref = outputReference(options.output, options.remote, fail);
  const built = await build();
  try {
    const written = await writeAssembledImage(built, ref, options);
    return { ...written, ...describe(built) };
  } finally {
    await built.cleanup();
  }
}

/** The image architecture name of this machine (OCI/Go spelling), or undefined. */
export function hostArchitecture(): string | undefined {
  return ({ x64: 'amd64', arm64: 'arm64', ppc64: 'ppc64le', s390x: 's390x' } as Record<string, string>)[process.arch];
}
