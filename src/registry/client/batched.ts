// A stream body handed on in batches of at least 1 MiB, read from its source
// with a 'data' listener instead of a chain of Transform streams: per socket
// chunk (16-64 KiB) a pull then does one array push (plus what a subclass
// adds: VerifiedBody's hash update), not a Transform's write/callback/push per
// stage; the file behind it gets 1 MiB writes. (Uploads keep their Counter and
// Batcher transforms in push.ts: the same change there measured no different.)
// The cold (not yet optimised) stream code per chunk is a visible share of a
// short-lived `weft copy` (docs/registry-client.md, "Pull and verification").
import { Readable } from 'node:stream';

export class BatchedBody extends Readable {
  /** Bytes taken from the source so far. */
  protected seen = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private ended = false;
  constructor(
    private readonly source: Readable,
    protected readonly what: string,
    private readonly batchBytes = 1024 * 1024,
  ) {
    super({ highWaterMark: batchBytes });
    source.on('data', (chunk: Buffer) => this.onChunk(chunk));
    source.once('end', () => this.finish());
    source.once('error', (error) => this.destroy(error));
    source.once('close', () => {
      if (!this.ended && !this.destroyed) this.destroy(this.closedEarly());
    });
  }
  /** Looks at each chunk before it is kept; an error ends the stream with it. */
  protected accept(_chunk: Buffer): Error | undefined {
    return undefined;
  }
  /** Checks the whole body at its end; an error ends the stream with it instead of a clean end. */
  protected check(): Error | undefined {
    return undefined;
  }
  protected closedEarly(): Error {
    return Object.assign(new Error(`${this.what}: the source closed after ${this.seen} bytes, before its end`), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
  }
  private onChunk(chunk: Buffer): void {
    if (this.destroyed) return;
    this.seen += chunk.length;
    const error = this.accept(chunk);
    if (error) {
      this.destroy(error);
      return;
    }
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
    const error = this.check();
    if (error) {
      this.destroy(error);
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
