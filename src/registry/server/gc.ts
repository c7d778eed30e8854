// Mark-and-sweep garbage collection of the blob store.
//
// Mark: every manifest revision of every repository, and everything it names
// (config, layers, index children). Sweep: blobs not marked AND not modified
// for `gracePeriodMs`. The grace period is what keeps in-flight pushes safe: a
// blob that was just uploaded, mounted or checked with HEAD (all of which set
// its mtime to now) but whose manifest is not pushed yet is younger than the
// grace period, so it stays. Upload sessions live outside the blob store and are
// only removed when idle for longer than the upload timeout. Inside a running
// server the sweep also holds the write side of the push lock.
import { readdir, readFile, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { parseDigest } from './names.js';
import { Storage } from './storage.js';
import type { RwLock } from './lock.js';

export interface GcOptions {
  root: string;
  dryRun?: boolean;
  /** Blobs younger than this are kept even when unreferenced (default 1 hour). */
  gracePeriodMs?: number;
  /** Upload sessions idle for longer than this are removed (default 1 hour). */
  uploadTimeoutMs?: number;
  /** Set by the running server so GC excludes pushes while it sweeps. */
  lock?: RwLock;
  storage?: Storage;
}

export interface GcReport {
  dryRun: boolean;
  manifests: number;
  referenced: number;
  deleted: Array<{ digest: string; size: number }>;
  keptRecent: number;
  bytesFreed: number;
  uploadsPurged: number;
  linksRemoved: number;
}

export const defaultGracePeriodMs = 60 * 60 * 1000;
export const defaultUploadTimeoutMs = 60 * 60 * 1000;

async function listDir(path: string): Promise<string[]> {
  try {
    return await readdir(path);
  } catch {
    return [];
  }
}

export async function collectGarbage(options: GcOptions): Promise<GcReport> {
  const storage = options.storage ?? new Storage(options.root);
  try {
    await stat(join(storage.root, 'blobs'));
  } catch {
    throw new Error(`no registry storage in ${storage.root}: pass the --root the registry serves`);
  }
  const run = async (): Promise<GcReport> => {
    const dryRun = options.dryRun === true;
    const grace = options.gracePeriodMs ?? defaultGracePeriodMs;
    const report: GcReport = { dryRun, manifests: 0, referenced: 0, deleted: [], keptRecent: 0, bytesFreed: 0, uploadsPurged: 0, linksRemoved: 0 };
    const marked = new Set<string>();
    const repositories = await storage.listRepositories();

    // mark
    for (const repo of repositories) {
      const revisions = join(storage.repoDir(repo), '_manifests', 'revisions');
      for (const algorithm of await listDir(revisions)) {
        for (const hex of await listDir(join(revisions, algorithm))) {
          if (hex.startsWith('.')) continue;
          let d;
          try {
            d = parseDigest(`${algorithm}:${hex}`);
          } catch {
            continue;
          }
          report.manifests++;
          marked.add(d.digest);
          let doc: { config?: { digest?: unknown }; layers?: Array<{ digest?: unknown }>; manifests?: Array<{ digest?: unknown }> };
          try {
            doc = JSON.parse(await readFile(storage.blobPath(d), 'utf8'));
          } catch {
            continue;
          }
          const refs = [doc.config, ...(Array.isArray(doc.layers) ? doc.layers : []), ...(Array.isArray(doc.manifests) ? doc.manifests : [])];
          for (const ref of refs) if (ref && typeof ref.digest === 'string') marked.add(ref.digest);
        }
      }
    }
    report.referenced = marked.size;

    // sweep
    const now = Date.now();
    const blobs = join(storage.root, 'blobs');
    for (const algorithm of await listDir(blobs)) {
      for (const prefix of await listDir(join(blobs, algorithm))) {
        for (const entry of await listDir(join(blobs, algorithm, prefix))) {
          const path = join(blobs, algorithm, prefix, entry);
          let info;
          try {
            info = await stat(path);
          } catch {
            continue;
          }
          if (entry.startsWith('.')) {
            // a temporary file left by a crash during an atomic write
            if (now - info.mtimeMs > grace && !dryRun) await rm(path, { force: true });
            continue;
          }
          const digest = `${algorithm}:${entry}`;
          if (marked.has(digest)) continue;
          if (now - info.mtimeMs <= grace) {
            report.keptRecent++;
            continue;
          }
          if (!dryRun) {
            // a HEAD, mount or re-push since the first look renews the blob: keep it
            const again = await stat(path).catch(() => null);
            if (!again || again.mtimeMs !== info.mtimeMs) continue;
            await unlink(path).catch(() => undefined);
          }
          report.deleted.push({ digest, size: info.size });
          report.bytesFreed += info.size;
        }
      }
    }

    // links to blobs that are gone
    if (!dryRun) {
      for (const repo of repositories) {
        const layers = join(storage.repoDir(repo), '_layers');
        for (const algorithm of await listDir(layers)) {
          for (const hex of await listDir(join(layers, algorithm))) {
            let d;
            try {
              d = parseDigest(`${algorithm}:${hex}`);
            } catch {
              continue;
            }
            if ((await storage.blobSize(d)) === null) {
              await unlink(join(layers, algorithm, hex)).catch(() => undefined);
              report.linksRemoved++;
            }
          }
        }
      }
      report.uploadsPurged = await storage.purgeStaleUploads(options.uploadTimeoutMs ?? defaultUploadTimeoutMs);
    }
    return report;
  };
  return options.lock ? options.lock.write(run) : run();
}
