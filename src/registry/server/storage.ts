// On-disk storage of the embedded registry.
//
//   <root>/blobs/<alg>/<hex[0:2]>/<hex>          content-addressed blobs (layers, configs, manifests)
//   <root>/uploads/<uuid>/{data,info.json}       upload sessions (never visible as blobs)
//   <root>/repositories/<name>/_layers/<alg>/<hex>                  blob links (empty files)
//   <root>/repositories/<name>/_manifests/revisions/<alg>/<hex>     manifest links ({"mediaType","size"})
//   <root>/repositories/<name>/_manifests/tags/<tag>                tag -> digest
//   <root>/repositories/<name>/_referrers/<alg>/<hex>/<alg>-<hex>   referrer descriptors of a subject
//
// A blob becomes visible only by rename(2) of a complete, fsynced file whose
// digest was verified while it streamed in; links are written after their blob.
import { createHash, randomUUID, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { type FileHandle, open, readdir, readFile, rename, rm, stat, truncate, unlink, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { RegistryError } from './errors.js';
import { parseDigest, type ParsedDigest } from './names.js';
import { fsyncDir, mkdirp, statOrNull, writeFileAtomic } from './fsutil.js';

export interface ManifestLink {
  mediaType: string;
  size: number;
}

export interface StoredManifest {
  digest: string;
  mediaType: string;
  body: Buffer;
}

export interface ReferrerDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

interface UploadSession {
  id: string;
  name: string;
  dataPath: string;
  size: number;
  /** Running sha256 of the bytes so far; null when unknown (e.g. after a restart): recomputed at the end. */
  hash: Hash | null;
  busy: boolean;
  lastActive: number;
}

const uploadIdPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Counts and hashes bytes as they pass. */
class HashingCounter extends Transform {
  bytes = 0;
  constructor(private readonly hash: Hash, private readonly limit: number = Number.POSITIVE_INFINITY) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: (error?: Error | null, data?: Buffer) => void): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) {
      done(new RegistryError('SIZE_INVALID', `more bytes than announced (${this.limit})`, { status: 400 }));
      return;
    }
    this.hash.update(chunk);
    done(null, chunk);
  }
}

/** A pipeline destination writing every chunk to an open file (the caller fsyncs and closes it). */
function sinkTo(handle: FileHandle): (source: AsyncIterable<Buffer>) => Promise<void> {
  // Chunks are gathered into 256 KiB batches: one write(2) per batch instead of per 16-64 KiB chunk.
  const flush = async (chunks: Buffer[]): Promise<void> => {
    let buffer = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    while (buffer.length > 0) {
      const { bytesWritten } = await handle.write(buffer, 0, buffer.length);
      buffer = buffer.subarray(bytesWritten);
    }
  };
  return async (source) => {
    let pending: Buffer[] = [];
    let size = 0;
    for await (const chunk of source) {
      pending.push(chunk);
      size += chunk.length;
      if (size >= 256 * 1024) {
        await flush(pending);
        pending = [];
        size = 0;
      }
    }
    if (size > 0) await flush(pending);
  };
}

export class Storage {
  readonly root: string;
  private readonly sessions = new Map<string, UploadSession>();
  /** Verified blob sizes by digest, to answer HEAD without a stat after the first time. */
  constructor(root: string) {
    this.root = root;
  }

  async init(): Promise<void> {
    try {
      for (const dir of ['blobs', 'uploads', 'repositories']) await mkdirp(join(this.root, dir));
    } catch (error) {
      throw new Error(`cannot create the registry storage in ${this.root} (${(error as Error).message}): pass --root with a writable folder`);
    }
  }

  // ---------- paths ----------
  blobPath(d: ParsedDigest): string {
    return join(this.root, 'blobs', d.algorithm, d.hex.slice(0, 2), d.hex);
  }
  repoDir(name: string): string {
    return join(this.root, 'repositories', name);
  }
  private layerLink(name: string, d: ParsedDigest): string {
    return join(this.repoDir(name), '_layers', d.algorithm, d.hex);
  }
  private revisionLink(name: string, d: ParsedDigest): string {
    return join(this.repoDir(name), '_manifests', 'revisions', d.algorithm, d.hex);
  }
  private tagPath(name: string, tag: string): string {
    return join(this.repoDir(name), '_manifests', 'tags', tag);
  }
  private referrersDir(name: string, subject: ParsedDigest): string {
    return join(this.repoDir(name), '_referrers', subject.algorithm, subject.hex);
  }

  // ---------- blobs ----------
  async blobSize(d: ParsedDigest): Promise<number | null> {
    const info = await statOrNull(this.blobPath(d));
    return info && info.isFile ? info.size : null;
  }

  /** Size of a blob visible in repository `name`, or null. */
  async repoBlobSize(name: string, d: ParsedDigest): Promise<number | null> {
    if (!(await statOrNull(this.layerLink(name, d))) && !(await statOrNull(this.revisionLink(name, d)))) return null;
    return this.blobSize(d);
  }

  /** Marks a blob as recently used so garbage collection's grace period protects it. */
  async touchBlob(d: ParsedDigest): Promise<void> {
    const now = new Date();
    try {
      await utimes(this.blobPath(d), now, now);
    } catch {
      /* gone: the caller's later existence check decides */
    }
  }

  async linkBlob(name: string, d: ParsedDigest): Promise<void> {
    const link = this.layerLink(name, d);
    try {
      await (await open(link, 'a')).close();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      await mkdirp(dirname(link));
      await (await open(link, 'a')).close();
    }
  }

  async unlinkBlob(name: string, d: ParsedDigest): Promise<boolean> {
    try {
      await unlink(this.layerLink(name, d));
      return true;
    } catch {
      return false;
    }
  }

  openBlob(d: ParsedDigest, range?: { start: number; end: number }): Readable {
    const highWaterMark = 256 * 1024;
    return createReadStream(this.blobPath(d), range ? { start: range.start, end: range.end, highWaterMark } : { highWaterMark });
  }

  /** Moves a complete, verified file into the blob store (or drops it if the blob is already there). */
  private async commitBlob(tempPath: string, d: ParsedDigest): Promise<void> {
    // rename(2) is atomic; over an existing blob it swaps in identical bytes (the digest
    // was verified), and readers holding the old file keep reading it.
    const target = this.blobPath(d);
    try {
      await rename(tempPath, target);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      await mkdirp(dirname(target));
      await rename(tempPath, target);
    }
    await fsyncDir(dirname(target));
  }

  /** Streams `body` into a temporary file, verifying `expected` (and the length if known), then commits it. */
  async putBlob(name: string, expected: ParsedDigest, body: Readable, contentLength?: number, commitGuard: (commit: () => Promise<void>) => Promise<void> = (commit) => commit()): Promise<number> {
    const id = randomUUID();
    const dir = join(this.root, 'uploads', id);
    await mkdirp(dir);
    const dataPath = join(dir, 'data');
    try {
      const hash = createHash(expected.algorithm);
      const counter = new HashingCounter(hash, contentLength ?? Number.POSITIVE_INFINITY);
      const handle = await open(dataPath, 'w', 0o644);
      try {
        await pipeline(body, counter, sinkTo(handle));
        await handle.sync();
      } finally {
        await handle.close();
      }
      if (contentLength !== undefined && counter.bytes !== contentLength) {
        throw new RegistryError('SIZE_INVALID', `received ${counter.bytes} bytes, Content-Length said ${contentLength}`);
      }
      const actual = `${expected.algorithm}:${hash.digest('hex')}`;
      if (actual !== expected.digest) {
        throw new RegistryError('DIGEST_INVALID', `content digest ${actual} does not match ${expected.digest}`, { detail: { expected: expected.digest, actual } });
      }
      // only the commit is guarded (e.g. by the GC lock), not the client-paced streaming above
      await commitGuard(async () => {
        await this.commitBlob(dataPath, expected);
        await this.linkBlob(name, expected);
      });
      return counter.bytes;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  // ---------- upload sessions ----------
  async createUpload(name: string): Promise<string> {
    const id = randomUUID();
    const dir = join(this.root, 'uploads', id);
    await mkdirp(dir);
    await writeFile(join(dir, 'info.json'), JSON.stringify({ name, startedAt: new Date().toISOString() }));
    this.sessions.set(id, { id, name, dataPath: join(dir, 'data'), size: 0, hash: createHash('sha256'), busy: false, lastActive: Date.now() });
    return id;
  }

  /** The session `id` of repository `name`, loaded from disk after a restart; BLOB_UPLOAD_UNKNOWN otherwise. */
  async getUpload(name: string, id: string): Promise<UploadSession> {
    const unknown = () => new RegistryError('BLOB_UPLOAD_UNKNOWN', 'upload session unknown: it was completed, cancelled or expired; start a new one with POST', { detail: { uuid: id } });
    if (!uploadIdPattern.test(id)) throw unknown();
    let session = this.sessions.get(id);
    if (!session) {
      const dir = join(this.root, 'uploads', id);
      try {
        const info = JSON.parse(await readFile(join(dir, 'info.json'), 'utf8')) as { name: string };
        const data = await statOrNull(join(dir, 'data'));
        session = { id, name: info.name, dataPath: join(dir, 'data'), size: data?.size ?? 0, hash: null, busy: false, lastActive: Date.now() };
        this.sessions.set(id, session);
      } catch {
        throw unknown();
      }
    }
    if (session.name !== name) throw unknown();
    return session;
  }

  private claim(session: UploadSession): void {
    if (session.busy) throw new RegistryError('BLOB_UPLOAD_INVALID', 'another request is writing to this upload session', { status: 416, headers: this.uploadHeaders(session) });
    session.busy = true;
  }

  uploadHeaders(session: UploadSession): Record<string, string> {
    return {
      Location: `/v2/${session.name}/blobs/uploads/${session.id}`,
      Range: `0-${Math.max(session.size - 1, 0)}`,
      'Docker-Upload-UUID': session.id,
    };
  }

  /**
   * Appends a chunk to a session. `start` (from Content-Range) must equal the bytes
   * already received, else 416. A failed or short chunk is rolled back entirely.
   */
  async appendUpload(session: UploadSession, body: Readable, range?: { start: number; end: number }, contentLength?: number): Promise<void> {
    this.claim(session);
    const before = session.size;
    const hashBefore = session.hash ? session.hash.copy() : null;
    try {
      if (range && range.start !== session.size) {
        throw new RegistryError('BLOB_UPLOAD_INVALID', `chunk starts at ${range.start} but ${session.size} bytes were received: send the chunk starting at ${session.size}`, { status: 416, headers: this.uploadHeaders(session) });
      }
      const expected = range ? range.end - range.start + 1 : contentLength;
      if (range && contentLength !== undefined && contentLength !== expected) {
        throw new RegistryError('SIZE_INVALID', `Content-Range announces ${expected} bytes but Content-Length is ${contentLength}`, { status: 416, headers: this.uploadHeaders(session) });
      }
      const counter = new HashingCounter(session.hash ?? createHash('sha256'), expected ?? Number.POSITIVE_INFINITY);
      const handle = await open(session.dataPath, 'a');
      try {
        await pipeline(body, counter, sinkTo(handle));
      } finally {
        await handle.close();
      }
      if (expected !== undefined && counter.bytes !== expected) {
        throw new RegistryError('SIZE_INVALID', `received ${counter.bytes} bytes, expected ${expected}`);
      }
      session.size = before + counter.bytes;
      session.lastActive = Date.now();
    } catch (error) {
      // roll back to the state before this chunk
      await truncate(session.dataPath, before).catch(() => undefined);
      session.size = before;
      session.hash = hashBefore;
      throw error;
    } finally {
      session.busy = false;
    }
  }

  /** Verifies the session's bytes against `expected`, commits the blob and links it into the repository. */
  async finishUpload(session: UploadSession, expected: ParsedDigest): Promise<number> {
    this.claim(session);
    try {
      let actual: string;
      if (session.size === 0) await (await open(session.dataPath, 'a')).close();
      if (expected.algorithm === 'sha256' && session.hash) {
        actual = `sha256:${session.hash.copy().digest('hex')}`;
      } else {
        const hash = createHash(expected.algorithm);
        await pipeline(createReadStream(session.dataPath), new HashingCounter(hash), async function* (source) {
          for await (const _ of source) {
            /* drain */
          }
        });
        actual = `${expected.algorithm}:${hash.digest('hex')}`;
      }
      if (actual !== expected.digest) {
        await this.dropSession(session);
        throw new RegistryError('DIGEST_INVALID', `uploaded content has digest ${actual}, not ${expected.digest}; the upload was discarded`, { detail: { expected: expected.digest, actual } });
      }
      const handle = await open(session.dataPath, 'a');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
      await this.commitBlob(session.dataPath, expected);
      await this.linkBlob(session.name, expected);
      const size = session.size;
      await this.dropSession(session);
      return size;
    } finally {
      session.busy = false;
    }
  }

  async dropSession(session: UploadSession): Promise<void> {
    this.sessions.delete(session.id);
    const dir = dirname(session.dataPath);
    await Promise.all([rm(session.dataPath, { force: true }), rm(join(dir, 'info.json'), { force: true })]);
    await rm(dir, { recursive: true, force: true });
  }

  /** Removes upload sessions idle for longer than `maxIdleMs`. Returns how many. */
  async purgeStaleUploads(maxIdleMs: number): Promise<number> {
    const now = Date.now();
    let purged = 0;
    let entries: string[] = [];
    try {
      entries = await readdir(join(this.root, 'uploads'));
    } catch {
      return 0;
    }
    for (const id of entries) {
      const live = this.sessions.get(id);
      if (live?.busy) continue;
      const dir = join(this.root, 'uploads', id);
      let last = live?.lastActive ?? 0;
      const data = await statOrNull(join(dir, 'data'));
      const dirInfo = await statOrNull(dir);
      last = Math.max(last, data?.mtimeMs ?? 0, dirInfo?.mtimeMs ?? 0);
      if (now - last > maxIdleMs) {
        this.sessions.delete(id);
        await rm(dir, { recursive: true, force: true });
        purged++;
      }
    }
    return purged;
  }

  // ---------- manifests ----------
  async putManifest(name: string, d: ParsedDigest, body: Buffer, mediaType: string, tags: string[], subject?: ParsedDigest, referrer?: ReferrerDescriptor): Promise<void> {
    const target = this.blobPath(d);
    if (!(await statOrNull(target))) await writeFileAtomic(target, body);
    else await this.touchBlob(d);
    const link: ManifestLink = { mediaType, size: body.length };
    await writeFileAtomic(this.revisionLink(name, d), JSON.stringify(link));
    if (subject && referrer) {
      await writeFileAtomic(join(this.referrersDir(name, subject), `${d.algorithm}-${d.hex}`), JSON.stringify(referrer));
    }
    for (const tag of tags) await writeFileAtomic(this.tagPath(name, tag), d.digest);
  }

  async resolveTag(name: string, tag: string): Promise<ParsedDigest | null> {
    try {
      return parseDigest((await readFile(this.tagPath(name, tag), 'utf8')).trim());
    } catch {
      return null;
    }
  }

  async manifestLink(name: string, d: ParsedDigest): Promise<ManifestLink | null> {
    try {
      return JSON.parse(await readFile(this.revisionLink(name, d), 'utf8')) as ManifestLink;
    } catch {
      return null;
    }
  }

  async getManifest(name: string, d: ParsedDigest): Promise<StoredManifest | null> {
    const link = await this.manifestLink(name, d);
    if (!link) return null;
    try {
      return { digest: d.digest, mediaType: link.mediaType, body: await readFile(this.blobPath(d)) };
    } catch {
      return null;
    }
  }

  async deleteTag(name: string, tag: string): Promise<boolean> {
    try {
      await unlink(this.tagPath(name, tag));
      return true;
    } catch {
      return false;
    }
  }

  /** Deletes a manifest revision, the tags pointing at it and its referrer entry. */
  async deleteManifest(name: string, d: ParsedDigest, subject?: ParsedDigest): Promise<boolean> {
    try {
      await unlink(this.revisionLink(name, d));
    } catch {
      return false;
    }
    for (const tag of await this.listTags(name)) {
      const target = await this.resolveTag(name, tag);
      if (target?.digest === d.digest) await this.deleteTag(name, tag);
    }
    if (subject) await rm(join(this.referrersDir(name, subject), `${d.algorithm}-${d.hex}`), { force: true });
    return true;
  }

  /** Digests of the manifest revisions stored in repository `name`. */
  async listManifestRevisions(name: string): Promise<ParsedDigest[]> {
    const out: ParsedDigest[] = [];
    const dir = join(this.repoDir(name), '_manifests', 'revisions');
    for (const algorithm of await readdir(dir).catch(() => [] as string[])) {
      for (const hex of await readdir(join(dir, algorithm)).catch(() => [] as string[])) {
        try {
          out.push(parseDigest(`${algorithm}:${hex}`));
        } catch {
          /* a temp file of an interrupted write */
        }
      }
    }
    return out;
  }

  /**
   * Manifests of repository `name` (other than `target` itself) that name `target`
   * as their config, a layer or an index child: deleting `target` would leave them
   * pointing at nothing.
   */
  async manifestsReferencing(name: string, target: ParsedDigest): Promise<string[]> {
    const out: string[] = [];
    for (const revision of await this.listManifestRevisions(name)) {
      if (revision.digest === target.digest) continue;
      const manifest = await this.getManifest(name, revision);
      if (!manifest) continue;
      let doc: { config?: { digest?: unknown }; layers?: Array<{ digest?: unknown }>; manifests?: Array<{ digest?: unknown }> };
      try {
        doc = JSON.parse(manifest.body.toString('utf8'));
      } catch {
        continue;
      }
      const named = [doc.config, ...(Array.isArray(doc.layers) ? doc.layers : []), ...(Array.isArray(doc.manifests) ? doc.manifests : [])];
      if (named.some((descriptor) => descriptor?.digest === target.digest)) out.push(revision.digest);
    }
    return out.sort();
  }

  async repoExists(name: string): Promise<boolean> {
    return (await statOrNull(this.repoDir(name))) !== null;
  }

  async listTags(name: string): Promise<string[]> {
    try {
      const entries = await readdir(join(this.repoDir(name), '_manifests', 'tags'));
      return entries.filter((entry) => !entry.startsWith('.')).sort();
    } catch {
      return [];
    }
  }

  async listReferrers(name: string, subject: ParsedDigest): Promise<ReferrerDescriptor[]> {
    const dir = this.referrersDir(name, subject);
    let entries: string[];
    try {
      entries = (await readdir(dir)).filter((entry) => !entry.startsWith('.')).sort();
    } catch {
      return [];
    }
    const out: ReferrerDescriptor[] = [];
    for (const entry of entries) {
      try {
        const descriptor = JSON.parse(await readFile(join(dir, entry), 'utf8')) as ReferrerDescriptor;
        // a referrer whose manifest was deleted behind our back is not listed
        if (await this.manifestLink(name, parseDigest(descriptor.digest))) out.push(descriptor);
      } catch {
        /* skip unreadable entries */
      }
    }
    return out;
  }

  /** Repository names, sorted (a repository is a folder holding _manifests or _layers). */
  async listRepositories(): Promise<string[]> {
    const out: string[] = [];
    const walk = async (rel: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(join(this.root, 'repositories', rel), { withFileTypes: true });
      } catch {
        return;
      }
      let isRepo = false;
      for (const entry of entries) {
        if (!entry.isDirectory()) continue;
        if (entry.name.startsWith('_')) isRepo = true;
        else await walk(rel ? `${rel}/${entry.name}` : entry.name);
      }
      if (isRepo && rel) out.push(rel);
    };
    await walk('');
    return out.sort();
  }
}
