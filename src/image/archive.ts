// docker-archive files (the `docker save` format): a tar holding manifest.json
// ([{Config, RepoTags, Layers}]), the config JSON and one tar per layer.
// Written with uncompressed layer tars named by diffID, as `docker save` and
// skopeo do, so `docker load` / `podman load` / skopeo accept them; the file is
// written to a temp path and renamed, so a failed write leaves nothing behind.
import { createReadStream, createWriteStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { createHash } from 'node:crypto';
import tar from 'tar-stream';
import { digestHex, makeDirectories, sha256, tempName, verifiedStream } from './blobstore.js';
import { MediaType, type Descriptor, type ImageManifest } from './oci.js';
import { StaticImage, jsonBytes } from './image.js';
import { isValidRepositoryName, isValidTag } from './reference.js';
import type { ImageHandle } from './transport.js';

export class ArchiveError extends Error {
  override name = 'ArchiveError';
}

interface ArchiveManifestEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

const isGzipLayer = (mediaType: string): boolean => mediaType.endsWith('+gzip') || mediaType.endsWith('.gzip');

/** `app` -> `app:latest`; checks the name is one docker and podman accept. */
export function normaliseArchiveName(name: string): string {
  const slash = name.lastIndexOf('/');
  const colon = name.lastIndexOf(':');
  const [repo, tag] = colon > slash ? [name.slice(0, colon), name.slice(colon + 1)] : [name, 'latest'];
  const firstSlash = repo.indexOf('/');
  const first = firstSlash > 0 ? repo.slice(0, firstSlash) : '';
  const path = first && (first.includes('.') || first.includes(':') || first === 'localhost') ? repo.slice(firstSlash + 1) : repo;
  if (!isValidRepositoryName(path) || !isValidTag(tag)) {
    throw new ArchiveError(`"${name}" is not a valid image name: use lowercase [host/]name[:tag], e.g. docker-archive:app.tar:myapp:1.0`);
  }
  return `${repo}:${tag}`;
}

async function uncompressedLayer(image: ImageHandle, d: Descriptor): Promise<Readable> {
  const blob = await image.openBlob(d);
  if (!isGzipLayer(d.mediaType)) return blob;
  const gunzip = createGunzip();
  blob.on('error', (error) => gunzip.destroy(error));
  return blob.pipe(gunzip);
}

/** Writes `image` as a docker-archive at `file` tagged `name` (name:tag; none for an untagged archive). */
export async function writeDockerArchive(image: ImageHandle, file: string, name?: string): Promise<void> {
  const repoTag = name ? normaliseArchiveName(name) : undefined;
  const diffIds = image.config.rootfs?.diff_ids ?? [];
  if (diffIds.length !== image.manifest.layers.length) {
    throw new ArchiveError(`${image.source}: config lists ${diffIds.length} diff_ids for ${image.manifest.layers.length} layers`);
  }
  const configName = `${digestHex(image.manifest.config.digest)}.json`;
  const layerNames = diffIds.map((id) => `${digestHex(id)}.tar`);
  const manifest: ArchiveManifestEntry[] = [{ Config: configName, RepoTags: repoTag ? [repoTag] : [], Layers: layerNames }];

  const target = path.resolve(file);
  await makeDirectories(path.dirname(target));
  const tmp = tempName(target);
  const pack = tar.pack();
  const done = pipeline(Readable.from(pack), createWriteStream(tmp));
  // A write failure (a full disk) rejects `done` at any moment: every step races it, so the
  // failure ends the write at once and is reported, never left unhandled.
  const writeFailed = done.then(
    () => new Promise<never>(() => undefined),
    (error: Error) => Promise.reject(error),
  );
  writeFailed.catch(() => undefined);
  const step = <T>(work: Promise<T>): Promise<T> => Promise.race([work, writeFailed]);
  const header = (name: string, size: number) => ({ name, size, mode: 0o644, mtime: new Date(0), uid: 0, gid: 0, type: 'file' as const });
  const addBuffer = (name: string, data: Buffer) =>
    step(new Promise<void>((resolve, reject) => pack.entry(header(name, data.length), data, (e?: Error | null) => (e ? reject(e) : resolve()))));
  try {
    const written = new Set<string>();
    for (let i = 0; i < image.manifest.layers.length; i++) {
      if (written.has(layerNames[i])) continue;
      written.add(layerNames[i]);
      const d = image.manifest.layers[i];
      // First pass: the uncompressed size (the tar header needs it) and a check against the diffID.
      const hash = createHash('sha256');
      let size = 0;
      for await (const chunk of await uncompressedLayer(image, d)) {
        hash.update(chunk as Buffer);
        size += (chunk as Buffer).length;
      }
      if (`sha256:${hash.digest('hex')}` !== diffIds[i]) {
        throw new ArchiveError(`${image.source}: layer ${d.digest} does not match its diffID ${diffIds[i]}`);
      }
      // Second pass: stream it into the archive.
      await step(
        new Promise<void>((resolve, reject) => {
          const sink = pack.entry(header(layerNames[i], size), (e?: Error | null) => (e ? reject(e) : resolve()));
          sink.on('error', reject);
          uncompressedLayer(image, d).then((source) => {
            source.on('error', reject);
            source.on('data', (chunk: Buffer) => {
              if (!sink.write(chunk)) {
                source.pause();
                sink.once('drain', () => source.resume());
              }
            });
            source.on('end', () => sink.end(null));
          }, reject);
        }),
      );
    }
    await addBuffer(configName, image.configBytes);
    await addBuffer('manifest.json', jsonBytes(manifest));
    if (repoTag) {
      const colon = repoTag.lastIndexOf(':');
      const repositories = { [repoTag.slice(0, colon)]: { [repoTag.slice(colon + 1)]: digestHex(diffIds[diffIds.length - 1] ?? sha256('')) } };
      if (diffIds.length > 0) await addBuffer('repositories', jsonBytes(repositories));
    }
    pack.finalize();
    await done;
    await fs.rename(tmp, target);
  } catch (error) {
    pack.on('error', () => undefined);
    pack.destroy(error as Error);
    // The file's own error (ENOSPC, ENOENT, ...) says more than the tar stream's "destroyed".
    const writeError = await done.then(
      () => undefined,
      (e: Error) => e,
    );
    await fs.rm(tmp, { force: true });
    if (error instanceof ArchiveError) throw error;
    const cause = (writeError ?? error) as NodeJS.ErrnoException;
    const hint = cause.code === 'ENOSPC' ? ': the disk is full; free space or write elsewhere' : '';
    throw new ArchiveError(`cannot write docker-archive ${file} (${cause.message})${hint}; nothing was written`);
  }
}

interface ScannedFile {
  digest: string;
  size: number;
  gzip: boolean;
  data?: Buffer;
}

/** One pass over the archive: digest and size of every file, small files kept in memory, symlinks resolved. */
async function scanArchive(file: string): Promise<Map<string, ScannedFile>> {
  const files = new Map<string, ScannedFile>();
  const links = new Map<string, string>();
  const extract = tar.extract();
  const unreadable = (error: Error): ArchiveError =>
    error instanceof ArchiveError
      ? error
      : new ArchiveError(`${file} is not a readable docker-archive (${error.message}): pass a file written by docker save, podman save, skopeo or weft`);
  let readError: Error | undefined;
  const reading = pipeline(createReadStream(file), extract).catch((error: Error) => {
    readError = error;
  });
  try {
    for await (const entry of extract) {
      const name = path.posix.normalize(entry.header.name).replace(/^\.\//, '').replace(/^\/+/, '');
      if (entry.header.type === 'symlink' || entry.header.type === 'link') {
        const target = entry.header.type === 'symlink' ? path.posix.join(path.posix.dirname(name), entry.header.linkname ?? '') : entry.header.linkname ?? '';
        links.set(name, path.posix.normalize(target));
        entry.resume();
        continue;
      }
      if (entry.header.type !== 'file') {
        entry.resume();
        continue;
      }
      const hash = createHash('sha256');
      let size = 0;
      let head: Buffer | undefined;
      const keep: Buffer[] = [];
      for await (const chunk of entry) {
        const b = chunk as Buffer;
        head ??= b.subarray(0, 2);
        hash.update(b);
        size += b.length;
        if (size <= 8 * 1024 * 1024) keep.push(b);
      }
      files.set(name, {
        digest: `sha256:${hash.digest('hex')}`,
        size,
        gzip: !!head && head[0] === 0x1f && head[1] === 0x8b,
        data: size <= 8 * 1024 * 1024 ? Buffer.concat(keep) : undefined,
      });
    }
  } catch (error) {
    await reading;
    throw unreadable(readError ?? (error as Error));
  }
  await reading;
  if (readError) throw unreadable(readError);
  for (const [name, target] of links) {
    const resolved = files.get(target);
    if (resolved) files.set(name, { ...resolved, data: resolved.data });
  }
  return files;
}

/** Streams one file out of a tar archive. */
function streamEntry(file: string, wanted: string): Promise<Readable> {
  return new Promise((resolve, reject) => {
    const extract = tar.extract();
    const input = createReadStream(file);
    let found = false;
    let out: PassThrough | undefined;
    extract.on('entry', (header, stream, next) => {
      const name = path.posix.normalize(header.name).replace(/^\.\//, '').replace(/^\/+/, '');
      if (name !== wanted || header.type !== 'file') {
        stream.on('end', () => next());
        stream.resume();
        return;
      }
      found = true;
      const sink = new PassThrough();
      out = sink;
      stream.on('end', () => {
        sink.end();
        input.destroy();
        extract.destroy();
      });
      stream.on('data', (chunk: unknown) => {
        if (!sink.write(chunk as Buffer)) {
          stream.pause();
          sink.once('drain', () => stream.resume());
        }
      });
      resolve(sink);
    });
    extract.on('finish', () => {
      if (!found) reject(new ArchiveError(`${file} has no file ${wanted}`));
    });
    const fail = (error: Error): void => {
      if (!found) reject(error);
      else if (out && !out.writableFinished) out.destroy(error);
    };
    extract.on('error', fail);
    input.on('error', fail);
    input.pipe(extract as unknown as NodeJS.WritableStream);
  });
}

/** Opens the image in a docker-archive: the only one, or the one tagged `name`. */
export async function readDockerArchive(file: string, name?: string): Promise<ImageHandle> {
  const source = name ? `docker-archive:${file}:${name}` : `docker-archive:${file}`;
  const files = await scanArchive(file);
  const manifestFile = files.get('manifest.json');
  if (!manifestFile?.data) throw new ArchiveError(`${file} has no manifest.json: it is not a docker-archive`);
  let entries: ArchiveManifestEntry[];
  try {
    entries = JSON.parse(manifestFile.data.toString('utf8')) as ArchiveManifestEntry[];
    if (!Array.isArray(entries)) throw new Error('not a list');
  } catch (error) {
    throw new ArchiveError(`${file}: manifest.json is not valid (${(error as Error).message})`);
  }
  let entry: ArchiveManifestEntry | undefined;
  if (name) {
    const wanted = normaliseArchiveName(name);
    entry = entries.find((e) => (e.RepoTags ?? []).some((t) => t === wanted || t === `docker.io/${wanted}` || `docker.io/library/${t}` === wanted));
    if (!entry) throw new ArchiveError(`${file} has no image named ${name} (it has: ${entries.flatMap((e) => e.RepoTags ?? []).join(', ') || 'no names'})`);
  } else if (entries.length === 1) {
    entry = entries[0];
  } else {
    throw new ArchiveError(`${file} holds ${entries.length} images: name one with docker-archive:${file}:<name:tag>`);
  }
  const config = files.get(path.posix.normalize(entry.Config));
  if (!config?.data) throw new ArchiveError(`${file} is missing its config ${entry.Config}`);
  // The config is named by its digest (<hex>.json, or blobs/sha256/<hex> in newer archives): check it.
  const configHex = /(?:^|\/)([a-f0-9]{64})(?:\.json)?$/.exec(path.posix.normalize(entry.Config))?.[1];
  if (configHex && sha256(config.data) !== `sha256:${configHex}`) {
    throw new ArchiveError(`${file}: config ${entry.Config} does not match its digest (got ${sha256(config.data)}); the archive was modified or damaged`);
  }
  let diffIds: unknown;
  try {
    diffIds = (JSON.parse(config.data.toString('utf8')) as { rootfs?: { diff_ids?: unknown } }).rootfs?.diff_ids;
  } catch (error) {
    throw new ArchiveError(`${file}: config ${entry.Config} is not valid JSON (${(error as Error).message})`);
  }
  if (!Array.isArray(diffIds) || diffIds.length !== entry.Layers.length) {
    throw new ArchiveError(`${file}: the config lists ${Array.isArray(diffIds) ? diffIds.length : 'no'} diff_ids for ${entry.Layers.length} layers; the archive is damaged`);
  }
  const byDigest = new Map<string, string>();
  const layers: Descriptor[] = [];
  for (const [i, layerName] of entry.Layers.entries()) {
    const normal = path.posix.normalize(layerName);
    const layer = files.get(normal);
    if (!layer) throw new ArchiveError(`${file} is missing layer ${layerName}`);
    // Every layer is checked against the config's diffID (the digest of its uncompressed tar).
    const diffId = layer.gzip ? await gunzippedDigest(file, normal) : layer.digest;
    if (diffId !== diffIds[i]) {
      throw new ArchiveError(`${file}: layer ${layerName} does not match its diffID ${String(diffIds[i])} (its content is ${diffId}); the archive was modified or damaged`);
    }
    byDigest.set(layer.digest, normal);
    layers.push({ mediaType: layer.gzip ? MediaType.ociLayerGzip : MediaType.ociLayer, digest: layer.digest, size: layer.size });
  }
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: sha256(config.data), size: config.data.length },
    layers,
  };
  return new StaticImage(source, jsonBytes(manifest), config.data, async (d) => {
    const member = byDigest.get(d.digest);
    if (!member) throw new ArchiveError(`${file} has no blob ${d.digest}`);
    // Checked again while streaming: the file may have changed since it was scanned.
    return verifiedStream(await streamEntry(file, member), d, `${source}: layer ${member}`);
  });
}

/** sha256 of a gzip member's uncompressed content. */
async function gunzippedDigest(file: string, member: string): Promise<string> {
  const hash = createHash('sha256');
  const gunzip = createGunzip();
  try {
    await pipeline(await streamEntry(file, member), gunzip, async function* (source) {
      for await (const chunk of source) hash.update(chunk as Buffer);
    });
  } catch (error) {
    throw new ArchiveError(`${file}: layer ${member} is not valid gzip (${(error as Error).message})`);
  }
  return `sha256:${hash.digest('hex')}`;
}
