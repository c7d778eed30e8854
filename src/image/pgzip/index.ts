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
import { MIN_STORED_RANGE } from './zip-ranges.js';

export { deflatedRanges, looksLikeZip, MIN_STORED_RANGE } from './zip-ranges.js';

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
  /** Input offset of the next chunk submitted. */
  private submitted = 0;
  /** Ranges of the input to store as they are (storeAsIs), sorted, not yet submitted. */
  private stored: Array<[number, number]> = [];

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

  /**
   * Bytes [start, end) of the input are already compressed (deflated zip
   * entries): they go into the output as deflate stored blocks instead of
   * being deflated again. Call in increasing order, before those bytes are
   * written. Only a function of the input may decide the ranges, as they
   * change the output bytes.
   */
  storeAsIs(start: number, end: number): void {
    const last = this.stored[this.stored.length - 1];
    if (!Number.isInteger(start) || !Number.isInteger(end) || end <= start || start < this.size || (last && start < last[1])) {
      throw new RangeError(`storeAsIs(${start}, ${end}): ranges must be increasing, non-empty and not yet written`);
    }
    this.stored.push([start, end]);
  }

  /** The stored ranges inside [from, to), relative to `from`; drops those that end before `to`. */
  private storedIn(from: number, to: number): Array<[number, number]> {
    const inside: Array<[number, number]> = [];
    for (const [start, end] of this.stored) {
      if (start >= to) break;
      const s = Math.max(start, from) - from;
      const e = Math.min(end, to) - from;
      // A range cut by a chunk boundary may leave a short piece: deflated with its neighbours instead.
      if (e - s >= MIN_STORED_RANGE) inside.push([s, e]);
    }
    while (this.stored.length > 0 && this.stored[0][1] <= to) this.stored.shift();
    return inside;
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
      const ranges = this.storedIn(this.submitted, this.submitted + data.length);
      this.submitted += data.length;
      const job = ranges.length === 0 ? deflateRaw(data, options) : deflateWithStored(data, ranges, this.dictionary, this.level, final);
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

/** Deflate stored blocks of `data` (at most 65535 bytes each); the last one is final when `final`. */
function storedBlocks(data: Buffer, final: boolean): Buffer[] {
  const out: Buffer[] = [];
  for (let offset = 0; offset < data.length; offset += 0xffff) {
    const piece = data.subarray(offset, offset + 0xffff);
    const header = Buffer.alloc(5);
    header[0] = final && offset + 0xffff >= data.length ? 1 : 0; // BFINAL, BTYPE 00 (stored); byte-aligned here
    header.writeUInt16LE(piece.length, 1);
    header.writeUInt16LE(~piece.length & 0xffff, 3);
    out.push(header, piece);
  }
  return out;
}

/**
 * One chunk as alternating deflated and stored segments. Each deflated segment
 * ends with a sync flush (or the stream's end), which leaves the output
 * byte-aligned for the stored blocks that follow, and gets the 32 KiB before
 * it as dictionary, as whole chunks do.
 */
async function deflateWithStored(data: Buffer, ranges: Array<[number, number]>, previous: Buffer | undefined, level: number, final: boolean): Promise<Buffer> {
  const segments: Array<{ start: number; end: number; stored: boolean }> = [];
  let position = 0;
  for (const [start, end] of ranges) {
    if (start > position) segments.push({ start: position, end: start, stored: false });
    segments.push({ start, end, stored: true });
    position = end;
  }
  if (position < data.length) segments.push({ start: position, end: data.length, stored: false });
  const out: Buffer[] = [];
  for (let i = 0; i < segments.length; i++) {
    const { start, end, stored } = segments[i];
    const last = final && i === segments.length - 1;
    const bytes = data.subarray(start, end);
    if (stored) {
      out.push(...storedBlocks(bytes, last));
      continue;
    }
    const before = start >= WINDOW ? data.subarray(start - WINDOW, start) : Buffer.concat([previous ?? Buffer.alloc(0), data.subarray(0, start)]).subarray(-WINDOW);
    const options: zlib.ZlibOptions = { level, memLevel: 9, finishFlush: last ? zlib.constants.Z_FINISH : zlib.constants.Z_SYNC_FLUSH };
    if (before.length > 0) options.dictionary = before;
    out.push(await deflateRaw(bytes, options));
  }
  return Buffer.concat(out);
}

/** Gzips a whole buffer with ParallelGzip (tests and small callers). */
export async function parallelGzip(data: Buffer, options: ParallelGzipOptions & { storeAsIs?: Array<[number, number]> }): Promise<Buffer> {
  const gzip = new ParallelGzip(options);
  for (const [start, end] of options.storeAsIs ?? []) gzip.storeAsIs(start, end);
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
