// A small HTTP layer over node:http/node:https with keep-alive agents.
// node:http (rather than fetch) lets the client stream request bodies with a
// known Content-Length, count bytes, and decide itself which headers follow a
// redirect (Authorization never crosses to another host). GETs of large
// bodies (blobs) are read off sockets of weft's own instead (direct-read.ts).
import http from 'node:http';
import type https from 'node:https';
import type { LookupFunction } from 'node:net';
import { lookup as dnsLookup } from 'node:dns';
import { Readable } from 'node:stream';
import { DirectReadDeclined, DirectReader } from './direct-read.js';

export interface HttpRequest {
  method: string;
  url: URL;
  headers?: Record<string, string>;
  /** A buffer, or a stream (then give contentLength). */
  body?: Buffer | Readable;
  contentLength?: number;
  /** Abort the request when no byte moves for this long (ms). */
  idleTimeoutMs?: number;
  /** A large body is expected (a blob): a GET is read off a socket directly (direct-read.ts). */
  bulk?: boolean;
}

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** Header names and values as received, in order. */
  rawHeaders: string[];
  url: URL;
  body: Readable;
}

export interface HttpClientOptions {
  /** Host name -> address, like curl --resolve (used by tests to reach 127.0.0.1 under another name). */
  resolve?: Record<string, string>;
  maxSockets?: number;
  /** Extra CA certificates (PEM) to trust for HTTPS. */
  ca?: string[];
  /** Read bulk GETs off sockets directly (default true). */
  directRead?: boolean;
}

export class HttpClient {
  private readonly httpAgent: http.Agent;
  /** Created on the first HTTPS request: node:https (TLS) is loaded only then (start-up of `weft copy` to a loopback registry). */
  private httpsAgent?: Promise<{ lib: typeof https; agent: https.Agent }>;
  private readonly common: http.AgentOptions;
  private readonly ca?: string[];
  private readonly direct?: DirectReader;

  constructor(options: HttpClientOptions = {}) {
    const resolve = options.resolve ?? {};
    const lookup: LookupFunction = (hostname, opts, callback) => {
      const mapped = resolve[hostname];
      if (mapped) {
        const family = mapped.includes(':') ? 6 : 4;
        if ((opts as { all?: boolean }).all) (callback as unknown as (e: null, a: Array<{ address: string; family: number }>) => void)(null, [{ address: mapped, family }]);
        else callback(null, mapped, family);
        return;
      }
      dnsLookup(hostname, opts, callback as never);
    };
    const common = { keepAlive: true, noDelay: true, maxSockets: options.maxSockets ?? 16, lookup };
    this.common = common;
    this.ca = options.ca && options.ca.length ? options.ca : undefined;
    this.httpAgent = new http.Agent(common);
    if (options.directRead !== false) this.direct = new DirectReader({ lookup, ca: this.ca });
  }

  private tls(): Promise<{ lib: typeof https; agent: https.Agent }> {
    this.httpsAgent ??= import('node:https').then(({ default: lib }) => ({ lib, agent: new lib.Agent({ ...this.common, ca: this.ca }) }));
    return this.httpsAgent;
  }

  async request(req: HttpRequest): Promise<HttpResponse> {
    const headers: Record<string, string> = { 'User-Agent': 'weft/0.1', ...req.headers };
    if (req.bulk && this.direct && req.method === 'GET' && req.body === undefined) {
      try {
        const res = await this.direct.get({ url: req.url, headers, idleTimeoutMs: req.idleTimeoutMs });
        return { ...res, url: req.url };
      } catch (error) {
        if (!(error instanceof DirectReadDeclined)) throw error;
        // Framed some other way (chunked): the same GET through node:http.
      }
    }
    const isHttps = req.url.protocol === 'https:';
    const tls = isHttps ? await this.tls() : undefined;
    const lib = tls ? tls.lib : http;
    if (req.body !== undefined) {
      const length = Buffer.isBuffer(req.body) ? req.body.length : req.contentLength;
      if (length !== undefined) headers['Content-Length'] = String(length);
    } else if (req.method === 'PUT' || req.method === 'POST' || req.method === 'PATCH') {
      headers['Content-Length'] = '0';
    }
    return new Promise<HttpResponse>((resolvePromise, reject) => {
      const stream = req.body !== undefined && !Buffer.isBuffer(req.body) ? req.body : undefined;
      const outgoing = lib.request(
        req.url,
        { method: req.method, headers, agent: tls ? tls.agent : this.httpAgent },
        (res) => {
          // A server that answers before reading the whole body (an error): stop reading the source.
          if (stream && !stream.readableEnded) {
            stream.unpipe(outgoing);
            stream.destroy();
          }
          resolvePromise({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, url: req.url, body: res });
        },
      );
      let settled = false;
      const fail = (error: Error): void => {
        if (settled) return;
        settled = true;
        reject(error);
      };
      outgoing.on('error', fail);
      outgoing.on('response', () => {
        settled = true;
      });
      if (req.idleTimeoutMs) {
        outgoing.setTimeout(req.idleTimeoutMs, () => {
          const error = Object.assign(new Error(`no response from ${req.url.host} within ${req.idleTimeoutMs} ms`), { code: 'ETIMEDOUT' });
          outgoing.destroy(error);
        });
      }
      if (req.body === undefined) {
        outgoing.end();
      } else if (Buffer.isBuffer(req.body)) {
        outgoing.end(req.body);
      } else {
        const source = req.body;
        source.on('error', (error) => {
          outgoing.destroy(error);
          fail(error);
        });
        source.pipe(outgoing);
      }
    });
  }

  close(): void {
    this.httpAgent.destroy();
    this.direct?.close();
    void this.httpsAgent?.then(({ agent }) => agent.destroy());
  }
}

/** Reads a whole (small) response body, refusing more than `limit` bytes. */
export async function readBody(res: HttpResponse, limit = 8 * 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limit) {
      res.body.destroy();
      throw new Error(`response from ${res.url.host} is larger than ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Drains and discards a body so the keep-alive socket can be reused. */
export function discard(res: HttpResponse): Promise<void> {
  return new Promise((resolve) => {
    if (res.body.readableEnded) return resolve();
    res.body.on('end', () => resolve());
    res.body.on('error', () => resolve());
    res.body.on('close', () => resolve());
    res.body.resume();
  });
}

export function header(res: HttpResponse, name: string): string | undefined {
  const value = res.headers[name.toLowerCase()];
  return Array.isArray(value) ? value.join(', ') : value;
}

/** All values of a header, keeping separate header lines apart (for WWW-Authenticate and Link). */
export function headerValues(res: HttpResponse, name: string): string[] {
  const raw = res.rawHeaders;
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) if (raw[i]!.toLowerCase() === name.toLowerCase()) out.push(raw[i + 1]!);
  return out;
}

export { Readable };
