// The local state directory's files: private to weft's user, small ones read whole.
import { readFileSync, promises as fs } from 'node:fs';
import path from 'node:path';
import type { ImageUser } from './image-user.js';

/** A small state file's text, trimmed; undefined when it does not exist (yet). */
export const readText = (file: string): string | undefined => {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
};

// State files hold the spec's environment values (secrets), files given to the run
// and program output: only weft's user may read them (directories 0700, files 0600).
export const PRIVATE_DIR = 0o700;
export const PRIVATE_FILE = 0o600;

/** Creates `dir` (and missing parents) as 0700, and tightens it when it exists with a looser mode (older weft versions). */
export async function privateDir(dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: PRIVATE_DIR });
  const stat = await fs.stat(dir);
  if ((stat.mode & 0o777) !== PRIVATE_DIR && stat.uid === process.getuid?.()) await fs.chmod(dir, PRIVATE_DIR);
}

/** Gives a directory and the files in it (one level: withFiles has no subdirectories) to `user`. */
export async function chownTree(dir: string, user: ImageUser): Promise<void> {
  await fs.chown(dir, user.uid, user.gid);
  for (const name of await fs.readdir(dir)) await fs.lchown(path.join(dir, name), user.uid, user.gid);
}
