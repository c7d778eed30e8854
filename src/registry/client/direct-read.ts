// GETs of large bodies (blobs) read straight off a socket of weft's own,
// beside node:http. Why not node:http for these: receiving a 150 MB blob
// through it cost 240-470 ms of CPU on this machine, the same bytes read from
// a plain socket 60-110 ms (docs/registry-client.md, "Reading blobs off the
// socket"); undici and fetch cost as much as node:http or more. The socket is
// read with `onread` into 1 MiB slabs, so when the reader falls behind one
// read takes what the kernel holds instead of 64 KiB, and the body's chunks
// are views of the slab (no copy). A consumer that moves bytes to another
// thread (a blob stored by a hashing thread) can have the rest of a body read
// into memory of its own (DirectBody.readInto): each slab then goes to it
// whole, with no copy on this thread.
//
// Only the simple case is handled here: an HTTP/1.1 response framed by
// Content-Length (or by the end of the connection). Anything else
// (Transfer-Encoding, an informational status) is declined before a byte of
// body is handed on, and the caller repeats the GET through node:http.
// Connections are kept alive and reused per origin, like an http.Agent.
import net from 'node:net';
import type { IncomingHttpHeaders } from 'node:http';
import type { ConnectionOptions, TLSSocket } from 'node:tls';
import { Readable } from 'node:stream';

/** The GET cannot be read here (its framing is not Content-Length or connection end): repeat it through node:http. */
export class DirectReadDeclined extends Error {
  override name = 'DirectReadDeclined';
}

export interface DirectResponse {
  status: number;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: Readable;
}

export interface DirectGet {
  url: URL;
  headers: Record<string, string>;
  /** Abort when no byte moves for this long (ms). */
  idleTimeoutMs?: number;
}

export interface DirectReaderOptions {
  lookup?: net.LookupFunction;
  /** Trusted CA certificates (PEM) for HTTPS, as for the https.Agent beside it. */
  ca?: string[];
}

const SLAB_BYTES = 1024 * 1024;
/** A slab with less room than this left is replaced, so a read is never starved. */
const MIN_READ_BYTES = 64 * 1024;
const MAX_HEAD_BYTES = 64 * 1024;
const MAX_IDLE_PER_ORIGIN = 4;
/** Idle connections are closed after this long (servers close theirs after 30-120 s). */
const IDLE_CLOSE_MS = 5_000;

type Code = 'ECONNRESET' | 'ETIMEDOUT' | 'EPROTO';
function failure(message: string, code: Code): Error {
  return Object.assign(new Error(message), { code });
}

/** What a connection does with the bytes it reads: the exchange under way, if any. */
interface Exchange {
  /** Bytes read (the exchange pauses the socket itself when its reader falls behind). */
  onBytes(chunk: Buffer): void;
  /** The connection ended (error: it failed). */
  onClose(error: Error | undefined): void;
}

class Connection {
  readonly socket: net.Socket | TLSSocket;
  exchange?: Exchange;
  closed = false;
  private slab?: Buffer;
  private offset = 0;
  /** While set, reads go into slabs from here (the body's consumer's memory, see DirectBody.readInto). */
  private memory?: () => Buffer;

  constructor(
    readonly origin: string,
    connect: (onread: { buffer: () => Buffer; callback: (nread: number, buffer: Buffer) => boolean }) => net.Socket | TLSSocket,
    private readonly onClosed: (connection: Connection, error: Error | undefined) => void,
  ) {
    this.socket = connect({
      buffer: () => this.nextReadBuffer(),
      callback: (nread, buffer) => {
        const chunk = buffer.subarray(0, nread);
        this.offset += nread;
        if (this.exchange) this.exchange.onBytes(chunk);
        else this.socket.destroy(); // bytes nobody asked for: not a connection to reuse
        return true;
      },
    });
    const closed = (error?: Error): void => {
      if (this.closed) return;
      this.closed = true;
      const exchange = this.exchange;
      this.exchange = undefined;
      this.onClosed(this, error);
      exchange?.onClose(error);
    };
    this.socket.on('error', (error) => closed(error));
    this.socket.on('close', () => closed());
    this.socket.on('end', () => closed());
    this.socket.on('timeout', () => this.socket.destroy(failure(`no data from ${new URL(this.origin).host} for ${this.socket.timeout} ms`, 'ETIMEDOUT')));
  }

  /**
   * Reads from now on go into slabs from `memory` (undefined: slabs of the
   * connection's own again). Either way the current slab is never read into
   * again: what was read into it has been handed on, and a slab of the
   * consumer's may have been moved to another thread.
   */
  readInto(memory: (() => Buffer) | undefined): void {
    this.memory = memory;
    this.slab = undefined;
  }

  /** The next read goes into the rest of the current slab, or a new one. */
  private nextReadBuffer(): Buffer {
    if (!this.slab || this.slab.length - this.offset < MIN_READ_BYTES) {
      this.slab = this.memory ? this.memory() : Buffer.allocUnsafe(SLAB_BYTES);
      this.offset = 0;
    }
    return this.slab.subarray(this.offset);
  }
}

/** One response being read: its head, then its body into a Readable. */
class ResponseReader implements Exchange {
  private head: Buffer[] = [];
  private headBytes = 0;
  private body?: DirectBody;
  private remaining = -1; // -1: until the connection ends
  private received = 0;
  private done = false;
  private anyByte = false;
  private keepAlive = false;
  /** Reading into the consumer's memory (DirectBody.readInto): bytes of the current slab not handed on yet. */
  private readingInto = false;
  private held?: Buffer;

  constructor(
    private readonly connection: Connection,
    private readonly what: string,
    private readonly resolve: (response: DirectResponse) => void,
    private readonly reject: (error: Error, beforeAnyByte: boolean) => void,
    private readonly finished: (reusable: boolean) => void,
  ) {}

  onBytes(chunk: Buffer): void {
    this.anyByte = true;
    if (this.body) {
      this.bodyBytes(chunk);
      return;
    }
    this.head.push(chunk);
    this.headBytes += chunk.length;
    const joined = this.head.length === 1 ? chunk : Buffer.concat(this.head, this.headBytes);
    const end = joined.indexOf('\r\n\r\n');
    if (end < 0) {
      if (this.headBytes > MAX_HEAD_BYTES) this.fail(failure(`${this.what}: the response head is larger than ${MAX_HEAD_BYTES} bytes`, 'EPROTO'));
      else this.head = [joined]; // a view of a slab stays valid: slabs are never read into twice
      return;
    }
    let parsed: { status: number; version: string; headers: IncomingHttpHeaders; rawHeaders: string[] };
    try {
      parsed = parseHead(joined.subarray(0, end).toString('latin1'), this.what);
    } catch (error) {
      this.fail(error as Error);
      return;
    }
    const rest = joined.subarray(end + 4);
    const { status, headers } = parsed;
    if (status < 200 || headers['transfer-encoding'] !== undefined) {
      this.fail(new DirectReadDeclined(`${this.what}: ${status < 200 ? `informational status ${status}` : `Transfer-Encoding ${String(headers['transfer-encoding'])}`}`));
      return;
    }
    const length = headers['content-length'];
    if (status === 204 || status === 304) this.remaining = 0;
    else if (length !== undefined) this.remaining = Number(length);
    this.keepAlive = parsed.version === '1.1' && this.remaining >= 0 && !/\bclose\b/i.test(String(headers.connection ?? ''));
    this.body = new DirectBody(this.connection.socket, (memory) => this.readInto(memory));
    this.resolve({ status, headers, rawHeaders: parsed.rawHeaders, body: this.body });
    if (rest.length) this.bodyBytes(rest);
    else if (this.remaining === 0) this.complete();
  }

  private bodyBytes(chunk: Buffer): void {
    if (this.done) return;
    let take = chunk;
    if (this.remaining >= 0 && chunk.length > this.remaining - this.received) {
      take = chunk.subarray(0, this.remaining - this.received);
      this.keepAlive = false; // more than the response holds: do not trust the connection with another
    }
    this.received += take.length;
    if (take.length) this.handOn(take);
    if (this.received === this.remaining) this.complete();
  }

  /** The rest of the body is read into slabs from `memory`, each handed on whole (full, or at the body's end). */
  private readInto(memory: () => Buffer): void {
    if (this.done || this.readingInto) return;
    this.readingInto = true;
    this.connection.readInto(memory);
  }

  private handOn(bytes: Buffer): void {
    if (this.readingInto) {
      // Reads into one slab follow each other: grow one view of it. A read elsewhere means the
      // connection has left that slab for good, so it can go to the consumer (who may move it).
      const held = this.held;
      if (held && held.buffer === bytes.buffer && held.byteOffset + held.length === bytes.byteOffset) {
        this.held = Buffer.from(held.buffer, held.byteOffset, held.length + bytes.length);
        return;
      }
      this.held = bytes;
      if (!held) return;
      bytes = held;
    }
    if (!this.body!.push(bytes)) this.connection.socket.pause();
  }

  /** The body's end: the slab read into last goes to the consumer as it is. */
  private pushHeld(): void {
    const held = this.held;
    this.held = undefined;
    if (held) this.body!.push(held);
  }

  private complete(): void {
    this.done = true;
    // The connection leaves the consumer's memory before the last slab is handed on.
    if (this.readingInto) this.connection.readInto(undefined);
    this.pushHeld();
    this.body!.complete = true;
    this.body!.push(null);
    this.finished(this.keepAlive);
  }

  onClose(error: Error | undefined): void {
    if (this.done) return;
    if (!this.body) {
      // Not a byte of an answer: on a kept-alive connection, one the server had closed (get() tries once more).
      this.fail(error ?? failure(`${this.what}: the connection closed before a response`, 'ECONNRESET'), !this.anyByte);
      return;
    }
    this.done = true;
    if (this.remaining < 0 && !error) {
      this.pushHeld();
      this.body.push(null);
      return;
    }
    const expected = this.remaining >= 0 ? ` of ${this.remaining}` : '';
    this.body.destroy(error ?? failure(`${this.what}: the connection closed after ${this.received}${expected} bytes of the body`, 'ECONNRESET'));
  }

  private fail(error: Error, beforeAnyByte = false): void {
    this.done = true;
    this.connection.exchange = undefined;
    this.connection.socket.destroy();
    this.reject(error, beforeAnyByte);
  }
}

/** The body: reading pauses the socket when the consumer falls behind; destroying it closes the connection. */
export class DirectBody extends Readable {
  /** All of it has been read off the connection, which may already serve another GET: hands off. */
  complete = false;
  constructor(
    private readonly socket: net.Socket,
    private readonly readIntoMemory: (memory: () => Buffer) => void,
  ) {
    super({ highWaterMark: SLAB_BYTES });
  }
  /**
   * The rest of the body is read straight into buffers from `memory` (each
   * read goes into the free end of the current one), and each is handed on
   * whole once the next read goes elsewhere or the body ends: a chunk is then
   * a view of one of those buffers that nothing else refers to, for the
   * consumer to keep or move to another thread.
   */
  readInto(memory: () => Buffer): void {
    this.readIntoMemory(memory);
  }
  override _read(): void {
    if (!this.complete && this.socket.isPaused()) this.socket.resume();
  }
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.complete) this.socket.destroy();
    callback(error);
  }
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

function parseHead(text: string, what: string): { status: number; version: string; headers: IncomingHttpHeaders; rawHeaders: string[] } {
  const lines = text.split('\r\n');
  const statusLine = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/.exec(lines[0]!);
  if (!statusLine) throw failure(`${what}: not an HTTP/1.x response ("${lines[0]!.slice(0, 40)}")`, 'EPROTO');
  const headers: IncomingHttpHeaders = {};
  const rawHeaders: string[] = [];
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon) : '';
    if (!TOKEN.test(name)) throw failure(`${what}: malformed response header line "${line.slice(0, 40)}"`, 'EPROTO');
    const value = line.slice(colon + 1).trim();
    rawHeaders.push(name, value);
    const key = name.toLowerCase();
    const previous = headers[key];
    if (key === 'set-cookie') headers[key] = [...((previous as string[] | undefined) ?? []), value];
    else if (previous === undefined) headers[key] = value;
    else if (key === 'content-length') {
      if (previous !== value) throw failure(`${what}: conflicting Content-Length headers`, 'EPROTO');
    } else headers[key] = `${String(previous)}, ${value}`;
  }
  const length = headers['content-length'];
  if (length !== undefined && !/^\d{1,15}$/.test(String(length))) throw failure(`${what}: invalid Content-Length "${String(length)}"`, 'EPROTO');
  return { status: Number(statusLine[2]), version: `1.${statusLine[1]}`, headers, rawHeaders };
}

function requestHead(url: URL, headers: Record<string, string>): string {
  let head = `GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    if (!TOKEN.test(name) || /[\r\n\0]/.test(value)) throw new TypeError(`invalid header ${JSON.stringify(name)}`);
    head += `${name}: ${value}\r\n`;
  }
  return `${head}\r\n`;
}

/** Keep-alive connections per origin, and the GETs that use them. */
export class DirectReader {
  private readonly idle = new Map<string, Connection[]>();
  private readonly all = new Set<Connection>();
  private tlsModule?: Promise<typeof import('node:tls')>;

  constructor(private readonly options: DirectReaderOptions = {}) {}

  async get(req: DirectGet): Promise<DirectResponse> {
    if (req.url.protocol !== 'http:' && req.url.protocol !== 'https:') throw new DirectReadDeclined(`${req.url.protocol} is not http(s)`);
    const head = requestHead(req.url, req.headers);
    const reused = this.takeIdle(req.url.origin);
    try {
      return await this.exchange(reused ?? (await this.connect(req.url)), head, req);
    } catch (error) {
      // A kept-alive connection the server had closed fails before any byte: once more on a new one.
      if (reused && (error as { beforeAnyByte?: boolean }).beforeAnyByte) return this.exchange(await this.connect(req.url), head, req);
      throw error;
    }
  }

  private exchange(connection: Connection, head: string, req: DirectGet): Promise<DirectResponse> {
    return new Promise((resolve, reject) => {
      const what = `GET ${req.url.host}${req.url.pathname}`;
      connection.socket.setTimeout(req.idleTimeoutMs ?? 0);
      connection.exchange = new ResponseReader(
        connection,
        what,
        resolve,
        (error, beforeAnyByte) => reject(Object.assign(error, { beforeAnyByte })),
        (reusable) => this.release(connection, reusable),
      );
      connection.socket.write(head);
      connection.socket.ref();
    });
  }

  private release(connection: Connection, reusable: boolean): void {
    connection.exchange = undefined;
    const list = this.idle.get(connection.origin) ?? [];
    if (!reusable || connection.closed || list.length >= MAX_IDLE_PER_ORIGIN) {
      connection.socket.destroy();
      return;
    }
    if (connection.socket.isPaused()) connection.socket.resume();
    connection.socket.setTimeout(IDLE_CLOSE_MS);
    connection.socket.unref(); // an idle connection keeps no process alive
    list.push(connection);
    this.idle.set(connection.origin, list);
  }

  private takeIdle(origin: string): Connection | undefined {
    const list = this.idle.get(origin);
    const connection = list?.pop();
    if (list && !list.length) this.idle.delete(origin);
    return connection;
  }

  private async connect(url: URL): Promise<Connection> {
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
    const tls = url.protocol === 'https:' ? await (this.tlsModule ??= import('node:tls')) : undefined;
    return new Promise<Connection>((resolve, reject) => {
      let ready = false;
      const made = new Connection(
        url.origin,
        (onread) => {
          const common = { host, port, lookup: this.options.lookup, noDelay: true, onread };
          if (!tls) return net.connect(common, () => ((ready = true), resolve(made)));
          const options: ConnectionOptions & { onread: typeof onread } = { ...common, ca: this.options.ca, ALPNProtocols: ['http/1.1'] };
          if (!net.isIP(host)) options.servername = host;
          return tls.connect(options, () => ((ready = true), resolve(made)));
        },
        (closed, error) => {
          this.all.delete(closed);
          const list = this.idle.get(closed.origin);
          if (list?.includes(closed)) list.splice(list.indexOf(closed), 1);
          if (!ready) reject(error ?? failure(`cannot connect to ${url.host}: the connection closed`, 'ECONNRESET'));
        },
      );
      this.all.add(made);
    });
  }

  close(): void {
    for (const connection of this.all) connection.socket.destroy();
    this.all.clear();
    this.idle.clear();
  }
}
