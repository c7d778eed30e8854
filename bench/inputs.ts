// Benchmark inputs taken from the machine, so weft and its peer see the same bytes.
import { copyFileSync, readdirSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';

/** Copies every distinct jar of /usr/share/java (Debian's Java libraries, symlinks resolved) into `dir`. */
export function copyDistinctSystemJars(dir: string): void {
  const seen = new Set<string>();
  for (const name of readdirSync('/usr/share/java').sort()) {
    if (!name.endsWith('.jar')) continue;
    const real = realpathSync(path.join('/usr/share/java', name));
    if (seen.has(real) || !statSync(real).isFile()) continue;
    seen.add(real);
    copyFileSync(real, path.join(dir, path.basename(real)));
  }
}
