// Parallel gzip with output that does not depend on the number of threads.
//
// The input is cut into fixed-size chunks (CHUNK_SIZE, never derived from the
// core count). Each chunk is deflated on its own, with the previous chunk's
// last 32 KiB as preset dictionary so matches still reach back across the cut,
// and ends with a sync flush (a byte-aligned, non-final block); the last chunk
// ends the deflate stream. The pieces, between one gzip header and trailer,
// form one ordinary gzip member (the scheme pigz uses). A chunk's bytes depend
// only on (chunk, dictionary, level), so 1 or N threads give the same blob.
//
// The deflate calls are Node's asynchronous zlib, which runs in libuv's thread
// pool: several chunks in flight use several cores without worker_threads
// (no thread start-up, no copying buffers between isolates). The CRC-32 of
// the input is computed here on the calling thread, in input order.
import { Transform, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';
import os from 'node:os';
import { promisify } from 'node:util';

/** Uncompressed bytes per independently deflated chunk. Changing it changes layer digests. */
export const CHUNK_SIZE = 1024 * 1024;
/** Deflate's window: the dictionary each chunk gets from the one before. */
const WINDOW = 32 * 1024;

const deflateRawAsync = promisify(zlib.deflateRaw) as (buffer: Buffer, options: zlib.ZlibOptions) => Promise<Buffer>;

/**
 * One limit for the whole process: libuv's pool (4 threads) also serves file
 * reads, so several layers compressed at once, each with `threads` chunks in
 * flight, would queue the reads that feed them behind compression. At most one
 * chunk per core is deflated at a time, across all streams.
 */
let running = 0;
const waiting: Array<() => void> = [];
async function deflateRaw(buffer: Buffer, options: zlib.ZlibOptions): Promise<Buffer> {
  if (running >= defaultThreads()) await new Promise<void>((resolve) => waiting.push(resolve));
  else running++;
  try {
    return await deflateRawAsync(buffer, options);
  } finally {
    const next = waiting.shift();
    if (next) next(); // the permit passes on; `running` stays the same
    else running--;
  }
}

export interface ParallelGzipOptions {
  /** gzip level 0-9. */
  level: number;
  /** Chunks compressed at the same time (default: the number of cores). Does not change the output. */
  threads?: number;
}

/** How many chunks to keep in flight by default: one per core, at least 1. */
export function defaultThreads(): number {
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  return Math.max(1, cores);
}

/**
 * The fixed 10-byte gzip header: no name, mtime 0 (reproducible), OS 255
 * ("unknown", so the bytes do not depend on the host), XFL as zlib sets it.
 */
function gzipHeader(level: number): Buffer {
  const xfl = level === 9 ? 2 : level === 1 ? 4 : 0;
  return Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, xfl, 0xff]);
}

/** A Transform stream: uncompressed bytes in, one gzip member out. */
export class ParallelGzip extends Transform {
  private readonly level: number;
  private readonly threads: number;
  private pending: Buffer[] = [];
  private pendingSize = 0;
  /** The last WINDOW bytes of the previous chunk (the next chunk's dictionary). */
  private dictionary: Buffer | undefined;
  /** Compressed chunks in input order, oldest first. */
  private inFlight: Promise<Buffer>[] = [];
  private crc = 0;
  private size = 0;
  private headerWritten = false;

  constructor(options: ParallelGzipOptions) {
    super();
    if (!Number.isInteger(options.level) || options.level < 0 || options.level > 9) {
      throw new RangeError(`gzip level must be a whole number from 0 to 9, got ${options.level}`);
    }
    this.level = options.level;
    this.threads = Math.max(1, Math.floor(options.threads ?? defaultThreads()));
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.crc = zlib.crc32(chunk, this.crc);
    this.size += chunk.length;
    let offset = 0;
    const full: Buffer[] = [];
    while (offset < chunk.length) {
      const take = Math.min(CHUNK_SIZE - this.pendingSize, chunk.length - offset);
      this.pending.push(chunk.subarray(offset, offset + take));
      this.pendingSize += take;
      offset += take;
      if (this.pendingSize === CHUNK_SIZE) full.push(this.takePending());
    }
    this.submitAll(full, false).then(() => callback(), callback);
  }

  override _flush(callback: TransformCallback): void {
    this.submitAll([this.takePending()], true)
      .then(() => this.drain(0))
      .then(() => {
        if (!this.headerWritten) this.push(gzipHeader(this.level));
        const trailer = Buffer.alloc(8);
        trailer.writeUInt32LE(this.crc >>> 0, 0);
        trailer.writeUInt32LE(this.size % 2 ** 32, 4);
        this.push(trailer);
        callback();
      }, callback);
  }

  private takePending(): Buffer {
    const data = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending, this.pendingSize);
    this.pending = [];
    this.pendingSize = 0;
    return data;
  }

  /** Starts compressing each chunk, waiting for older ones whenever `threads` are busy. */
  private async submitAll(chunks: Buffer[], lastIsFinal: boolean): Promise<void> {
    for (let i = 0; i < chunks.length; i++) {
      await this.drain(this.threads - 1);
      const data = chunks[i];
      const final = lastIsFinal && i === chunks.length - 1;
      const options: zlib.ZlibOptions = { level: this.level, memLevel: 9, finishFlush: final ? zlib.constants.Z_FINISH : zlib.constants.Z_SYNC_FLUSH };
      if (this.dictionary) options.dictionary = this.dictionary;
      const job = deflateRaw(data, options);
      job.catch(() => undefined); // awaited in drain(); this only keeps an early failure from being "unhandled"
      this.inFlight.push(job);
      // The dictionary is the input's last 32 KiB before the next chunk, which may span chunks only
      // when a chunk is shorter than the window (never for full chunks, since CHUNK_SIZE > WINDOW).
      this.dictionary = data.length >= WINDOW ? data.subarray(data.length - WINDOW) : Buffer.concat([this.dictionary ?? Buffer.alloc(0), data]).subarray(-WINDOW);
    }
  }

  /** Emits finished chunks in order until at most `limit` remain in flight. */
  private async drain(limit: number): Promise<void> {
    while (this.inFlight.length > limit) {
      const compressed = await (this.inFlight.shift() as Promise<Buffer>);
      if (!this.headerWritten) {
        this.push(gzipHeader(this.level));
        this.headerWritten = true;
      }
      this.push(compressed);
    }
  }
}

/** Gzips a whole buffer with ParallelGzip (tests and small callers). */
export async function parallelGzip(data: Buffer, options: ParallelGzipOptions): Promise<Buffer> {
  const gzip = new ParallelGzip(options);
  const out: Buffer[] = [];
  gzip.on('data', (chunk: Buffer) => out.push(chunk));
  const done = new Promise<void>((resolve, reject) => {
    gzip.on('end', resolve);
    gzip.on('error', reject);
  });
  // Fed in pieces of varying size, so the chunk boundaries never follow the writes.
  for (let offset = 0, step = 1; offset < data.length; offset += step, step = (step * 7 + 13) % 300_001 + 1) {
    gzip.write(data.subarray(offset, offset + step));
  }
  gzip.end();
  await done;
  return Buffer.concat(out);
}
