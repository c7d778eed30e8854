// Defences against clients that hold resources without making progress: request
// bodies that stall or trickle, one client taking every upload slot, and a
// per-client budget of failed logins. Everything here is in memory and per process.
import type { IncomingMessage } from 'node:http';
import { isIPv6 } from 'node:net';
import { PassThrough, type Readable } from 'node:stream';
import { RegistryError } from './errors.js';

/**
 * Who a request comes from, for fairness: the peer address, with an IPv4-mapped
 * IPv6 address reduced to IPv4 and an IPv6 address to its /64 (one host usually
 * owns a whole /64, so counting single addresses would let it take every slot).
 */
export function clientKey(req: IncomingMessage): string {
  let address = req.socket.remoteAddress ?? 'unknown';
  if (address.startsWith('::ffff:') && address.includes('.')) address = address.slice(7);
  if (!isIPv6(address)) return address;
  const [head] = address.split('%');
  const groups = expandIPv6(head);
  return `${groups.slice(0, 4).join(':')}::/64`;
}

function expandIPv6(address: string): string[] {
  const [left, right] = address.split('::');
  const l = left ? left.split(':') : [];
  const r = right !== undefined && right !== '' ? right.split(':') : [];
  const fill = address.includes('::') ? Array<string>(Math.max(8 - l.length - r.length, 0)).fill('0') : [];
  return [...l, ...fill, ...r].map((g) => g.toLowerCase().replace(/^0+(?=.)/, ''));
}

export interface BodyPolicy {
  /** A body that delivers no byte for this long is cut off (408). */
  idleTimeoutMs: number;
  /**
   * Minimum average rate after the first `idleTimeoutMs`: a body that has spent t ms
   * waiting on its client must have delivered (t - idleTimeoutMs) * rate bytes,
   * which stops bodies that trickle a byte now and then. 0 disables the check.
   */
  minBytesPerSecond: number;
}

const guardHighWaterMark = 256 * 1024;
const currentGuard = new WeakMap<IncomingMessage, PassThrough>();

/**
 * The request body as a stream that fails with 408 when the client stalls or
 * trickles (see BodyPolicy) and with a clear error when the client disconnects.
 * Time the server itself is not reading (backpressure from a slow disk) is not
 * charged to the client. Failing the stream does not destroy the socket, so the
 * error can still be answered; the caller closes the connection afterwards.
 */
export function guardBody(req: IncomingMessage, policy: BodyPolicy): Readable {
  // A request has one reader: a new guard (e.g. discarding the rest after a refusal)
  // replaces one the handler created but never read, which would hold the body back.
  const previous = currentGuard.get(req);
  if (previous) {
    req.unpipe(previous);
    previous.destroy();
  }
  const out = new PassThrough({ highWaterMark: guardHighWaterMark });
  // A guard created but never read (its handler failed first) must not turn a later
  // client error into an uncaught 'error' event; readers attach their own listeners.
  out.on('error', () => undefined);
  currentGuard.set(req, out);
  if (req.readableEnded) {
    out.end();
    return out;
  }
  req.pipe(out);
  // every byte already arrived (it may still sit in req's buffer): nothing to wait for
  if (req.complete) return out;
  let bytes = 0;
  let clientMs = 0;
  let lastTick = Date.now();
  let idleMs = 0;
  const fail = (error: Error) => {
    clearInterval(timer);
    req.unpipe(out);
    if (!out.destroyed) out.destroy(error);
  };
  const tickMs = Math.max(Math.min(policy.idleTimeoutMs / 4, 1000), 20);
  const timer = setInterval(() => {
    const now = Date.now();
    const elapsed = now - lastTick;
    lastTick = now;
    // The server is not reading (its consumer is behind): nothing is the client's fault.
    if (out.writableNeedDrain || out.readableLength >= guardHighWaterMark || req.readableFlowing === false) {
      idleMs = 0;
      return;
    }
    clientMs += elapsed;
    idleMs += elapsed;
    if (idleMs >= policy.idleTimeoutMs) {
      fail(new RegistryError('BLOB_UPLOAD_INVALID', `request body stalled: no data for ${policy.idleTimeoutMs} ms`, { status: 408, detail: { received: bytes } }));
      return;
    }
    if (policy.minBytesPerSecond > 0 && clientMs > policy.idleTimeoutMs + (bytes / policy.minBytesPerSecond) * 1000) {
      fail(new RegistryError('BLOB_UPLOAD_INVALID', `request body too slow: ${bytes} bytes in ${Math.round(clientMs)} ms, below the minimum of ${policy.minBytesPerSecond} bytes/s`, { status: 408, detail: { received: bytes } }));
    }
  }, tickMs);
  timer.unref();
  req.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    idleMs = 0;
  });
  req.once('end', () => clearInterval(timer));
  req.once('error', (error) => fail(error));
  req.once('close', () => {
    clearInterval(timer);
    if (!req.complete) fail(new RegistryError('BLOB_UPLOAD_INVALID', 'the client closed the connection before the request body ended', { status: 400 }));
  });
  out.once('close', () => clearInterval(timer));
  return out;
}

/** True for the errors guardBody raises on a stalled or trickling body. */
export function isBodyTimeout(error: unknown): boolean {
  return error instanceof RegistryError && error.status === 408;
}

/**
 * Upload slots: at most `total` uploads stream at once, and at most `perClient`
 * of them for one client (clientKey), so a single client cannot take them all.
 */
export class UploadSlots {
  private inUse = 0;
  private readonly byClient = new Map<string, number>();

  constructor(readonly total: number, readonly perClient: number) {}

  async run<T>(client: string, fn: () => Promise<T>): Promise<T> {
    const mine = this.byClient.get(client) ?? 0;
    if (this.inUse >= this.total) {
      throw new RegistryError('TOOMANYREQUESTS', `more than ${this.total} uploads in flight: retry shortly`, { headers: { 'Retry-After': '1' } });
    }
    if (mine >= this.perClient) {
      throw new RegistryError('TOOMANYREQUESTS', `this client already has ${this.perClient} uploads in flight (the per-client limit): retry when one ends`, { headers: { 'Retry-After': '1' } });
    }
    this.inUse++;
    this.byClient.set(client, mine + 1);
    try {
      return await fn();
    } finally {
      this.inUse--;
      const left = (this.byClient.get(client) ?? 1) - 1;
      if (left > 0) this.byClient.set(client, left);
      else this.byClient.delete(client);
    }
  }

  get used(): number {
    return this.inUse;
  }
}

/**
 * A token bucket per client: `burst` events at once, refilled at `perMinute`.
 * Buckets that are full again are forgotten, so memory stays bounded by the
 * clients that recently misbehaved (and by `maxClients`).
 */
export class ClientBudget {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(private readonly burst: number, private readonly perMinute: number, private readonly maxClients = 100_000) {}

  private current(client: string, now: number): number {
    const bucket = this.buckets.get(client);
    if (!bucket) return this.burst;
    const tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.at) / 60_000) * this.perMinute);
    if (tokens >= this.burst) this.buckets.delete(client);
    return tokens;
  }

  /** Seconds until `client` may spend again (0: now). */
  retryAfter(client: string, now = Date.now()): number {
    const tokens = this.current(client, now);
    if (tokens >= 1) return 0;
    return Math.ceil(((1 - tokens) / this.perMinute) * 60);
  }

  /** True while `client` has spent from its bucket and not fully refilled it. */
  hasSpent(client: string, now = Date.now()): boolean {
    return this.current(client, now) < this.burst;
  }

  spend(client: string, now = Date.now()): void {
    const tokens = this.current(client, now);
    if (!this.buckets.has(client) && this.buckets.size >= this.maxClients) {
      // forget the oldest entry rather than grow without bound
      const oldest = this.buckets.keys().next().value;
      if (oldest !== undefined) this.buckets.delete(oldest);
    }
    this.buckets.set(client, { tokens: Math.max(tokens - 1, 0), at: now });
  }
}
