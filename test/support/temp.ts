// Temporary directories for tests, under the system's temp directory.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** A new empty directory named `<prefix><random>`; the caller removes it. */
export function tempDir(prefix = 'weft-test-'): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}
