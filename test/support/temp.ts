// Temporary directories for tests, under the system's temp directory.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** A new empty directory named `<prefix><random>`; the caller removes it. */
export function tempDir(prefix = 'weft-test-'): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

/** Runs `fn` with a new empty directory, removed afterwards whatever `fn` did. */
export async function withTempDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await tempDir(prefix);
  try {
    return await fn(dir);
  } finally {
    await fs.rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  }
}
