// Finding a program the way a shell would, plus the sbin directories (runc often lives there).
import { existsSync } from 'node:fs';
import path from 'node:path';

export function which(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const file = path.join(dir || '.', cmd);
    if (existsSync(file)) return file;
  }
  for (const dir of ['/usr/sbin', '/sbin', '/usr/local/sbin']) {
    const file = path.join(dir, cmd);
    if (existsSync(file)) return file;
  }
  return undefined;
}
