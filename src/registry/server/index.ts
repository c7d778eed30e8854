// The embedded OCI registry: startRegistry() for in-process use, and
// ensureEmbeddedRegistry() which makes sure the default local registry answers,
// starting `weft registry serve` in the background when it does not.
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { pino, destination, type Logger } from 'pino';
import { Htpasswd } from './auth.js';
import { collectGarbage, defaultGracePeriodMs, defaultUploadTimeoutMs, type GcReport } from './gc.js';
import { createHandler } from './http.js';
import { RwLock } from './lock.js';
import { Storage } from './storage.js';

export { collectGarbage, type GcOptions, type GcReport } from './gc.js';
export { ensureEmbeddedRegistry, defaultRegistryAddr, type EnsureOptions, type EnsureResult } from './embedded.js';
export { RegistryError, type ErrorCode } from './errors.js';

export interface RegistryOptions {
  /** Storage folder (default `${XDG_DATA_HOME:-~/.local/share}/weft/registry`). */
  root?: string;
  /** host:port to listen on (default 127.0.0.1:0, i.e. a free loopback port). */
  addr?: string;
  htpasswd?: string;
  /** With htpasswd: pulls need no credentials, pushes and deletes do. */
  anonymousPull?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  /** pino level: fatal, error, warn (default), info, debug, trace, silent. */
  logLevel?: string;
  logger?: Logger;
  /** Manifests larger than this are refused with 413 (default 4 MiB). */
  maxManifestBytes?: number;
  /** Upload sessions idle this long are purged (default 1 hour). */
  uploadTimeoutMs?: number;
  /** Run garbage collection inside the server this often (default: never). */
  gcIntervalMs?: number;
  /** Grace period of inline GC (default 1 hour). */
  gcGracePeriodMs?: number;
  /** Refuse pushes and deletes (403 DENIED). */
  readOnly?: boolean;
  /** Uploads streaming at once before others get 429 TOOMANYREQUESTS (default 256). */
  maxConcurrentUploads?: number;
  /** Uploads one client (peer address; IPv6 by /64) may stream at once (default: an eighth of maxConcurrentUploads, at least 1). */
  maxUploadsPerClient?: number;
  /** A request body that delivers nothing for this long is cut off with 408 (default 30 s). */
  bodyIdleTimeoutMs?: number;
  /** After the first bodyIdleTimeoutMs, a body must average this rate or get 408 (default 4 KiB/s; 0 disables). */
  minBodyBytesPerSecond?: number;
  /** Time a client has to send the request line and headers (default 20 s). */
  headersTimeoutMs?: number;
  /** Time a client has to send a whole request, body included (default 0: unlimited; bodies are bounded by the idle and rate rules). */
  requestTimeoutMs?: number;
  /** Allow DELETE of manifests, tags and blobs (default false: 405 UNSUPPORTED). */
  enableDelete?: boolean;
  /** Failed logins per client per minute before 429 (htpasswd only, default 10). */
  authFailuresPerMinute?: number;
}

export interface RunningRegistry {
  url: string;
  host: string;
  port: number;
  root: string;
  close(): Promise<void>;
  /** Runs garbage collection now, excluding concurrent pushes while it sweeps. */
  gc(options?: { dryRun?: boolean; gracePeriodMs?: number }): Promise<GcReport>;
}

export function defaultRegistryRoot(): string {
  const data = process.env.XDG_DATA_HOME || join(homedir(), '.local', 'share');
  return join(data, 'weft', 'registry');
}

export function parseAddr(addr: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(addr.trim());
  if (!match) throw new Error(`invalid address "${addr}": use host:port, e.g. 127.0.0.1:5000`);
  const port = Number(match[3]);
  if (port > 65535) throw new Error(`invalid port in "${addr}"`);
  return { host: match[1] ?? (match[2] || '127.0.0.1'), port };
}

export async function startRegistry(options: RegistryOptions = {}): Promise<RunningRegistry> {
  const root = options.root ?? defaultRegistryRoot();
  for (const [flag, value] of [['bodyIdleTimeoutMs', options.bodyIdleTimeoutMs], ['headersTimeoutMs', options.headersTimeoutMs]] as const) {
    if (value !== undefined && !(value > 0)) throw new Error(`${flag} must be positive, not ${value}`);
  }
  const { host, port } = parseAddr(options.addr ?? '127.0.0.1:0');
  if ((options.tlsCert === undefined) !== (options.tlsKey === undefined)) throw new Error('TLS needs both --tls-cert and --tls-key');
  const logger = options.logger ?? pino({ level: options.logLevel ?? 'warn', base: { component: 'registry' } }, destination(2));
  const storage = new Storage(root);
  await storage.init();
  const htpasswd = options.htpasswd ? new Htpasswd(options.htpasswd, { failuresPerMinute: options.authFailuresPerMinute }) : undefined;
  const maxConcurrentUploads = options.maxConcurrentUploads ?? 256;
  const lock = new RwLock();
  const uploadTimeoutMs = options.uploadTimeoutMs ?? defaultUploadTimeoutMs;
  const handler = createHandler({ storage, lock, logger, htpasswd, realm: 'weft-registry', maxManifestBytes: options.maxManifestBytes ?? 4 * 1024 * 1024,
    readOnly: options.readOnly,
    anonymousPull: options.anonymousPull === true,
    maxConcurrentUploads,
    maxUploadsPerClient: options.maxUploadsPerClient ?? Math.max(1, Math.ceil(maxConcurrentUploads / 8)),
    body: { idleTimeoutMs: options.bodyIdleTimeoutMs ?? 30_000, minBytesPerSecond: options.minBodyBytesPerSecond ?? 4096 },
    enableDelete: options.enableDelete,
  });
  const headersTimeout = options.headersTimeoutMs ?? 20_000;
  const requestTimeout = options.requestTimeoutMs ?? 0;
  // node checks header and request deadlines on this interval (default 30 s, too coarse for a 20 s limit)
  const serverOptions = { connectionsCheckingInterval: Math.max(Math.min(headersTimeout / 4, 1000), 50) };

  let server: Server;
  if (options.tlsCert && options.tlsKey) {
    let cert: Buffer;
    let key: Buffer;
    try {
      cert = readFileSync(options.tlsCert);
      key = readFileSync(options.tlsKey);
    } catch (error) {
      throw new Error(`cannot read the TLS certificate or key: ${(error as Error).message}`);
    }
    server = createHttpsServer({ ...serverOptions, cert, key }, handler) as unknown as Server;
  } else {
    server = createHttpServer(serverOptions, handler);
  }
  server.keepAliveTimeout = 30_000;
  // Large layers may take long: bodies are bounded by the idle and minimum-rate rules
  // (limits.ts) rather than by one deadline, unless requestTimeoutMs asks for one.
  server.requestTimeout = requestTimeout;
  server.headersTimeout = requestTimeout > 0 ? Math.min(headersTimeout, requestTimeout) : headersTimeout;

  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      reject(error.code === 'EADDRINUSE' ? new Error(`address ${host}:${port} is already in use: stop the other server or pick another --addr`) : error);
    });
    server.listen(port, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `${options.tlsCert ? 'https' : 'http'}://${urlHost}:${address.port}`;
  logger.info({ url, root }, 'registry listening');
  if (options.enableDelete && !htpasswd) logger.warn({ url }, 'deletes are enabled without --htpasswd: anyone who can reach this address may delete content');

  const timers: NodeJS.Timeout[] = [];
  const purge = setInterval(() => {
    storage.purgeStaleUploads(uploadTimeoutMs).catch((error) => logger.warn({ err: error }, 'purging stale uploads failed'));
  }, Math.max(Math.min(uploadTimeoutMs / 4, 60_000), 250));
  purge.unref();
  timers.push(purge);
  const gc = (gcOptions: { dryRun?: boolean; gracePeriodMs?: number } = {}) =>
    collectGarbage({ root, storage, lock, dryRun: gcOptions.dryRun, gracePeriodMs: gcOptions.gracePeriodMs ?? options.gcGracePeriodMs ?? defaultGracePeriodMs, uploadTimeoutMs });
  if (options.gcIntervalMs) {
    const timer = setInterval(() => {
      gc()
        .then((report) => logger.info({ deleted: report.deleted.length, bytesFreed: report.bytesFreed }, 'garbage collection'))
        .catch((error) => logger.warn({ err: error }, 'garbage collection failed'));
    }, options.gcIntervalMs);
    timer.unref();
    timers.push(timer);
  }

  let closed: Promise<void> | undefined;
  return {
    url,
    host: address.address,
    port: address.port,
    root,
    gc,
    close() {
      closed ??= new Promise<void>((resolve) => {
        for (const timer of timers) clearInterval(timer);
        server.close(() => {
          if (htpasswd) htpasswd.close().then(() => resolve(), () => resolve());
          else resolve();
        });
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), 2000).unref();
      });
      return closed;
    },
  };
}
