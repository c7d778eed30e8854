// SHA-256/512 of large blob bodies, and their writing into a blob store, on a
// worker thread, so that a pull's main thread only receives while the other
// core hashes and writes (hashing, writing and joining batches were ~40 of
// the ~128 ms of main-thread CPU of a warm 32 MiB pull here). Up to two
// workers per process (one per body at a time while both are busy), started
// on first use and kept; each keeps the process alive only while it owes an
// answer (a digest, a drop) or has bytes to get through, so an abandoned body
// never does. Bytes go over as 1 MiB batches (or a batch's unjoined chunks), moved
// when nothing else holds them and copied otherwise. The worker's source is
// inline, so the bundled CLI (code-cached CommonJS, no files beside it)
// starts it the same way as the compiled tree. Why not SharedArrayBuffer
// batches: copying socket chunks into shared memory measured ~3x slower than
// into ordinary buffers (V8 copies element-wise into shared memory).
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

const workerSource = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const jobs = new Map();
function write(job, parts) {
  if (job.fd === undefined || job.error) return;
  try {
    for (const bytes of parts) {
      for (let at = 0; at < bytes.length; ) at += fs.writeSync(job.fd, bytes, at, bytes.length - at);
      job.written += bytes.length;
    }
  } catch (error) { job.error = error.message; }
}
function close(job) {
  if (job.fd === undefined) return;
  try { fs.closeSync(job.fd); } catch (error) { job.error = job.error || error.message; }
  job.fd = undefined;
}
parentPort.on('message', (m) => {
  const job = jobs.get(m.id);
  if (m.op === 'start') { jobs.set(m.id, { hash: createHash(m.algorithm), fd: undefined, written: 0, error: undefined }); return; }
  if (m.op === 'drop') { if (job) { close(job); jobs.delete(m.id); } parentPort.postMessage({ op: 'dropped', id: m.id }); return; }
  if (!job) return;
  if (m.op === 'file') {
    try { job.fd = fs.openSync(m.path, 'w'); } catch (error) { job.error = error.message; }
  } else if (m.op === 'end') {
    close(job);
    jobs.delete(m.id);
    parentPort.postMessage({ op: 'digest', id: m.id, hex: job.hash.digest('hex'), written: job.written, error: job.error });
  } else {
    const parts = Array.isArray(m.bytes) ? m.bytes : [m.bytes];
    let total = 0;
    for (const part of parts) {
      total += part.length;
      if (m.op !== 'write') job.hash.update(part);
    }
    if (m.op !== 'hash') write(job, parts);
    // Pooled batches go back to be filled again (no fresh memory per batch on either thread).
    const back = m.recycle ? parts : [];
    parentPort.postMessage({ op: 'done', id: m.id, bytes: total, back }, [...new Set(back.map((part) => part.buffer))]);
  }
});
`;

/** Bodies at least this large are hashed on the thread when it runs; smaller ones cost less to hash here than to hand over. */
const THREAD_MIN_BYTES = 4 * 1024 * 1024;
/**
 * A body at least this large starts the thread when it is not running. Starting
 * it costs ~60 ms (and CPU the short-lived `weft copy` has little of): measured
 * through the command, a 32 MiB pull (largest layer 19 MiB) was 5 % slower with
 * the thread and a 160 MiB one (96 MiB) about even (docs/registry-client.md).
 */
const THREAD_START_MIN_BYTES = 64 * 1024 * 1024;

/**
 * Whether a blob body of `size` bytes goes through the thread. `choice`:
 * true for every body of 4 MiB or more (a long-lived process, whose thread is
 * started once), false for none; undefined: 4 MiB or more once the thread
 * runs, and 64 MiB or more to start it.
 */
export function useHashThread(size: number | undefined, choice?: boolean): boolean {
  if (size === undefined || size < THREAD_MIN_BYTES || choice === false) return false;
  return choice === true || workers.length > 0 || size >= THREAD_START_MIN_BYTES;
}

type Reply = { op: 'done'; id: number; bytes: number; back: Uint8Array[] } | { op: 'dropped'; id: number } | { op: 'digest'; id: number; hex: string; written: number; error?: string };

/** What the thread reports at the end: the digest, and for a body it wrote, the bytes written. */
export interface ThreadDigest {
  hex: string;
  written: number;
}

interface Job {
  worker: HashWorker;
  outstanding: number;
  /** Called when the thread is done with the job (digest sent, or dropped): its file is closed. */
  settle: () => void;
  onDone: () => void;
  resolve?: (result: ThreadDigest) => void;
  reject?: (error: Error) => void;
  failed?: Error;
}

/**
 * Worker threads at most: two, so that two layers of a pull are hashed and
 * written on two cores at once (one thread for every layer was the limit of
 * a 256 MiB pull: ~400-600 ms of its CPU against ~250 ms of the receiving
 * thread's); one on a one-core machine.
 */
const MAX_WORKERS = Math.max(1, Math.min(2, availableParallelism()));
let nextId = 1;
/** Every job on any worker, by id. */
const jobs = new Map<number, Job>();
const workers: HashWorker[] = [];

/**
 * One worker thread and its jobs. It keeps the process alive while it owes
 * an answer or has bytes to get through: a body waiting for the thread to
 * catch up has paused its source, and a paused socket or file stream keeps
 * nothing alive. With neither (an abandoned body, an idle thread) it does not.
 */
class HashWorker {
  readonly thread: Worker;
  /** Jobs not finished on this worker. */
  active = 0;
  /** Answers owed by the thread that somebody waits for (digests, drops). */
  private owed = 0;
  /** Bytes given to the thread and not yet hashed (or written), over its jobs. */
  private outstanding = 0;
  private referenced = false;
  private failed = false;

  constructor() {
    // execArgv: [] so the parent's flags (--input-type=module, for one) cannot change how the inline source is read.
    this.thread = new Worker(workerSource, { eval: true, execArgv: [] });
    this.thread.on('message', (reply: Reply) => this.onReply(reply));
    this.thread.on('error', (error) => this.failAll(new Error(`the hashing thread failed: ${error.message}`)));
    this.thread.on('exit', (code) => this.failAll(new Error(`the hashing thread stopped (exit code ${code}) before the blob was hashed`)));
    this.thread.unref();
  }

  private updateRef(): void {
    const needed = !this.failed && (this.owed > 0 || this.outstanding > 0);
    if (needed === this.referenced) return;
    this.referenced = needed;
    if (needed) this.thread.ref();
    else this.thread.unref();
  }

  owe(delta: 1 | -1): void {
    this.owed += delta;
    this.updateRef();
  }

  addOutstanding(job: Job, bytes: number): void {
    job.outstanding += bytes;
    this.outstanding += bytes;
    this.updateRef();
  }

  /** Takes a new job and tells the thread to start its hash. */
  start(id: number, job: Job, algorithm: 'sha256' | 'sha512'): void {
    jobs.set(id, job);
    this.active++;
    this.thread.postMessage({ op: 'start', id, algorithm });
  }

  /** Removes a job the thread is done with; what it still had outstanding no longer counts. */
  forget(id: number, job: Job): void {
    if (!jobs.delete(id)) return;
    this.active--;
    this.outstanding -= job.outstanding;
    job.outstanding = 0;
    emptyPoolWhenIdle();
    this.updateRef();
  }

  private onReply(reply: Reply): void {
    const job = jobs.get(reply.id);
    if (reply.op === 'dropped') {
      if (job) this.forget(reply.id, job);
      this.owe(-1);
      job?.settle();
    } else if (!job) {
      return;
    } else if (reply.op === 'done') {
      recycle(reply.back);
      this.addOutstanding(job, -reply.bytes);
      job.onDone();
    } else {
      this.forget(reply.id, job);
      job.settle();
      if (!job.resolve) return; // dropped while its digest was on the way (the drop settled what it owed)
      this.owe(-1);
      if (reply.error) job.reject!(new Error(`writing the blob failed: ${reply.error}`));
      else job.resolve({ hex: reply.hex, written: reply.written });
    }
  }

  private failAll(error: Error): void {
    if (this.failed) return;
    this.failed = true;
    workers.splice(workers.indexOf(this), 1);
    this.owed = 0;
    this.outstanding = 0;
    this.referenced = false;
    for (const [id, job] of jobs) {
      if (job.worker !== this) continue;
      jobs.delete(id);
      job.failed = error;
      job.outstanding = 0; // a body held back for the thread reads on, and fails at its end
      job.reject?.(error);
      job.onDone();
      job.settle();
    }
    emptyPoolWhenIdle();
  }
}

/** Worker threads running (for tests and diagnostics). */
export function hashThreadsRunning(): number {
  return workers.length;
}

/** Bytes given to the threads so far: moved there, and copied on this thread on their way (into a batch, or by postMessage; a batch filled here and moved counts in both). */
const traffic = { moved: 0, copied: 0 };

/** What the threads were given so far, and how (for tests and diagnostics). */
export function hashThreadTraffic(): { moved: number; copied: number } {
  return { ...traffic };
}

/** The worker for a new job: an idle one, else a new one while fewer than MAX_WORKERS run, else the least busy. */
function pickWorker(): HashWorker {
  const idle = workers.find((w) => w.active === 0);
  if (idle) return idle;
  if (workers.length < MAX_WORKERS) {
    const started = new HashWorker();
    workers.push(started);
    return started;
  }
  return workers.reduce((a, b) => (b.active < a.active ? b : a));
}

/**
 * Batch memory that goes to the thread and comes back, instead of a new
 * buffer per 1 MiB batch: measured with 256 MiB hashed and written on the
 * thread, fresh buffers moved there cost it 310-740 ms of CPU, pooled ones
 * 290-310 ms, and this thread a third less (the first touch of new memory
 * and its freeing are the difference). Kept only while a thread has work.
 */
const POOLED_BYTES = 2 * 1024 * 1024;
const POOL_MAX = 16;
const pool: ArrayBuffer[] = [];
const pooled = new WeakSet<ArrayBuffer>();

/** A buffer of `size` bytes for a batch going to the thread (pooled when it fits), for the caller to fill (copy into) and update(..., true). */
export function batchBuffer(size: number): Buffer {
  traffic.copied += size;
  return pooledBuffer(size);
}

function pooledBuffer(size: number): Buffer {
  if (size > POOLED_BYTES) return Buffer.allocUnsafeSlow(size);
  let memory = pool.pop();
  if (!memory) {
    memory = Buffer.allocUnsafeSlow(POOLED_BYTES).buffer as ArrayBuffer;
    pooled.add(memory);
  }
  return Buffer.from(memory, 0, size);
}

/** A whole pooled buffer, for a socket to read a body into and the body to move to the thread (DirectBody.readInto). */
export function pooledReadMemory(): Buffer {
  return pooledBuffer(POOLED_BYTES);
}

/** Bytes that lie in pooled memory: a body's chunk read straight into it can be moved to the thread as it is. */
export function inPooledMemory(bytes: Uint8Array): boolean {
  return pooled.has(bytes.buffer as ArrayBuffer);
}

/** Nothing being hashed: the pooled memory goes. */
function emptyPoolWhenIdle(): void {
  if (jobs.size === 0) pool.length = 0;
}

function recycle(parts: Uint8Array[]): void {
  for (const part of parts) {
    const memory = part.buffer as ArrayBuffer;
    // (Never twice: two views of one buffer must not make it two pooled buffers.)
    if (jobs.size > 0 && pool.length < POOL_MAX && memory.byteLength === POOLED_BYTES && !pool.includes(memory)) {
      pooled.add(memory);
      pool.push(memory);
    }
  }
}

/** A buffer that is the whole of its ArrayBuffer (not a slice of a pool or of a bigger buffer), or a batchBuffer(): it can be moved to the thread. */
function ownsItsMemory(bytes: Buffer): boolean {
  if (!(bytes.buffer instanceof ArrayBuffer)) return false;
  return pooled.has(bytes.buffer) || (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength);
}

/**
 * A running hash on the worker thread: update with batches in order, then
 * digest() once. After toFile(path) the thread also writes what it is given
 * (write() for bytes hashed before, update() for new ones) to that file.
 */
export class ThreadHash {
  private readonly id = nextId++;
  private readonly job: Job;
  private readonly worker: HashWorker;
  private writing = false;
  private dropped = false;
  /** Resolves when the thread is done with this hash: after its digest, or after drop(); its file is closed by then. */
  readonly settled: Promise<void>;
  constructor(algorithm: 'sha256' | 'sha512', onDone: () => void = () => undefined) {
    this.worker = pickWorker();
    let settle!: () => void;
    this.settled = new Promise<void>((resolve) => (settle = resolve));
    this.job = { worker: this.worker, outstanding: 0, onDone, settle };
    this.worker.start(this.id, this.job, algorithm);
  }
  /** Bytes handed to the thread and not yet hashed (or written). */
  get outstanding(): number {
    return this.job.outstanding;
  }
  /** From now on the thread writes what it is given to `file` (created or truncated). */
  toFile(file: string): void {
    this.writing = true;
    this.worker.thread.postMessage({ op: 'file', id: this.id, path: file });
  }
  /**
   * Hashes `bytes` (and writes them, after toFile). `transfer`: the caller
   * made the buffer and does not use it again, so when it owns its whole
   * ArrayBuffer it is moved to the thread instead of copied.
   */
  update(bytes: Buffer, transfer = false): void {
    this.send(this.writing ? 'both' : 'hash', bytes, transfer && ownsItsMemory(bytes) ? [bytes] : []);
  }
  /**
   * update() for a batch still in pieces (no joined copy): each piece that
   * owns its whole ArrayBuffer is moved, the others copied. Only for pieces
   * nothing else holds (an HTTP response body's chunks are fresh copies).
   */
  updateParts(parts: Buffer[]): void {
    this.send(this.writing ? 'both' : 'hash', parts, parts.filter(ownsItsMemory));
  }
  /** Writes bytes given to update() before toFile(), in order. */
  write(bytes: Buffer): void {
    this.send('write', bytes, []);
  }
  /** Posts bytes to the thread, moving `moved` (buffers that own their memory) instead of copying them. */
  private send(op: 'hash' | 'write' | 'both', bytes: Buffer | Buffer[], moved: Buffer[]): void {
    if (this.job.failed) return;
    this.worker.addOutstanding(this.job, Array.isArray(bytes) ? bytes.reduce((sum, part) => sum + part.length, 0) : bytes.length);
    const recycled = moved.length > 0 && moved.every((part) => pooled.has(part.buffer as ArrayBuffer));
    for (const part of Array.isArray(bytes) ? bytes : [bytes]) {
      if (moved.includes(part)) traffic.moved += part.length;
      else traffic.copied += part.length;
    }
    this.worker.thread.postMessage({ op, id: this.id, bytes, recycle: recycled }, [...new Set(moved.map((part) => part.buffer as ArrayBuffer))]);
  }
  /** The hex digest of every byte given (and the bytes written), once the thread has them all. */
  digest(): Promise<ThreadDigest> {
    if (this.job.failed) return Promise.reject(this.job.failed);
    return new Promise<ThreadDigest>((resolve, reject) => {
      this.job.resolve = resolve;
      this.job.reject = reject;
      // Nothing else may keep the process alive until the digest comes.
      this.worker.owe(1);
      this.worker.thread.postMessage({ op: 'end', id: this.id });
    });
  }
  /** Forgets the hash and closes its file (the body failed or was abandoned). */
  drop(): void {
    if (this.dropped || !jobs.has(this.id)) return;
    this.dropped = true;
    this.worker.owe(1); // the thread's "dropped", which settles it
    if (this.job.resolve) {
      // Its digest is not awaited any more.
      this.worker.owe(-1);
      this.job.resolve = undefined;
      this.job.reject?.(new Error('the hash was dropped before its digest'));
      this.job.reject = undefined;
    }
    this.worker.thread.postMessage({ op: 'drop', id: this.id });
  }
}
