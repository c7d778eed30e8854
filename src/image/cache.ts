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

/** ${WEFT_CACHE_DIR} or ${XDG_CACHE_HOME:-~/.cache}/weft/layers. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.WEFT_CACHE_DIR) return path.resolve(env.WEFT_CACHE_DIR);
  const base = env.XDG_CACHE_HOME ? path.resolve(env.XDG_CACHE_HOME) : path.join(os.homedir(), '.cache');
  return path.join(base, 'weft', 'layers');
}

export class LayerCache implements LayerCacheLike {
  readonly store: BlobStore;
  constructor(readonly dir: string = defaultCacheDir()) {
    this.store = new BlobStore(dir);
  }

  private recordPath(key: string): string {
    return path.join(this.dir, 'keys', key.slice(0, 2), `${key}.json`);
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
}
