// Serves the built web dashboard (dashboard/ built by Vite into dist/dashboard)
// from the master's own files: no CDN, no fonts or scripts from elsewhere.
import { existsSync, promises as fs } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

/** dist/dashboard beside dist/src (this file is dist/src/master/dashboard.js once compiled). */
export function defaultDashboardDir(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'dashboard');
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json',
};

/**
 * The page only talks to the master it came from: scripts, styles and fetches
 * are same-origin, nothing is inlined, and it cannot be framed.
 */
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

interface CachedFile {
  body: Buffer;
  gzip?: Buffer;
  type: string;
  mtimeMs: number;
}

export class DashboardFiles {
  private readonly cache = new Map<string, CachedFile>();
  constructor(readonly dir: string) {}

  /** Is this a path the dashboard answers (GET/HEAD outside the API)? */
  static handles(pathname: string): boolean {
    return pathname === '/' || pathname === '/index.html' || pathname.startsWith('/assets/') || pathname === '/favicon.svg';
  }

  async serve(req: IncomingMessage, res: ServerResponse, pathname: string): Promise<void> {
    const rel = pathname === '/' ? 'index.html' : pathname.slice(1);
    const file = path.resolve(this.dir, rel);
    // Only files inside the dashboard folder (no ../ escapes).
    if (!file.startsWith(this.dir + path.sep)) return this.notFound(res, pathname);
    let entry: CachedFile | undefined;
    try {
      const stat = await fs.stat(file);
      if (!stat.isFile()) return this.notFound(res, pathname);
      entry = this.cache.get(file);
      if (!entry || entry.mtimeMs !== stat.mtimeMs) {
        const body = await fs.readFile(file);
        const type = TYPES[path.extname(file)] ?? 'application/octet-stream';
        entry = { body, type, mtimeMs: stat.mtimeMs, gzip: /^(text|application\/json|image\/svg)/.test(type) && body.length > 512 ? gzipSync(body, { level: 9 }) : undefined };
        this.cache.set(file, entry);
      }
    } catch {
      return this.notFound(res, pathname);
    }
    const gzip = entry.gzip && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
    const body = gzip ? entry.gzip! : entry.body;
    res.writeHead(200, {
      'content-type': entry.type,
      'content-length': body.length,
      // Vite names assets by content hash, so they never change; index.html always revalidates.
      'cache-control': rel.startsWith('assets/') ? 'public, max-age=31536000, immutable' : 'no-cache',
      'content-security-policy': CSP,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'x-frame-options': 'DENY',
      vary: 'accept-encoding',
      ...(gzip ? { 'content-encoding': 'gzip' } : {}),
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  private notFound(res: ServerResponse, pathname: string): void {
    const built = existsSync(path.join(this.dir, 'index.html'));
    const message = built ? `no such dashboard file ${pathname}` : `the dashboard is not built (no ${path.join(this.dir, 'index.html')}): run scripts/setup, which builds dashboard/ with Vite`;
    const body = JSON.stringify({ error: { code: 'not_found', message } });
    res.writeHead(404, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
    res.end(body);
  }
}
