// A lock file that serialises read-modify-write of one run's record across
// weft processes (a CLI `weft status` and a long-lived runner both record
// terminal states, restarts and stops). Created with O_EXCL; it names its
// holder by pid and start time, so a lock left by a crashed process is taken
// over instead of blocking the run forever.
import { promises as fs } from 'node:fs';
import { isSameProcess, processStartTime } from './procfs.js';

export class RunLockTimeoutError extends Error {
  override name = 'RunLockTimeoutError';
}

interface Holder {
  pid: number;
  start?: string;
}

async function readHolder(file: string): Promise<Holder | undefined> {
  try {
    const [pid, start] = (await fs.readFile(file, 'utf8')).trim().split(' ');
    return { pid: Number(pid), start: start || undefined };
  } catch {
    return undefined;
  }
}

/** Holds `file` as a lock while `fn` runs. Waits (polling) while a live process holds it. */
export async function withFileLock<T>(file: string, fn: () => Promise<T>, timeoutMs = 120_000): Promise<T> {
  const me = `${process.pid} ${processStartTime(process.pid) ?? ''}`;
  const deadline = Date.now() + timeoutMs;
  let delay = 5;
  for (;;) {
    try {
      await fs.writeFile(file, me, { flag: 'wx', mode: 0o600 });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = await readHolder(file);
    // An empty file is a holder between create and write: wait for it like any other.
    if (holder && holder.pid > 0 && !isSameProcess(holder.pid, holder.start)) {
      // The holder is gone: take the lock over (rename is atomic, so only one taker wins the unlink).
      const stale = `${file}.stale-${process.pid}`;
      if (await fs.rename(file, stale).then(() => true, () => false)) {
        const taken = await readHolder(stale);
        // Another taker may have replaced the dead holder's file in between: give a live holder's file back.
        if (taken && (taken.pid !== holder.pid || taken.start !== holder.start)) await fs.link(stale, file).catch(() => undefined);
        await fs.rm(stale, { force: true });
      }
      continue;
    }
    if (Date.now() > deadline) throw new RunLockTimeoutError(`${file} is held by pid ${holder?.pid ?? '?'} for more than ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 100);
  }
  try {
    return await fn();
  } finally {
    await fs.rm(file, { force: true });
  }
}
