// Digest computation and verification for content the client fetches.
import { createHash } from 'node:crypto';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { BatchedBody } from './batched.js';
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
 * A blob body, hashed as it arrives and handed on in 1 MiB batches: the same
 * checks as VerifyingStream (the stream errors before its end if size or
 * digest differ, so a consumer never sees a clean end of wrong bytes), without
 * a Transform stage per socket chunk (see BatchedBody).
 */
export class VerifiedBody extends BatchedBody implements SelfVerifying {
  private readonly hash;
  readonly [SELF_VERIFYING]: { digest: string; size?: number };
  constructor(
    source: Readable,
    private readonly digest: string,
    private readonly size: number | undefined,
    what: string,
    batchBytes?: number,
  ) {
    super(source, what, batchBytes);
    this.hash = createHash(algorithmOf(digest));
    this[SELF_VERIFYING] = { digest, size };
  }
  protected override accept(chunk: Buffer): Error | undefined {
    if (this.size !== undefined && this.seen > this.size) return new DigestMismatchError(`${this.what}: more than the ${this.size} bytes its descriptor says`);
    this.hash.update(chunk);
    return undefined;
  }
  protected override check(): Error | undefined {
    if (this.size !== undefined && this.seen !== this.size) return new DigestMismatchError(`${this.what}: got ${this.seen} bytes, expected ${this.size}`);
    const actual = `${algorithmOf(this.digest)}:${this.hash.digest('hex')}`;
    if (actual !== this.digest) return new DigestMismatchError(`${this.what}: expected ${this.digest}, got ${actual}`);
    return undefined;
  }
  protected override closedEarly(): Error {
    return new DigestMismatchError(`${this.what}: the connection closed after ${this.seen} bytes, before the end of the blob`);
  }
}
