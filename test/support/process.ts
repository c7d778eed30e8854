// Checking on processes a test started (or that a component left behind).
import { readdirSync, readFileSync } from 'node:fs';

/** True while a process with this pid exists (signal 0 only checks). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Every process of the machine with its command line (arguments joined by spaces; empty for kernel threads),
 * from /proc; a process that ends while it is read is left out.
 */
export function commandLines(): Array<{ pid: number; commandLine: string }> {
  const found: Array<{ pid: number; commandLine: string }> = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      found.push({ pid: Number(name), commandLine: readFileSync(`/proc/${name}/cmdline`, 'utf8').replace(/\0$/, '').split('\0').join(' ') });
    } catch {
      // ended meanwhile
    }
  }
  return found;
}
