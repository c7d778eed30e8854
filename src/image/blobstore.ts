// A content-addressed blob directory laid out like an OCI image layout's
// `blobs/` folder (<root>/blobs/sha256/<hex>). Blobs are written to a temp file
// in the same directory and renamed into place, so a process killed mid-write
// never leaves a partial blob under its digest.
import { createHash } from 'node:crypto';
import { constants as fsConstants, createReadStream, createWriteStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { tempName, writeFileAtomic as writeFileWithMode } from '../common/index.js';

export function digestHex(digest: string): string {
  const [algorithm, hex] = digest.split(':');
  if (algorithm !== 'sha256' || !hex || !/^[a-f0-9]{64}$/.test(hex)) {
    throw new Error(`unsupported digest "${digest}": weft stores sha256 digests only`);
  }
  return hex;
}

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/**
 * Marks a stream that checks its own bytes against a digest (and size) and
 * fails before its end when they differ: VerifyingStream below and the
 * registry client's blob streams. BlobStore.putStream stores such a stream's
 * bytes under that digest without hashing them a second time. Symbol.for, so
 * that every copy of this module (the bundled CLI) means the same mark.
 */
export const SELF_VERIFYING = Symbol.for('weft.selfVerifying');

export interface SelfVerifying {
  [SELF_VERIFYING]?: { digest: string; size?: number };
}

/**
 * Marks a self-verifying stream that can also write itself to a file: the
 * registry client's large blob bodies, received on the main thread and
 * written and hashed on a worker thread. BlobStore.putStream gives it the
 * temp file instead of reading it; the promise resolves with the bytes
 * written once they are on disk and their digest (and size) matched, and
 * rejects otherwise (the file is then never renamed into place). Undefined:
 * it cannot (any more), read it as a stream.
 */
export const SELF_STORING = Symbol.for('weft.selfStoring');

export interface SelfStoring {
  [SELF_STORING]?: (file: string) => Promise<number> | undefined;
}

/** True when `source` verifies itself against exactly `expected` (digest, and size where one is expected). */
export function verifiesItself(source: Readable, expected: { digest: string; size?: number }): boolean {
  const mark = (source as Readable & SelfVerifying)[SELF_VERIFYING];
  return mark !== undefined && mark.digest === expected.digest && (expected.size === undefined || mark.size === expected.size);
}

/** A pass-through stream that counts bytes and hashes them with sha256. */
export class HashingStream extends Transform {
  private readonly hash = createHash('sha256');
  size = 0;
  constructor() {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: (error?: Error | null, data?: Buffer) => void): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    callback(null, chunk);
  }
  /** Valid once the stream has ended. */
  digest(): string {
    return `sha256:${this.hash.digest('hex')}`;
  }
}

/** Joins small pieces into chunks of at least `size` bytes; a piece that large passes as it is, after the pieces before it (which may then be fewer). */
export class Batcher extends Transform {
  private chunks: Buffer[] = [];
  private length = 0;
  constructor(private readonly size: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (chunk.length >= this.size) {
      // A large piece (a whole jar) passes as it is, after what came before it: joining would copy it.
      this.flushChunks();
      this.push(chunk);
      callback();
      return;
    }
    this.chunks.push(chunk);
    this.length += chunk.length;
    if (this.length >= this.size) this.flushChunks();
    callback();
  }
  override _flush(callback: (error?: Error | null) => void): void {
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

/** sha256 digest and size of a file's content. */
export async function hashFile(file: string): Promise<{ digest: string; size: number }> {
  const hasher = new HashingStream();
  await pipeline(createReadStream(file), hasher, async function* (source) {
    for await (const _ of source) {
      // drain
    }
  });
  return { digest: hasher.digest(), size: hasher.size };
}

/** Checks bytes read for a descriptor against its digest and size; `what` names them in the error. */
export function verifyBlobBytes(bytes: Buffer, descriptor: { digest: string; size?: number }, what: string): void {
  digestHex(descriptor.digest);
  const actual = sha256(bytes);
  if (actual !== descriptor.digest) {
    throw new BlobVerificationError(`${what} does not match its digest: expected ${descriptor.digest}, got ${actual}; the image was modified or damaged`);
  }
  if (descriptor.size !== undefined && descriptor.size !== bytes.length) {
    throw new BlobVerificationError(`${what} has ${bytes.length} bytes, but its descriptor says ${descriptor.size}; the image was modified or damaged`);
  }
}

export class BlobVerificationError extends Error {
  override name = 'BlobVerificationError';
}

/**
 * Passes a blob's bytes through and fails the stream (before its end is
 * signalled) when their digest or size differ from the descriptor's: a reader
 * never sees a modified blob complete successfully.
 */
export class VerifyingStream extends Transform implements SelfVerifying {
  private readonly hash = createHash('sha256');
  private seen = 0;
  readonly [SELF_VERIFYING]: { digest: string; size?: number };
  constructor(
    private readonly expected: { digest: string; size?: number },
    private readonly what: string,
  ) {
    super();
    digestHex(expected.digest);
    this[SELF_VERIFYING] = { digest: expected.digest, size: expected.size };
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: (error?: Error | null, data?: Buffer) => void): void {
    this.seen += chunk.length;
    if (this.expected.size !== undefined && this.seen > this.expected.size) {
      callback(new BlobVerificationError(`${this.what} is longer than the ${this.expected.size} bytes its descriptor says; the image was modified or damaged`));
      return;
    }
    this.hash.update(chunk);
    callback(null, chunk);
  }
  override _flush(callback: (error?: Error | null) => void): void {
    const actual = `sha256:${this.hash.digest('hex')}`;
    if (actual !== this.expected.digest) {
      callback(new BlobVerificationError(`${this.what} does not match its digest: expected ${this.expected.digest}, got ${actual}; the image was modified or damaged`));
    } else if (this.expected.size !== undefined && this.seen !== this.expected.size) {
      callback(new BlobVerificationError(`${this.what} has ${this.seen} bytes, but its descriptor says ${this.expected.size}; the image was modified or damaged`));
    } else {
      callback();
    }
  }
}

/** `source` piped through a VerifyingStream; a read error of the source reaches the result. */
export function verifiedStream(source: Readable, expected: { digest: string; size?: number }, what: string): Readable {
  const verifier = new VerifyingStream(expected, what);
  source.on('error', (error) => verifier.destroy(error));
  // The mismatch is found at the end of the stream; a consumer that already gave up on it (another
  // blob failed first) must not turn that late error into an uncaught exception. Consumers that read
  // it (pipeline, for await) still get the error.
  verifier.on('error', () => undefined);
  return source.pipe(verifier);
}

/**
 * `mkdir -p` that always ends. Node's recursive mkdir retries forever where
 * mkdir(2) says ENOENT although the parent exists (under /proc, for example);
 * this walks up once and reports such a directory as impossible to create.
 */
export async function makeDirectories(dir: string): Promise<void> {
  const target = path.resolve(dir);
  const attempt = async (): Promise<'made' | 'missing-parent'> => {
    try {
      await fs.mkdir(target);
      return 'made';
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') {
        if ((await fs.stat(target)).isDirectory()) return 'made';
        throw new Error(`cannot create directory ${target}: a file of that name exists`);
      }
      if (code === 'ENOENT') return 'missing-parent';
      throw new Error(`cannot create directory ${target}: ${(error as Error).message}`);
    }
  };
  if ((await attempt()) === 'made') return;
  const parent = path.dirname(target);
  if (parent === target) throw new Error(`cannot create directory ${target}`);
  await makeDirectories(parent);
  if ((await attempt()) === 'missing-parent') {
    throw new Error(`cannot create directory ${target}: the system refuses it although ${parent} exists (a special file system such as /proc?)`);
  }
}

export { tempName };

/** Writes `data` to `file` atomically (temp file in the same directory, then rename), creating the directory; readable by all, like the rest of a layout. */
export async function writeFileAtomic(file: string, data: Buffer | string): Promise<void> {
  await makeDirectories(path.dirname(file));
  await writeFileWithMode(file, data, 0o666);
}

export class BlobStore {
  constructor(readonly root: string) {}

  path(digest: string): string {
    return path.join(this.root, 'blobs', 'sha256', digestHex(digest));
  }

  async has(digest: string, size?: number): Promise<boolean> {
    try {
      const stat = await fs.stat(this.path(digest));
      return stat.isFile() && (size === undefined || stat.size === size);
    } catch {
      return false;
    }
  }

  open(digest: string): Readable {
    return createReadStream(this.path(digest));
  }

  /** Stores bytes whose digest is computed here. */
  async putBytes(data: Buffer): Promise<{ digest: string; size: number }> {
    const digest = sha256(data);
    if (!(await this.has(digest, data.length))) await writeFileAtomic(this.path(digest), data);
    return { digest, size: data.length };
  }

  /**
   * Adds a blob from a local file whose digest the caller already knows to be
   * right (weft wrote and hashed it, in the layer cache): hard-linked, so a
   * 300 MB layer is not written twice; where a link is impossible (another
   * file system) copied by the kernel (copy_file_range, or a reflink where
   * the file system has them). Not read and hashed again; only the size is
   * checked. The cache's blob and this one are then one file: blobs are never
   * changed in place, and a damaged cache blob is caught when a later build
   * reuses it (cache hits are read and verified, see build.ts).
   */
  async putTrustedFile(file: string, expected: { digest: string; size: number }): Promise<void> {
    if (await this.has(expected.digest, expected.size)) return;
    const dir = path.join(this.root, 'blobs', 'sha256');
    await makeDirectories(dir);
    const tmp = tempName(path.join(dir, 'incoming'));
    try {
      await fs.link(file, tmp).catch(() => fs.copyFile(file, tmp, fsConstants.COPYFILE_FICLONE));
      const { size } = await fs.stat(tmp);
      if (size !== expected.size) throw new Error(`blob ${expected.digest} in ${file} has size ${size}, expected ${expected.size}`);
      await fs.rename(tmp, this.path(expected.digest));
    } catch (error) {
      await fs.rm(tmp, { force: true });
      throw error;
    }
  }

  /**
   * Streams a blob into the store. When `expected` is given the content is
   * verified against it; otherwise the digest is whatever the bytes hash to.
   */
  async putStream(source: Readable, expected?: { digest: string; size?: number }): Promise<{ digest: string; size: number }> {
    if (expected && (await this.has(expected.digest, expected.size))) {
      source.resume();
      source.destroy();
      return { digest: expected.digest, size: expected.size ?? (await fs.stat(this.path(expected.digest))).size };
    }
    const dir = path.join(this.root, 'blobs', 'sha256');
    await makeDirectories(dir);
    const tmp = tempName(path.join(dir, 'incoming'));
    try {
      // A stream that verifies itself (a registry blob, a layout's blob) fails before its end on a
      // mismatch, so the file is never renamed into place; its bytes are not hashed a second time.
      // Socket chunks (16-64 KiB) are written 1 MiB at a time: one write per chunk costs the main
      // thread more than the copy into a batch.
      if (expected && verifiesItself(source, expected)) {
        const storing = (source as Readable & SelfStoring)[SELF_STORING]?.(tmp);
        if (storing) {
          const written = await storing;
          await fs.rename(tmp, this.path(expected.digest));
          return { digest: expected.digest, size: expected.size ?? written };
        }
        const file = createWriteStream(tmp);
        await pipeline(source, new Batcher(1024 * 1024), file);
        const size = expected.size ?? file.bytesWritten;
        await fs.rename(tmp, this.path(expected.digest));
        return { digest: expected.digest, size };
      }
      const hasher = new HashingStream();
      await pipeline(source, hasher, createWriteStream(tmp));
      const digest = hasher.digest();
      if (expected && expected.digest !== digest) {
        throw new Error(`blob content does not match its digest: expected ${expected.digest}, got ${digest}`);
      }
      if (expected?.size !== undefined && expected.size !== hasher.size) {
        throw new Error(`blob ${digest} has size ${hasher.size}, expected ${expected.size}`);
      }
      await fs.rename(tmp, this.path(digest));
      return { digest, size: hasher.size };
    } catch (error) {
      await fs.rm(tmp, { force: true });
      throw error;
    }
  }
}
