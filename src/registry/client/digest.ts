// Digest computation and verification for content the client fetches.
import { createHash } from 'node:crypto';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { SELF_VERIFYING, type SelfVerifying } from '../../image/blobstore.js';
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

/**
 * A blob body, hashed as it arrives and handed on in batches of `batchBytes`:
 * the same checks as VerifyingStream (the stream errors before its end if
 * size or digest differ, so a consumer never sees a clean end of wrong
 * bytes), without a Transform stage per socket chunk (16-64 KiB): a pull's
 * per-chunk work is one hash update and one array push, and the file writer
 * gets 1 MiB writes. Flow control: the source is paused while this stream's
 * buffer is full and resumed when it is read.
 */
export class VerifiedBody extends Readable implements SelfVerifying {
  private readonly hash;
  private seen = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private ended = false;
  readonly [SELF_VERIFYING]: { digest: string; size?: number };
  constructor(
    private readonly source: Readable,
    private readonly digest: string,
    private readonly size: number | undefined,
    private readonly what: string,
    private readonly batchBytes = 1024 * 1024,
  ) {
    super({ highWaterMark: batchBytes });
    this.hash = createHash(algorithmOf(digest));
    this[SELF_VERIFYING] = { digest, size };
    source.on('data', (chunk: Buffer) => this.onChunk(chunk));
    source.once('end', () => this.finish());
    source.once('error', (error) => this.destroy(error));
    source.once('close', () => {
      if (!this.ended && !this.destroyed) this.destroy(new DigestMismatchError(`${this.what}: the connection closed after ${this.seen} bytes, before the end of the blob`));
    });
  }
  private onChunk(chunk: Buffer): void {
    if (this.destroyed) return;
    this.seen += chunk.length;
    if (this.size !== undefined && this.seen > this.size) {
      this.destroy(new DigestMismatchError(`${this.what}: more than the ${this.size} bytes its descriptor says`));
      return;
    }
    this.hash.update(chunk);
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes >= this.batchBytes && !this.flushPending()) this.source.pause();
  }
  private flushPending(): boolean {
    if (this.pendingBytes === 0) return true;
    const batch = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    return this.push(batch);
  }
  private finish(): void {
    this.ended = true;
    if (this.destroyed) return;
    if (this.size !== undefined && this.seen !== this.size) {
      this.destroy(new DigestMismatchError(`${this.what}: got ${this.seen} bytes, expected ${this.size}`));
      return;
    }
    const actual = `${algorithmOf(this.digest)}:${this.hash.digest('hex')}`;
    if (actual !== this.digest) {
      this.destroy(new DigestMismatchError(`${this.what}: expected ${this.digest}, got ${actual}`));
      return;
    }
    this.flushPending();
    this.push(null);
  }
  override _read(): void {
    if (!this.ended) this.source.resume();
  }
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.ended) this.source.destroy();
    callback(error);
  }
}
