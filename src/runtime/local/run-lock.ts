// A lock file that serialises read-modify-write of one run's record across
// weft processes (a CLI `weft status` and a long-lived runner both record
// terminal states, restarts and stops). Created with O_EXCL; it names its
// holder by pid and start time, so a lock left by a crashed process is taken
// over instead of blocking the run forever.
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { isSameProcess, processStartTime } from './procfs.js';

export class RunLockTimeoutError extends Error {
  override name = 'RunLockTimeoutError';
}

interface Holder {
  pid: number;
  start?: string;
}

async function olderThan(file: string, ms: number): Promise<boolean> {
  const stat = await fs.stat(file).catch(() => undefined);
  return stat !== undefined && Date.now() - stat.mtimeMs > ms;
}

async function readHolder(file: string): Promise<Holder | undefined> {
  try {
    const [pid, start] = (await fs.readFile(file, 'utf8')).trim().split(' ');
    return { pid: Number(pid), start: start || undefined };
  } catch {
    return undefined;
  }
}

/** A lock file with no holder in it this long is left by a writer that died (older weft wrote the file in two steps). */
const EMPTY_LOCK_STALE_MS = 5_000;

/** Holds `file` as a lock while `fn` runs. Waits (polling) while a live process holds it. */
export async function withFileLock<T>(file: string, fn: () => Promise<T>, timeoutMs = 120_000): Promise<T> {
  const me = `${process.pid} ${processStartTime(process.pid) ?? ''}`;
  const deadline = Date.now() + timeoutMs;
  let delay = 5;
  // The lock appears with its holder already in it (a hard link of a written file), so a holder
  // killed at any point leaves either no lock or a lock that names it: never an empty one.
  const mine = `${file}.${process.pid}-${randomBytes(4).toString('hex')}.new`;
  await fs.writeFile(mine, me, { mode: 0o600 });
  try {
    for (;;) {
      try {
        await fs.link(mine, file);
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const holder = await readHolder(file);
      const named = holder !== undefined && Number.isInteger(holder.pid) && holder.pid > 0;
      const gone = named ? !isSameProcess(holder.pid, holder.start) : await olderThan(file, EMPTY_LOCK_STALE_MS);
      if (gone) {
        // The holder is gone: take the lock over (rename is atomic, so only one taker wins the unlink).
        const stale = `${file}.stale-${process.pid}`;
        if (await fs.rename(file, stale).then(() => true, () => false)) {
          const taken = await readHolder(stale);
          // Another taker may have replaced the dead holder's file in between: give a live holder's file back.
          if (taken && (taken.pid !== holder?.pid || taken.start !== holder?.start)) await fs.link(stale, file).catch(() => undefined);
          await fs.rm(stale, { force: true });
        }
        continue;
      }
      if (Date.now() > deadline) throw new RunLockTimeoutError(`${file} is held by pid ${named ? holder.pid : '?'} for more than ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 100);
    }
  } finally {
    await fs.rm(mine, { force: true });
  }
  try {
    return await fn();
  } finally {
    await fs.rm(file, { force: true });
  }
}
