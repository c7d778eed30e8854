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
  /** Set by a subclass that cannot take more yet (hold/release): the source stays paused. */
  private held = false;
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
  /** Sees each batch, in order, before it is handed on (the last one before verify()). */
  protected batched(_batch: Buffer): void {}
  /** Hands a batch on; false when the consumer wants no more for now. (A subclass may send it elsewhere.) */
  protected handOn(batch: Buffer): boolean {
    return this.push(batch);
  }
  /** Takes a batch's chunks itself, instead of having them joined and handed on (true). */
  protected consumeParts(_parts: Buffer[]): boolean {
    return false;
  }
  /** A batch of one chunk is copied through join() too (true), rather than handed on as it is. */
  protected joinsSinglePart(): boolean {
    return false;
  }
  /** Joins a batch's chunks into one new buffer. */
  protected join(parts: Buffer[], total: number): Buffer {
    return Buffer.concat(parts, total);
  }
  /** Checks the whole body at its end; an error ends the stream with it instead of a clean end. */
  protected verify(): Promise<Error | undefined> {
    return Promise.resolve(undefined);
  }
  protected closedEarly(): Error {
    return Object.assign(new Error(`${this.what}: the source closed after ${this.seen} bytes, before its end`), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
  }
  /** Pauses the source until release(), whatever the consumer asks. */
  protected hold(): void {
    this.held = true;
    this.source.pause();
  }
  protected release(): void {
    if (!this.held) return;
    this.held = false;
    // Resumed whatever the consumer's mode: a read asked for while held waits for this (a
    // consumer that wants no more pauses the source again at the next batch it refuses).
    if (!this.ended && !this.destroyed) this.source.resume();
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
    if (this.pendingBytes >= this.batchBytes) {
      const batch = this.takeBatch();
      if (!batch) return;
      this.batched(batch);
      if (!this.handOn(batch)) this.source.pause();
    }
  }
  private takeBatch(): Buffer | undefined {
    if (this.pendingBytes === 0) return undefined;
    const [parts, total] = [this.pending, this.pendingBytes];
    this.pending = [];
    this.pendingBytes = 0;
    if (this.consumeParts(parts)) return undefined;
    return parts.length === 1 && !this.joinsSinglePart() ? parts[0]! : this.join(parts, total);
  }
  private finish(): void {
    this.ended = true;
    if (this.destroyed) return;
    // The last batch is seen (hashed) before the check, and handed on only after it.
    const last = this.takeBatch();
    if (last) this.batched(last);
    this.verify().then(
      (error) => {
        if (this.destroyed) return;
        if (error) {
          this.destroy(error);
          return;
        }
        if (last) this.handOn(last);
        this.push(null);
      },
      (error: Error) => this.destroy(error),
    );
  }
  override _read(): void {
    if (!this.ended && !this.held) this.source.resume();
  }
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.ended) this.source.destroy();
    callback(error);
  }
}
