// Small durable-filesystem helpers: write to a temporary file, fsync, rename into
// place, fsync the directory. A process killed at any moment leaves either the
// old file or the complete new one, never a partial one.
import { constants } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join, resolve } from 'node:path';

/**
 * `mkdir -p` that always terminates. Node's own `mkdir(path, { recursive: true })`
 * loops forever when mkdir(2) answers ENOENT although the parent exists (e.g.
 * under /proc/<pid>/), so this walks up at most once per path component and
 * reports the first directory it could not create.
 */
export async function mkdirp(path: string): Promise<void> {
  const target = resolve(path);
  try {
    await mkdir(target);
    return;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      if ((await stat(target)).isDirectory()) return;
      throw error;
    }
    if (code !== 'ENOENT' || dirname(target) === target) throw error;
  }
  await mkdirp(dirname(target));
  try {
    await mkdir(target);
  } catch (error) {
    // the parent now exists; a second ENOENT means this filesystem refuses it (no retry)
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || !(await stat(target)).isDirectory()) throw error;
  }
}

export async function fsyncDir(dir: string): Promise<void> {
  let handle;
  try {
    handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    await handle.sync();
  } catch {
    // Some filesystems refuse fsync on directories; the rename is still atomic.
  } finally {
    await handle?.close();
  }
}

export function tempName(target: string): string {
  return join(dirname(target), `.${basename(target)}.${randomBytes(6).toString('hex')}.tmp`);
}

/** Atomically replaces `target` with `data` (fsync before and after the rename). */
export async function writeFileAtomic(target: string, data: string | Buffer, durable = true): Promise<void> {
  await mkdirp(dirname(target));
  const temp = tempName(target);
  const handle = await open(temp, 'w', 0o644);
  try {
    await handle.writeFile(data);
    if (durable) await handle.sync();
  } catch (error) {
    await handle.close();
    await rm(temp, { force: true });
    throw error;
  }
  await handle.close();
  try {
    await rename(temp, target);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  if (durable) await fsyncDir(dirname(target));
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

export async function statOrNull(path: string): Promise<{ size: number; mtimeMs: number; isFile: boolean } | null> {
  try {
    const info = await stat(path);
    return { size: info.size, mtimeMs: info.mtimeMs, isFile: info.isFile() };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
    throw error;
  }
}
