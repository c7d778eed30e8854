// Where weft keeps state and caches by default: the XDG base directories, as
// other command-line tools do (one rule, used by every component).
import os from 'node:os';
import path from 'node:path';

/** $XDG_STATE_HOME/weft/<parts> (default ~/.local/state/weft/<parts>). */
export function weftStateDir(...parts: string[]): string {
  const base = process.env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state');
  return path.join(base, 'weft', ...parts);
}
