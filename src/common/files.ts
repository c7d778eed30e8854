// Files written so that a reader (another weft process, a crash) never sees half of one.
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';

/** A temporary name of this process's own beside `target` (swept as `*.tmp-*` by whoever owns the folder). */
export function tempName(target: string): string {
  return `${target}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/**
 * Writes `data` to a temporary name of this process's own beside `file`, then renames it over
 * `file`: readers see the old or the new content, and two writers never share a temporary file.
 */
export async function writeFileAtomic(file: string, data: string | Buffer, mode = 0o600): Promise<void> {
  const tmp = tempName(file);
  try {
    await fs.writeFile(tmp, data, { mode });
    await fs.rename(tmp, file);
  } catch (error) {
    await fs.rm(tmp, { force: true });
    throw error;
  }
}

/** The file's text without surrounding whitespace, or undefined when it cannot be read. */
export async function readTextIfAny(file: string): Promise<string | undefined> {
  try {
    return (await fs.readFile(file, 'utf8')).trim();
  } catch {
    return undefined;
  }
}
