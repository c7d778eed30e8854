// The input-keyed layer cache. A layer's key is a sha256 over every entry's
// path, type, normalised mode, size and content digest plus the writer settings
// (gzip level, mtime, zlib version, writer version): see layer.ts. The cache
// maps that key to the finished layer (descriptor, diffID) whose blob lives in
// the same directory's blob store, so a cache hit costs hashing the inputs and
// nothing else: no tar, no gzip. Records are written after their blob, each by
// temp file + rename, so a process killed mid-write leaves no record pointing
// at a missing or partial blob.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BlobStore, writeFileAtomic } from './blobstore.js';
import type { LayerCacheLike, LayerResult } from './layer.js';

type LayerRecord = Omit<LayerResult, 'cached' | 'blobPath'>;

/** Facts about a jar remembered by content digest, so an unchanged jar is neither re-validated nor re-inflated. */
export interface JarFacts {
  /** The jar passed every hostile-input check. */
  valid: true;
  /** sha256 of each entry's uncompressed content (program jars, whose entries go into layers). */
  entryDigests?: Record<string, string>;
}

/** Where planning keeps and finds JarFacts (LayerCache implements it). */
export interface JarFactsStore {
  getJarFacts(key: string): Promise<JarFacts | undefined>;
  putJarFacts(key: string, facts: JarFacts): Promise<void>;
}

/** ${WEFT_CACHE_DIR} or ${XDG_CACHE_HOME:-~/.cache}/weft/layers. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.WEFT_CACHE_DIR) return path.resolve(env.WEFT_CACHE_DIR);
  const base = env.XDG_CACHE_HOME ? path.resolve(env.XDG_CACHE_HOME) : path.join(os.homedir(), '.cache');
  return path.join(base, 'weft', 'layers');
}

export class LayerCache implements LayerCacheLike, JarFactsStore {
  readonly store: BlobStore;
  constructor(readonly dir: string = defaultCacheDir()) {
    this.store = new BlobStore(dir);
  }

  private recordPath(key: string): string {
    return path.join(this.dir, 'keys', key.slice(0, 2), `${key}.json`);
  }

  private factsPath(key: string): string {
    return path.join(this.dir, 'jars', key.slice(0, 2), `${key}.json`);
  }

  /** What an earlier build learned about a jar, keyed by its content digest (plus the checks' limits). */
  async getJarFacts(key: string): Promise<JarFacts | undefined> {
    try {
      const facts = JSON.parse(await fs.readFile(this.factsPath(key), 'utf8')) as JarFacts;
      return facts && facts.valid === true ? facts : undefined;
    } catch {
      return undefined;
    }
  }

  async putJarFacts(key: string, facts: JarFacts): Promise<void> {
    await writeFileAtomic(this.factsPath(key), `${JSON.stringify(facts)}\n`);
  }

  async get(key: string, store: BlobStore): Promise<LayerRecord | undefined> {
    let record: LayerRecord;
    try {
      record = JSON.parse(await fs.readFile(this.recordPath(key), 'utf8')) as LayerRecord;
    } catch {
      return undefined;
    }
    if (!record?.descriptor?.digest || !record.diffId) return undefined;
    // The record is only trusted while its blob is still there, whole.
    if (!(await store.has(record.descriptor.digest, record.descriptor.size))) return undefined;
    return record;
  }

  async put(key: string, record: LayerRecord): Promise<void> {
    await writeFileAtomic(this.recordPath(key), `${JSON.stringify(record)}\n`);
  }

  /**
   * Removes temp files left by killed processes (older than `maxAgeMs`, so
   * writes in flight in other processes are left alone). Best effort.
   */
  async sweepTempFiles(maxAgeMs = 60 * 60 * 1000): Promise<number> {
    let removed = 0;
    const now = Date.now();
    // At most one sweep per maxAge: walking a large cache on every build would cost more than it saves.
    const marker = path.join(this.dir, 'last-sweep');
    const last = await fs.stat(marker).catch(() => undefined);
    if (maxAgeMs > 0 && last && now - last.mtimeMs < maxAgeMs) return 0;
    await fs.mkdir(this.dir, { recursive: true });
    await fs.writeFile(marker, '');
    for (const dir of [path.join(this.dir, 'blobs', 'sha256'), path.join(this.dir, 'keys'), path.join(this.dir, 'jars')]) {
      const stack = [dir];
      while (stack.length > 0) {
        const current = stack.pop()!;
        const names = await fs.readdir(current, { withFileTypes: true }).catch(() => []);
        for (const entry of names) {
          const full = path.join(current, entry.name);
          if (entry.isDirectory()) stack.push(full);
          else if (entry.name.includes('.tmp-')) {
            const stat = await fs.stat(full).catch(() => undefined);
            if (stat && now - stat.mtimeMs >= maxAgeMs) {
              await fs.rm(full, { force: true });
              removed++;
            }
          }
        }
      }
    }
    return removed;
  }
}
