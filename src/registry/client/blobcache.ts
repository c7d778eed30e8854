// Where blobs were last seen, per registry: digest -> repositories. A push to
// another repository of the same registry then tries a cross-repository mount
// instead of uploading (skopeo keeps a similar "blob info cache"). It is only a
// hint: a stale entry makes the registry answer 202 to the mount, and the blob
// is uploaded as usual.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Digests kept in all (the least recently pushed-to registries go first, then a registry's oldest digests). */
const maxDigests = 20_000;
const maxReposPerDigest = 4;

export function defaultBlobCacheFile(env: NodeJS.ProcessEnv = process.env): string {
  const cache = env.XDG_CACHE_HOME || path.join(env.HOME || os.homedir(), '.cache');
  return path.join(cache, 'weft', 'blob-locations.json');
}

type Table = Record<string, Record<string, string[]>>; // registry -> digest -> repositories (most recent first)

/** Temp-file names stay unique when two caches of one process save in the same millisecond. */
let saveCount = 0;

export class BlobLocationCache {
  private table: Table = {};
  private loaded?: Promise<void>;
  private dirty = false;
  /** Saves run one after another (each writes the whole table). */
  private saving: Promise<void> = Promise.resolve();

  constructor(private readonly file: string) {}

  private load(): Promise<void> {
    this.loaded ??= fs
      .readFile(this.file, 'utf8')
      .then((text) => {
        const parsed = JSON.parse(text) as unknown;
        if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return;
        for (const [registry, digests] of Object.entries(parsed as Record<string, unknown>)) {
          if (digests && typeof digests === 'object' && !Array.isArray(digests)) this.table[registry] = digests as Table[string];
        }
      })
      .catch(() => undefined); // missing or unreadable: start empty (it is only a hint)
    return this.loaded;
  }

  async lookup(registry: string, digest: string, excludeRepository: string): Promise<string | undefined> {
    await this.load();
    return this.table[registry]?.[digest]?.find((r) => r !== excludeRepository);
  }

  async record(registry: string, repository: string, digests: string[]): Promise<void> {
    await this.load();
    // Re-insert the registry so the least recently used registries come first (tests and
    // benchmarks start a registry on a new port each time: without this the file only grows).
    const registries = Object.keys(this.table);
    // Written only when a lookup would answer differently or the registry order changed: pulling
    // or pushing the same image again rewrites nothing (its digests' order within the registry,
    // used only to drop the oldest past 20,000, then waits for the next real change to be saved).
    let changed = registries[registries.length - 1] !== registry;
    const byDigest = this.table[registry] ?? {};
    delete this.table[registry];
    this.table[registry] = byDigest;
    for (const digest of digests) {
      if (byDigest[digest]?.[0] !== repository) changed = true;
      const repos = (byDigest[digest] ?? []).filter((r) => r !== repository);
      repos.unshift(repository);
      // Re-insert so the most recently used digests are last in insertion order.
      delete byDigest[digest];
      byDigest[digest] = repos.slice(0, maxReposPerDigest);
    }
    let total = 0;
    for (const digests of Object.values(this.table)) total += Object.keys(digests).length;
    for (const old of Object.keys(this.table)) {
      if (total <= maxDigests || old === registry) break;
      total -= Object.keys(this.table[old]!).length;
      delete this.table[old];
    }
    const keys = Object.keys(byDigest);
    for (const old of keys.slice(0, Math.max(0, keys.length - maxDigests))) delete byDigest[old];
    if (changed) this.dirty = true;
  }

  /** Writes the table atomically (temp file + rename) when it changed; errors are ignored. */
  save(): Promise<void> {
    this.saving = this.saving.then(() => this.write());
    return this.saving;
  }

  private async write(): Promise<void> {
    if (!this.dirty) return;
    this.dirty = false;
    const tmp = `${this.file}.${process.pid}.${++saveCount}.tmp`;
    try {
      await fs.mkdir(path.dirname(this.file), { recursive: true });
      await fs.writeFile(tmp, JSON.stringify(this.table));
      await fs.rename(tmp, this.file);
    } catch {
      // A cache that cannot be written only costs uploads.
      await fs.rm(tmp, { force: true }).catch(() => undefined);
    }
  }
}
