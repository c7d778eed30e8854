// The reproducible layer writer: a list of entries in, a gzip-compressed tar
// blob in a content-addressed store out. Reproducibility rules (the same inputs
// always give the same bytes): entries sorted by path, every parent directory
// written explicitly, uid/gid 0 with empty user/group names, one fixed mtime
// (SOURCE_DATE_EPOCH, default 1 s after the epoch), modes normalised to 0644
// for files, 0755 for directories and executables, 0777 for symlinks.
import { createReadStream, createWriteStream, promises as fs, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHash } from 'node:crypto';
import tar from 'tar-stream';
import type { Header as TarHeader, Pack as TarPack } from 'tar-stream';
import { MediaType, type Descriptor } from './oci.js';
import { Batcher, BlobStore, HashingStream, hashFile, sha256, tempName } from './blobstore.js';
import { ParallelGzip, deflatedRanges, looksLikeZip } from './pgzip/index.js';
import { mapBounded } from './bounded.js';

export { mapBounded };

export type LayerEntry =
  /** A file copied from the local file system (the executable bit of the source is kept). */
  | { type: 'file'; path: string; source: string; mode?: number }
  /** A file with in-memory content. */
  | { type: 'file'; path: string; data: Buffer | string; mode?: number }
  /** A file whose content is streamed on demand (e.g. from inside a zip). */
  | {
      type: 'file';
      path: string;
      size: number;
      open: () => Promise<Readable>;
      mode?: number;
      /** sha256 of the content when already known (skips hashing it). */
      contentDigest?: string;
      /** Told the content digest once it has been computed here (for callers that memoise it). */
      onDigest?: (digest: string) => void;
      /** Reads the whole content at once: used instead of `open` for small files when given. */
      readAll?: () => Promise<Buffer>;
    }
  | { type: 'directory'; path: string; mode?: number }
  | { type: 'symlink'; path: string; target: string };

export interface LayerSettings {
  /** gzip level 0-9 (default 1: see docs/image.md for the measurement). */
  gzipLevel?: number;
  /** mtime of every entry, in seconds since the epoch (default SOURCE_DATE_EPOCH or 1). */
  mtime?: number;
}

export interface LayerResult {
  /** OCI layer descriptor of the compressed blob. */
  descriptor: Descriptor;
  /** sha256 of the uncompressed tar (the config's rootfs.diff_ids entry). */
  diffId: string;
  uncompressedSize: number;
  /** Regular files and symlinks in the layer (directories not counted). */
  fileCount: number;
  /** A few of the paths in the layer, for reports. */
  sample: string[];
  /** Where the compressed blob lives. */
  blobPath: string;
  cached: boolean;
}

export interface LayerOptions extends LayerSettings {
  /** Where the compressed blob is written. */
  store: BlobStore;
  /** Optional input-keyed cache: an unchanged layer is neither re-tarred nor re-compressed. */
  cache?: LayerCacheLike;
  /**
   * Chunks of a layer compressed at once (default WEFT_GZIP_THREADS, else the core
   * count). The layer's bytes do not depend on it (see pgzip/index.ts).
   */
  gzipThreads?: number;
}

/** WEFT_GZIP_THREADS when set (benchmarks and tests compare 1 and N), else undefined (= core count). */
export function gzipThreadsFromEnv(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const raw = env.WEFT_GZIP_THREADS;
  if (raw === undefined || raw === '') return undefined;
  if (!/^[1-9]\d*$/.test(raw)) throw new LayerError(`WEFT_GZIP_THREADS must be a whole number from 1, got "${raw}"`);
  return Number(raw);
}

/** What the layer writer needs from a cache (implemented by LayerCache in cache.ts). */
export interface LayerCacheLike {
  get(key: string, store: BlobStore): Promise<Omit<LayerResult, 'cached' | 'blobPath'> | undefined>;
  put(key: string, result: Omit<LayerResult, 'cached' | 'blobPath'>): Promise<void>;
}

export class LayerError extends Error {
  override name = 'LayerError';
}

export const DEFAULT_GZIP_LEVEL = 1;
/** Files up to this size are read into memory once (hash + tar) ... */
const SMALL_FILE = 1024 * 1024;
/** ... while a layer keeps at most this much in memory. */
const KEEP_IN_MEMORY_BUDGET = 256 * 1024 * 1024;
/** Bumped whenever the bytes the writer produces for the same input could change. */
const WRITER_VERSION = 4; // 2: gzip in independent 1 MiB chunks (pgzip); 4: zip content stored, not deflated again (3: an earlier range choice, never released)

/** The fixed timestamp (seconds) used for entries and `created`: SOURCE_DATE_EPOCH, default 1. */
export function defaultEpoch(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.SOURCE_DATE_EPOCH;
  if (raw === undefined || raw === '') return 1;
  if (!/^\d+$/.test(raw)) throw new LayerError(`SOURCE_DATE_EPOCH must be a whole number of seconds, got "${raw}"`);
  return Number(raw);
}

/** Normalises an in-image path: no leading slash, no `.`/`..`, no empty components. */
export function normaliseImagePath(p: string): string {
  const parts: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') throw new LayerError(`path "${p}" leaves the image root ("..")`);
    parts.push(part);
  }
  if (parts.length === 0) throw new LayerError(`path "${p}" names the image root, not a file`);
  return parts.join('/');
}

const normaliseMode = (type: 'file' | 'directory' | 'symlink', mode: number | undefined): number =>
  type === 'directory' ? 0o755 : type === 'symlink' ? 0o777 : mode !== undefined && (mode & 0o111) !== 0 ? 0o755 : 0o644;

/** An entry after normalisation, with what the cache key needs. */
interface PreparedEntry {
  path: string;
  type: 'file' | 'directory' | 'symlink';
  mode: number;
  size: number;
  target?: string;
  contentDigest?: string;
  open?: () => Promise<Readable>;
  readAll?: () => Promise<Buffer>;
  data?: Buffer;
  source?: string;
}

async function hashReadable(stream: Readable): Promise<{ digest: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { digest: `sha256:${hash.digest('hex')}`, size };
}

/** Normalises, hashes, adds parent directories and sorts. */
async function prepareEntries(entries: readonly LayerEntry[]): Promise<PreparedEntry[]> {
  const byPath = new Map<string, PreparedEntry>();
  const add = (entry: PreparedEntry): void => {
    const existing = byPath.get(entry.path);
    if (existing) {
      if (existing.type === 'directory' && entry.type === 'directory') return;
      throw new LayerError(`two entries for "/${entry.path}" in one layer: give each file a unique path in the image`);
    }
    byPath.set(entry.path, entry);
  };
  // Small files are read once: hashed, and kept in memory for the tar writer (up to a budget),
  // which saves reopening thousands of .class files. Files are read several at a time.
  let budget = KEEP_IN_MEMORY_BUDGET;
  const keep = (size: number): boolean => {
    if (size > SMALL_FILE || budget < size) return false;
    budget -= size;
    return true;
  };
  const prepareOne = async (entry: LayerEntry): Promise<PreparedEntry> => {
    const p = normaliseImagePath(entry.path);
    if (entry.type === 'directory') return { path: p, type: 'directory', mode: 0o755, size: 0 };
    if (entry.type === 'symlink') {
      if (!entry.target) throw new LayerError(`symlink "/${p}" has an empty target`);
      return { path: p, type: 'symlink', mode: 0o777, size: 0, target: entry.target };
    }
    if ('source' in entry) {
      let stat;
      try {
        // Synchronous on purpose: for thousands of small files (class files) one blocking stat+read
        // is several times cheaper than four thread-pool round trips each (measured in docs/image.md).
        stat = statSync(entry.source);
      } catch (error) {
        throw new LayerError(`cannot read ${entry.source}: ${(error as Error).message}`);
      }
      if (!stat.isFile()) throw new LayerError(`${entry.source} is not a regular file`);
      const mode = normaliseMode('file', entry.mode ?? stat.mode);
      if (keep(stat.size)) {
        const data = readFileSync(entry.source);
        if (data.length !== stat.size) throw new LayerError(`${entry.source} changed while it was read`);
        return { path: p, type: 'file', mode, size: data.length, contentDigest: sha256(data), data };
      }
      const { digest, size } = await hashFile(entry.source);
      return { path: p, type: 'file', mode, size, contentDigest: digest, source: entry.source };
    }
    if ('data' in entry) {
      const data = typeof entry.data === 'string' ? Buffer.from(entry.data) : entry.data;
      return { path: p, type: 'file', mode: normaliseMode('file', entry.mode), size: data.length, contentDigest: sha256(data), data };
    }
    const mode = normaliseMode('file', entry.mode);
    if (entry.contentDigest) return { path: p, type: 'file', mode, size: entry.size, contentDigest: entry.contentDigest, open: entry.open, readAll: entry.readAll };
    if (keep(entry.size)) {
      let data: Buffer;
      if (entry.readAll) data = await entry.readAll();
      else {
        const chunks: Buffer[] = [];
        for await (const chunk of await entry.open()) chunks.push(chunk as Buffer);
        data = Buffer.concat(chunks);
      }
      if (data.length !== entry.size) throw new LayerError(`"/${p}" has ${data.length} bytes, expected ${entry.size}`);
      const contentDigest = sha256(data);
      entry.onDigest?.(contentDigest);
      return { path: p, type: 'file', mode, size: data.length, contentDigest, data };
    }
    const hashed = await hashReadable(await entry.open());
    if (hashed.size !== entry.size) throw new LayerError(`"/${p}" has ${hashed.size} bytes, expected ${entry.size}`);
    entry.onDigest?.(hashed.digest);
    return { path: p, type: 'file', mode, size: entry.size, contentDigest: hashed.digest, open: entry.open };
  };
  for (const prepared of await mapBounded(entries, 8, prepareOne)) add(prepared);
  for (const p of [...byPath.keys()]) {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/');
      const existing = byPath.get(parent);
      if (existing && existing.type !== 'directory') {
        throw new LayerError(`"/${parent}" is a ${existing.type} but also the parent directory of "/${p}"`);
      }
      if (!existing) byPath.set(parent, { path: parent, type: 'directory', mode: 0o755, size: 0 });
    }
  }
  return [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

function resolveSettings(settings: LayerSettings): Required<LayerSettings> {
  const gzipLevel = settings.gzipLevel ?? DEFAULT_GZIP_LEVEL;
  if (!Number.isInteger(gzipLevel) || gzipLevel < 0 || gzipLevel > 9) {
    throw new LayerError(`gzip level must be a whole number from 0 to 9, got ${gzipLevel}`);
  }
  const mtime = settings.mtime ?? defaultEpoch();
  if (!Number.isInteger(mtime) || mtime < 0) throw new LayerError(`mtime must be whole non-negative seconds, got ${mtime}`);
  return { gzipLevel, mtime };
}

/** The input key of a layer: every path, type, mode and content digest, plus the writer settings. */
function layerKey(prepared: readonly PreparedEntry[], settings: Required<LayerSettings>): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify({ v: WRITER_VERSION, zlib: process.versions.zlib, ...settings }));
  for (const e of prepared) {
    hash.update(`\n${e.type}\0${e.path}\0${e.mode.toString(8)}\0${e.size}\0${e.contentDigest ?? ''}\0${e.target ?? ''}`);
  }
  return hash.digest('hex');
}

function summary(prepared: readonly PreparedEntry[]): { fileCount: number; sample: string[] } {
  const files = prepared.filter((e) => e.type !== 'directory');
  return { fileCount: files.length, sample: files.slice(0, 5).map((e) => `/${e.path}`) };
}

/** Files up to this size are read whole when written, so a zip's deflated entries can be found in them. */
const WHOLE_FILE = 64 * 1024 * 1024;

/** Callers' readAll (a jar entry inflated at once) may refuse more than this (src/image/jar.ts). */
const SMALL_ENOUGH_FOR_READ_ALL = 16 * 1024 * 1024;

/** Reads a file entry's whole content (the size is checked: a file changed since it was hashed is refused). */
async function readWhole(entry: PreparedEntry): Promise<Buffer> {
  let data: Buffer;
  try {
    if (entry.source) data = await fs.readFile(entry.source);
    else if (entry.readAll && entry.size <= SMALL_ENOUGH_FOR_READ_ALL) data = await entry.readAll();
    else {
      const chunks: Buffer[] = [];
      for await (const chunk of await (entry.open as () => Promise<Readable>)()) chunks.push(chunk as Buffer);
      data = Buffer.concat(chunks);
    }
  } catch (error) {
    throw new LayerError(`reading "/${entry.path}": ${(error as Error).message}`);
  }
  if (data.length !== entry.size) throw new LayerError(`"/${entry.path}" has ${data.length} bytes, expected ${entry.size}: it changed while the layer was written`);
  return data;
}

/**
 * Writes one prepared entry into the tar pack, waiting until it is fully
 * written. A zip's deflated entries are announced through `alreadyCompressed`
 * with the very Buffer given to the pack, so the gzip stage can store them.
 */
async function writeEntry(pack: TarPack, entry: PreparedEntry, mtime: Date, alreadyCompressed: (data: Buffer, ranges: Array<[number, number]>) => void): Promise<void> {
  const header: Partial<TarHeader> & { name: string } = {
    name: entry.type === 'directory' ? `${entry.path}/` : entry.path,
    mode: entry.mode,
    mtime,
    uid: 0,
    gid: 0,
    uname: '',
    gname: '',
    type: entry.type,
    size: entry.type === 'file' ? entry.size : 0,
  };
  if (entry.type === 'symlink') header.linkname = entry.target;
  const data = entry.type === 'file' && !entry.data && entry.size <= WHOLE_FILE ? await readWhole(entry) : entry.data;
  return new Promise<void>((resolve, reject) => {
    if (entry.type !== 'file') {
      pack.entry(header, (error?: Error | null) => (error ? reject(error) : resolve()));
      return;
    }
    if (data) {
      const ranges = looksLikeZip(data) ? deflatedRanges(data) : [];
      if (ranges.length > 0) alreadyCompressed(data, ranges);
      pack.entry(header, data, (error?: Error | null) => (error ? reject(error) : resolve()));
      return;
    }
    const sink = pack.entry(header, (error?: Error | null) => (error ? reject(error) : resolve()));
    const open = entry.source ? async () => createReadStream(entry.source as string) : (entry.open as () => Promise<Readable>);
    open().then(
      (source) => {
        sink.on('error', () => undefined); // the failure is reported through reject below
        source.on('error', (error: Error) => {
          reject(new LayerError(`reading "/${entry.path}": ${error.message}`));
        });
        source.on('data', (chunk: Buffer) => {
          if (!sink.write(chunk)) {
            source.pause();
            sink.once('drain', () => source.resume());
          }
        });
        source.on('end', () => sink.end(null));
      },
      (error: Error) => reject(error),
    );
  });
}

/**
 * Passes the tar stream on and tells the gzip stage where, in the whole
 * stream, the announced zip content lies: tar-stream pushes an entry's Buffer
 * as it was given, so it is recognised by identity, before the gzip sees it.
 */
class OffsetTracker extends Transform {
  private offset = 0;
  readonly announced = new WeakMap<Buffer, Array<[number, number]>>();
  constructor(private readonly gzip: ParallelGzip) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    const ranges = this.announced.get(chunk);
    if (ranges) for (const [start, end] of ranges) this.gzip.storeAsIs(this.offset + start, this.offset + end);
    this.offset += chunk.length;
    callback(null, chunk);
  }
}

/** Tars, gzips and stores prepared entries; returns the layer without touching any cache. */
async function writePrepared(prepared: readonly PreparedEntry[], store: BlobStore, settings: Required<LayerSettings>, threads: number | undefined) {
  const dir = path.join(store.root, 'blobs', 'sha256');
  await fs.mkdir(dir, { recursive: true });
  const tmp = tempName(path.join(dir, 'layer'));
  const pack = tar.pack();
  const diffHasher = new HashingStream();
  const blobHasher = new HashingStream();
  const gzip = new ParallelGzip({ level: settings.gzipLevel, threads: threads ?? gzipThreadsFromEnv() });
  const tracker = new OffsetTracker(gzip);
  // The tar stream's many small pieces (512-byte headers, small files) joined into 256 KiB chunks:
  // hashing and gzip cost a call per piece (per-file pieces made small-file layers 3-4x slower).
  const done = pipeline(Readable.from(pack), tracker, new Batcher(256 * 1024), diffHasher, gzip, blobHasher, createWriteStream(tmp));
  try {
    const mtime = new Date(settings.mtime * 1000);
    for (const entry of prepared) await writeEntry(pack, entry, mtime, (data, ranges) => tracker.announced.set(data, ranges));
    pack.finalize();
    await done;
  } catch (error) {
    pack.on('error', () => undefined);
    pack.destroy(error as Error);
    await done.catch(() => undefined);
    await fs.rm(tmp, { force: true });
    throw error;
  }
  const digest = blobHasher.digest();
  const blobPath = store.path(digest);
  await fs.rename(tmp, blobPath);
  return {
    descriptor: { mediaType: MediaType.ociLayerGzip, digest, size: blobHasher.size } as Descriptor,
    diffId: diffHasher.digest(),
    uncompressedSize: diffHasher.size,
    blobPath,
  };
}

/**
 * Builds one layer from entries. With a cache, the entries are hashed and the
 * layer comes from the cache when the same inputs were written before.
 */
export async function writeLayer(entries: readonly LayerEntry[], options: LayerOptions): Promise<LayerResult> {
  const settings = resolveSettings(options);
  const prepared = await prepareEntries(entries);
  const info = summary(prepared);
  const key = layerKey(prepared, settings);
  if (options.cache) {
    const hit = await options.cache.get(key, options.store);
    if (hit) return { ...hit, blobPath: options.store.path(hit.descriptor.digest), cached: true };
  }
  const written = await writePrepared(prepared, options.store, settings, options.gzipThreads);
  const result: LayerResult = { ...written, ...info, cached: false };
  if (options.cache) {
    const { blobPath: _blobPath, cached: _cached, ...record } = result;
    await options.cache.put(key, record);
  }
  return result;
}

export interface DirectoryLayerOptions {
  /**
   * Symlinks whose target leaves the directory (absolute, or relative through
   * `..` past the root): 'error' (default) refuses them, 'copy' stores the
   * target's content instead, 'keep' stores the link as it is.
   */
  externalSymlinks?: 'error' | 'copy' | 'keep';
}

/**
 * Entries for a whole directory tree, placed under `prefixInImage`. Never
 * follows a symlink out of `dir`: links inside the tree are kept as links,
 * executable bits are kept (normalised to 0755).
 */
export async function directoryEntries(dir: string, prefixInImage: string, options: DirectoryLayerOptions = {}): Promise<LayerEntry[]> {
  const root = await fs.realpath(dir).catch((error: Error) => {
    throw new LayerError(`cannot read directory ${dir}: ${error.message}`);
  });
  const rootStat = await fs.stat(root);
  if (!rootStat.isDirectory()) throw new LayerError(`${dir} is not a directory`);
  const prefix = prefixInImage.split('/').filter((p) => p && p !== '.').join('/');
  const entries: LayerEntry[] = [];
  const inImage = (rel: string): string => (prefix ? `${prefix}/${rel}` : rel);
  const walk = async (relDir: string): Promise<void> => {
    const names = (await fs.readdir(path.join(root, relDir))).sort();
    for (const name of names) {
      const rel = relDir ? `${relDir}/${name}` : name;
      const full = path.join(root, rel);
      const stat = await fs.lstat(full);
      if (stat.isDirectory()) {
        entries.push({ type: 'directory', path: inImage(rel) });
        await walk(rel);
      } else if (stat.isFile()) {
        entries.push({ type: 'file', path: inImage(rel), source: full, mode: stat.mode });
      } else if (stat.isSymbolicLink()) {
        const target = await fs.readlink(full);
        const resolved = path.resolve(path.dirname(full), target);
        const inside = !path.isAbsolute(target) && (resolved === root || resolved.startsWith(root + path.sep));
        if (inside || options.externalSymlinks === 'keep') {
          entries.push({ type: 'symlink', path: inImage(rel), target });
        } else if (options.externalSymlinks === 'copy') {
          const real = await fs.stat(full).catch(() => undefined);
          if (!real?.isFile()) throw new LayerError(`symlink ${full} -> ${target} leaves ${dir} and does not point to a regular file`);
          entries.push({ type: 'file', path: inImage(rel), source: full, mode: real.mode });
        } else {
          throw new LayerError(
            `symlink ${full} -> ${target} points outside ${dir}: replace it with the file it points to, or make the link relative inside the directory`,
          );
        }
      } else {
        throw new LayerError(`${full} is not a regular file, directory or symlink: remove it from ${dir}`);
      }
    }
  };
  await walk('');
  if (prefix) entries.push({ type: 'directory', path: prefix });
  return entries;
}

/** A layer holding a whole directory tree under `prefixInImage` (used for JRE base images). */
export async function layerFromDirectory(
  dir: string,
  prefixInImage: string,
  options: LayerOptions & DirectoryLayerOptions,
): Promise<LayerResult> {
  return writeLayer(await directoryEntries(dir, prefixInImage, options), options);
}
