// `weft build` as a library call: plan the JVM layers, write them (cached,
// in parallel), and assemble config and manifest on top of a base image.
import os from 'node:os';
import path from 'node:path';
import { createReadStream } from 'node:fs';
import { LayerCache, defaultCacheDir } from './cache.js';
import { sha256 } from './blobstore.js';
import { StaticImage, jsonBytes, parsePlatform, formatPlatform } from './image.js';
import { openImage } from './images.js';
import { DEFAULT_GZIP_LEVEL, defaultEpoch, mapBounded, writeLayer, type LayerResult } from './layer.js';
import { MediaType, type Descriptor, type ImageConfig, type ImageManifest } from './oci.js';
import { CLASSPATH, planJvmLayers, type JvmPlanInputs, type LayerName } from './plan.js';
import { parseImageReference, formatDockerReference, formatImageReference } from './reference.js';
import type { ImageHandle, RemoteTransport } from './transport.js';
import type { DockerReference } from './reference.js';
import type { Readable } from 'node:stream';

export const DEFAULT_JVM_FLAGS = ['-XX:MaxRAMPercentage=75'];
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface JvmBuildOptions extends JvmPlanInputs {
  /** Base image reference (oci:, docker-archive:, docker://, scratch) or an opened image; default scratch. */
  base?: string | ImageHandle | null;
  /** Needed when base is docker://. */
  remote?: RemoteTransport;
  /** os/arch[/variant]; default the base's, or this machine's for scratch. */
  platform?: string;
  /** JVM flags; -XX:MaxRAMPercentage=75 is added unless a flag sets MaxRAMPercentage or -Xmx. */
  jvmFlags?: string[];
  /** Path of java in the image; default $JAVA_HOME/bin/java from the base config, else `java` looked up on PATH. */
  java?: string;
  /** Program arguments (image Cmd). */
  args?: string[];
  gzipLevel?: number;
  /** Layer cache directory; default $WEFT_CACHE_DIR or ${XDG_CACHE_HOME:-~/.cache}/weft/layers. */
  cacheDir?: string;
  /** Ignore cached layers (they are still written to the cache directory). */
  noCache?: boolean;
  /** Seconds since the epoch for mtimes and `created`; default SOURCE_DATE_EPOCH or 1. */
  sourceDateEpoch?: number;
  workingDir?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** org.opencontainers.image.title; default the program jar's name. */
  title?: string;
  /** org.opencontainers.image.version. */
  version?: string;
  /**
   * The registry reference the image will be pushed to (with `remote`): each
   * blob is uploaded as soon as it is ready (the base's local layers at once,
   * weft's layers as each is written), so the push overlaps the build and
   * writeImage finds them there. The build waits for these uploads; one that
   * fails is left to the final push, which retries it and reports its error.
   */
  pushTo?: DockerReference;
  /** Layers written at once (default: number of CPUs). */
  concurrency?: number;
  onProgress?: (message: string) => void;
}

export interface LayerReport {
  name: LayerName | 'base';
  fileCount: number;
  sample: string[];
  mediaType: string;
  digest: string;
  diffId: string;
  size: number;
  uncompressedSize?: number;
  cached: boolean;
}

export interface JvmBuildResult {
  image: ImageHandle;
  manifestDigest: string;
  mainClass: string;
  fatJar: 'spring-boot' | 'nested-lib' | null;
  /** The layers weft wrote (base layers are not listed). */
  layers: LayerReport[];
  base: { name: string; digest: string } | null;
  entrypoint: string[];
  warnings: string[];
}

const ociLayerType = (mediaType: string): string =>
  mediaType === MediaType.dockerLayerGzip
    ? MediaType.ociLayerGzip
    : mediaType === 'application/vnd.docker.image.rootfs.diff.tar'
      ? MediaType.ociLayer
      : mediaType;

/**
 * The base's name for `org.opencontainers.image.base.name`: a registry reference as is;
 * for a local layout or archive only its file name, so the image digest does not depend
 * on where the base sits on the builder's disk (base.digest identifies it exactly).
 */
function baseName(base: ImageHandle): string {
  try {
    const ref = parseImageReference(base.source);
    switch (ref.transport) {
      case 'docker':
        return formatDockerReference({ ...ref.ref, digest: undefined });
      case 'oci':
        return formatImageReference({ ...ref, dir: path.basename(path.resolve(ref.dir)) });
      case 'docker-archive':
        return formatImageReference({ ...ref, file: path.basename(ref.file) });
      default:
        return base.source;
    }
  } catch {
    return base.source;
  }
}

function jvmFlags(flags: readonly string[] | undefined): string[] {
  const user = flags ?? [];
  const sizesHeap = user.some((f) => f.startsWith('-XX:MaxRAMPercentage=') || f.startsWith('-Xmx') || f.startsWith('-XX:MaxRAM='));
  return sizesHeap ? [...user] : [...DEFAULT_JVM_FLAGS, ...user];
}

function envValue(env: readonly string[], key: string): string | undefined {
  const hit = env.find((e) => e.startsWith(`${key}=`));
  return hit?.slice(key.length + 1);
}

/** Uploads blobs to the push destination while the build goes on, a few at a time, each digest once. */
function earlyUploads(remote: RemoteTransport | undefined, ref: DockerReference | undefined, say: (message: string) => void) {
  if (!remote?.uploadBlob || !ref) return undefined;
  const upload = remote.uploadBlob.bind(remote);
  const started = new Set<string>();
  const jobs: Promise<void>[] = [];
  const limit = 4;
  let running = 0;
  const waiting: Array<() => void> = [];
  return {
    start(descriptor: Descriptor, open: () => Promise<Readable>): void {
      if (started.has(descriptor.digest)) return;
      started.add(descriptor.digest);
      jobs.push(
        (async () => {
          if (running >= limit) await new Promise<void>((resolve) => waiting.push(resolve));
          else running++;
          try {
            await upload(ref, descriptor, open);
          } catch (error) {
            say(`uploading ${descriptor.digest.slice(7, 19)} ahead of the push failed (${(error as Error).message}); the push retries it`);
          } finally {
            const next = waiting.shift();
            if (next) next();
            else running--;
          }
        })(),
      );
    },
    settled: () => Promise.all(jobs),
  };
}

/** Builds a JVM program into an image (not yet written anywhere: pass result.image to writeImage). */
export async function buildJvmImage(options: JvmBuildOptions): Promise<JvmBuildResult> {
  const say = options.onProgress ?? (() => undefined);
  const epoch = options.sourceDateEpoch ?? defaultEpoch();
  const gzipLevel = options.gzipLevel ?? DEFAULT_GZIP_LEVEL;
  const created = new Date(epoch * 1000).toISOString().replace(/\.000Z$/, 'Z');

  // Open the base first: a wrong base reference should fail before any work.
  let base: ImageHandle | null;
  if (options.base === undefined || options.base === null) base = null;
  else if (typeof options.base === 'string') {
    if (options.base !== 'scratch') say(`opening base ${options.base}`);
    base = await openImage(options.base, { remote: options.remote, platform: options.platform });
  } else base = options.base;
  let platform = parsePlatform(options.platform);
  if (base) {
    const bp = { os: base.config.os, architecture: base.config.architecture, variant: base.config.variant };
    if (options.platform && (bp.os !== platform.os || bp.architecture !== platform.architecture)) {
      throw new Error(`base ${base.source} is ${formatPlatform(bp)}, not the requested ${formatPlatform(platform)}: pick a base for that platform`);
    }
    platform = bp.variant ? bp : { os: bp.os, architecture: bp.architecture };
  }

  const early = earlyUploads(options.remote, options.pushTo, say);
  // A local base's layers can go to the registry right away; a registry base's are mounted or copied by the push.
  if (early && base && !base.remote) for (const layer of base.manifest.layers) early.start(layer, () => base.openBlob(layer));

  say(`reading ${options.program}`);
  const cache = new LayerCache(path.resolve(options.cacheDir ?? defaultCacheDir()));
  await cache.sweepTempFiles();
  const plan = await planJvmLayers({ ...options, facts: options.noCache ? undefined : cache });
  const warnings = [...plan.warnings];
  let results: Array<LayerResult & { name: LayerName }>;
  try {
    const concurrency = options.concurrency ?? Math.max(1, os.availableParallelism());
    results = await mapBounded(plan.layers, concurrency, async (layer) => {
      const result = await writeLayer(layer.entries, {
        store: cache.store,
        cache: options.noCache ? { get: async () => undefined, put: cache.put.bind(cache) } : cache,
        gzipLevel,
        mtime: epoch,
      });
      say(`${layer.name}: ${result.fileCount} files, ${result.descriptor.digest.slice(7, 19)} ${result.cached ? '(cached)' : `(${result.descriptor.size} bytes)`}`);
      early?.start(result.descriptor, async () => createReadStream(result.blobPath, { highWaterMark: 1024 * 1024 }));
      return { ...result, name: layer.name };
    });
    await plan.remember();
  } finally {
    plan.close();
    await early?.settled();
  }

  // Config: the base's, with weft's entry point, environment and layers added.
  const baseConfig: ImageConfig | undefined = base?.config;
  const inner = { ...(baseConfig?.config ?? {}) };
  const env = [...(inner.Env ?? [])];
  if (envValue(env, 'PATH') === undefined) env.unshift(`PATH=${DEFAULT_PATH}`);
  const javaHome = envValue(env, 'JAVA_HOME');
  const java = options.java ?? (javaHome ? `${javaHome.replace(/\/+$/, '')}/bin/java` : 'java');
  if (!options.java && !base) warnings.push('the base is scratch, which has no java: the image runs only where a JRE is added (use --base with a JRE image, or --java)');
  const entrypoint = [java, ...jvmFlags(options.jvmFlags), '-cp', CLASSPATH.join(':'), plan.mainClass];
  inner.Env = env;
  inner.Entrypoint = entrypoint;
  delete inner.Cmd;
  if (options.args && options.args.length > 0) inner.Cmd = [...options.args];
  inner.WorkingDir = options.workingDir ?? '/app';
  const labels = { ...(inner.Labels ?? {}), ...(options.labels ?? {}) };
  if (Object.keys(labels).length > 0) inner.Labels = labels;
  else delete inner.Labels;

  const config: ImageConfig = {
    created,
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: inner,
    rootfs: { type: 'layers', diff_ids: [...(baseConfig?.rootfs?.diff_ids ?? []), ...results.map((r) => r.diffId)] },
    history: [
      ...(baseConfig?.history ?? []),
      ...results.map((r) => ({ created, created_by: `weft build: ${r.name}`, comment: `${r.fileCount} files` })),
    ],
  };
  const configBytes = jsonBytes(config);
  const configDescriptor: Descriptor = { mediaType: MediaType.ociConfig, digest: sha256(configBytes), size: configBytes.length };

  const annotations: Record<string, string> = { 'org.opencontainers.image.created': created };
  if (base) {
    annotations['org.opencontainers.image.base.name'] = baseName(base);
    annotations['org.opencontainers.image.base.digest'] = base.manifestDigest;
  }
  annotations['org.opencontainers.image.title'] = options.title ?? path.basename(options.program).replace(/\.jar$/, '');
  if (options.version) annotations['org.opencontainers.image.version'] = options.version;
  Object.assign(annotations, options.annotations ?? {});

  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: configDescriptor,
    layers: [
      ...(base?.manifest.layers ?? []).map((d) => ({ ...d, mediaType: ociLayerType(d.mediaType) })),
      ...results.map((r) => r.descriptor),
    ],
    annotations,
  };
  const manifestBytes = jsonBytes(manifest);
  const ours = new Map(results.map((r) => [r.descriptor.digest, r.blobPath]));
  const fresh = new Set(results.filter((r) => !r.cached).map((r) => r.descriptor.digest));
  const baseRemote = base?.remote;
  const baseDigests = new Set((base?.manifest.layers ?? []).map((d) => d.digest));
  const image = new StaticImage(
    `weft build ${options.program}`,
    manifestBytes,
    configBytes,
    async (d) => {
      const local = ours.get(d.digest);
      if (local) return createReadStream(local);
      if (base && baseDigests.has(d.digest)) {
        const original = base.manifest.layers.find((l) => l.digest === d.digest)!;
        return base.openBlob(original);
      }
      throw new Error(`blob ${d.digest} is not part of this image`);
    },
    undefined,
    baseRemote ? (digest) => (baseDigests.has(digest) ? baseRemote : undefined) : undefined,
    // Only layers written by this build skip re-hashing: a cache hit is read and verified as before.
    (digest) => (fresh.has(digest) ? ours.get(digest) : undefined),
  );
  say(`image ${image.manifestDigest}`);
  return {
    image,
    manifestDigest: image.manifestDigest,
    mainClass: plan.mainClass,
    fatJar: plan.fatJar,
    layers: results.map((r) => ({
      name: r.name,
      fileCount: r.fileCount,
      sample: r.sample,
      mediaType: r.descriptor.mediaType,
      digest: r.descriptor.digest,
      diffId: r.diffId,
      size: r.descriptor.size,
      uncompressedSize: r.uncompressedSize,
      cached: r.cached,
    })),
    base: base ? { name: baseName(base), digest: base.manifestDigest } : null,
    entrypoint,
    warnings,
  };
}

