// Digest computation and verification for content the client fetches.
import { createHash, type Hash } from 'node:crypto';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { BatchedBody } from './batched.js';
import { ThreadHash, batchBuffer, inPooledMemory, pooledReadMemory, useHashThread } from './hash-thread.js';
import { SELF_STORING, SELF_VERIFYING, type SelfStoring, type SelfVerifying } from '../../image/blobstore.js';
import { isSupportedDigest } from '../../image/oci.js';
import { DigestMismatchError } from './errors.js';

export function algorithmOf(digest: string): 'sha256' | 'sha512' {
  if (!isSupportedDigest(digest)) throw new DigestMismatchError(`unsupported or malformed digest "${digest}": weft verifies sha256 and sha512 digests`);
  return digest.startsWith('sha512:') ? 'sha512' : 'sha256';
}

export function digestOf(bytes: Buffer, algorithm: 'sha256' | 'sha512' = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}

export function verifyBytes(bytes: Buffer, digest: string, what: string): void {
  const actual = digestOf(bytes, algorithmOf(digest));
  if (actual !== digest) throw new DigestMismatchError(`${what}: expected ${digest}, got ${actual}; the registry served wrong content`);
}

/** Passes bytes through, failing the stream at its end if their digest or size differ from what was expected. */
export class VerifyingStream extends Transform implements SelfVerifying {
  private readonly hash;
  private seen = 0;
  readonly [SELF_VERIFYING]: { digest: string; size?: number };
  constructor(
    private readonly digest: string,
    private readonly size: number | undefined,
    private readonly what: string,
  ) {
    super();
    this.hash = createHash(algorithmOf(digest));
    this[SELF_VERIFYING] = { digest, size };
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.seen += chunk.length;
    if (this.size !== undefined && this.seen > this.size) {
      callback(new DigestMismatchError(`${this.what}: more than the ${this.size} bytes its descriptor says`));
      return;
    }
    this.hash.update(chunk);
    callback(null, chunk);
  }
  override _flush(callback: TransformCallback): void {
    if (this.size !== undefined && this.seen !== this.size) {
      callback(new DigestMismatchError(`${this.what}: got ${this.seen} bytes, expected ${this.size}`));
      return;
    }
    const actual = `${algorithmOf(this.digest)}:${this.hash.digest('hex')}`;
    if (actual !== this.digest) {
      callback(new DigestMismatchError(`${this.what}: expected ${this.digest}, got ${actual}`));
      return;
    }
    callback();
  }
}

/** Bytes a body may have handed to the worker thread and not had hashed yet, before it stops reading. */
const THREAD_HASH_MAX_OUTSTANDING = 16 * 1024 * 1024;

/** A hash on the worker thread, or undefined when no thread can be started (then the body hashes here, as a small one does). */
function startThreadHash(algorithm: 'sha256' | 'sha512', onDone: () => void): ThreadHash | undefined {
  try {
    return new ThreadHash(algorithm, onDone);
  } catch {
    return undefined;
  }
}

/**
 * A blob body, hashed as it arrives and handed on in 1 MiB batches: the same
 * checks as VerifyingStream (the stream errors before its end if size or
 * digest differ, so a consumer never sees a clean end of wrong bytes), without
 * a Transform stage per socket chunk (see BatchedBody).
 *
 * A body of 4 MiB or more (by its descriptor; useHashThread decides) can be
 * hashed on the worker thread of hash-thread.ts, and when BlobStore.putStream stores it (SELF_STORING)
 * the thread writes it too: this thread then only receives and batches, and
 * moves each batch to the other core without a copy. It stops reading while
 * 16 MiB wait there, and ends (or stores) only when the thread's digest
 * matches.
 */
export class VerifiedBody extends BatchedBody implements SelfVerifying, SelfStoring {
  private readonly inlineHash: Hash | undefined;
  private readonly threadHash: ThreadHash | undefined;
  /** Batches this body joined itself: nothing else holds them, so they may be moved to the thread. */
  private readonly own = new WeakSet<Buffer>();
  private readonly ownChunks: boolean;
  private readonly readInto?: (memory: () => Buffer) => void;
  private storing = false;
  private verifying = false;
  private written = 0;
  readonly [SELF_VERIFYING]: { digest: string; size?: number };
  readonly [SELF_STORING]?: (file: string) => Promise<number> | undefined;
  constructor(
    source: Readable,
    private readonly digest: string,
    private readonly size: number | undefined,
    what: string,
    batchBytes?: number,
    options: {
      hashThread?: boolean;
      /** The source's chunks are fresh buffers nothing else holds (an HTTP response body): storing, they are moved to the thread unjoined. */
      ownChunks?: boolean;
      /** Has the source read the rest of the body into the memory given (DirectBody.readInto): stored by the thread, its chunks then move there as they are. */
      readInto?: (memory: () => Buffer) => void;
    } = {},
  ) {
    super(source, what, batchBytes);
    this.ownChunks = options.ownChunks ?? false;
    this.readInto = options.readInto;
    const algorithm = algorithmOf(digest);
    this[SELF_VERIFYING] = { digest, size };
    this.threadHash = options.hashThread ?? useHashThread(size) ? startThreadHash(algorithm, () => this.threadCaughtUp()) : undefined;
    if (this.threadHash) this[SELF_STORING] = (file) => this.storeTo(file);
    else this.inlineHash = createHash(algorithm);
  }
  protected override accept(_chunk: Buffer): Error | undefined {
    if (this.size !== undefined && this.seen > this.size) return new DigestMismatchError(`${this.what}: more than the ${this.size} bytes its descriptor says`);
    return undefined;
  }
  /** Stored by the thread: every batch goes into pooled memory that is moved there and back (batchBuffer). */
  private get fillsPooledBatches(): boolean {
    return this.storing && this.threadHash !== undefined;
  }
  protected override joinsSinglePart(): boolean {
    return this.fillsPooledBatches;
  }
  protected override join(parts: Buffer[], total: number): Buffer {
    let batch: Buffer;
    if (this.fillsPooledBatches) {
      batch = batchBuffer(total);
      let at = 0;
      for (const part of parts) at += part.copy(batch, at);
    } else {
      batch = super.join(parts, total);
    }
    this.own.add(batch);
    return batch;
  }
  protected override batched(batch: Buffer): void {
    if (!this.threadHash) {
      this.inlineHash!.update(batch);
      return;
    }
    // Storing, the thread writes the batch too and this thread never touches it again.
    this.threadHash.update(batch, this.storing && this.own.has(batch));
    this.holdWhileBehind();
  }
  protected override consumeParts(parts: Buffer[]): boolean {
    if (!this.storing || !this.threadHash) return false;
    // Chunks read into pooled memory (readInto) are the body's alone: moved as they are. A batch
    // with anything else in it (bytes read before the store began) is joined into a pooled copy.
    if (!this.ownChunks && !parts.every(inPooledMemory)) return false;
    this.threadHash.updateParts(parts);
    this.holdWhileBehind();
    return true;
  }
  private holdWhileBehind(): void {
    if (this.threadHash!.outstanding > THREAD_HASH_MAX_OUTSTANDING) this.hold();
  }
  protected override handOn(batch: Buffer): boolean {
    return this.storing ? true : super.handOn(batch);
  }
  private threadCaughtUp(): void {
    if (this.threadHash && this.threadHash.outstanding <= THREAD_HASH_MAX_OUTSTANDING / 2) this.release();
  }
  /**
   * Has the thread write the body to `file`: what was already read (and
   * hashed) first, then the rest as it comes. Undefined when the body has
   * already been checked (it all came before it was asked to store): it is
   * then read as a stream. The promise settles only once the thread has
   * closed the file, so a failed store leaves no writer behind its removal.
   */
  private storeTo(file: string): Promise<number> | undefined {
    if (this.verifying || this.destroyed) return undefined;
    const threadHash = this.threadHash!;
    const stored = new Promise<number>((resolve, reject) => {
      const fail = (error: Error): void => {
        threadHash.drop();
        void threadHash.settled.then(() => reject(error));
      };
      this.once('stored', () => resolve(this.written));
      this.once('error', fail);
      this.once('close', () => fail(new Error(`${this.what}: the body was closed before it was stored`)));
    });
    threadHash.toFile(file);
    for (let batch: Buffer | null; (batch = this.read() as Buffer | null) !== null; ) threadHash.write(batch);
    this.storing = true;
    this.readInto?.(pooledReadMemory);
    this.resume();
    return stored;
  }
  protected override async verify(): Promise<Error | undefined> {
    this.verifying = true;
    // An error here destroys the body, and _destroy drops its thread hash.
    if (this.size !== undefined && this.seen !== this.size) {
      return new DigestMismatchError(`${this.what}: got ${this.seen} bytes, expected ${this.size}`);
    }
    let hex: string;
    if (this.threadHash) {
      const result = await this.threadHash.digest();
      hex = result.hex;
      this.written = result.written;
    } else {
      hex = this.inlineHash!.digest('hex');
    }
    const actual = `${algorithmOf(this.digest)}:${hex}`;
    if (actual !== this.digest) return new DigestMismatchError(`${this.what}: expected ${this.digest}, got ${actual}`);
    if (this.storing) this.emit('stored');
    return undefined;
  }
  protected override closedEarly(): Error {
    return new DigestMismatchError(`${this.what}: the connection closed after ${this.seen} bytes, before the end of the blob`);
  }
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.threadHash?.drop();
    super._destroy(error, callback);
  }
}
