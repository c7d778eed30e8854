// Where the tools that scripts/setup --test builds from Go modules live ($WEFT_TOOLS), and which
// version of each was built: the set-up records the version it resolved (pins fall back when the
// Go module proxy stops serving them) in $WEFT_TOOLS/<name>.version.
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export function toolsDir(): string {
  return process.env.WEFT_TOOLS || join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'weft', 'tools');
}

/** The version of tool `name` the set-up built, from its record; throws with what to run when missing. */
export function toolVersion(name: string, setupScript: string): string {
  const record = join(toolsDir(), `${name}.version`);
  if (!existsSync(record)) throw new Error(`${name} was not built (no ${record}): run "WEFT_SETUP_MODE=--test bash ${setupScript}" or scripts/setup --test`);
  return readFileSync(record, 'utf8').trim();
}

/** Path of a binary inside $WEFT_TOOLS/<name>-<version>/; throws with what to run when it is missing. */
export function toolBinary(name: string, relative: string, setupScript: string): string {
  const binary = join(toolsDir(), `${name}-${toolVersion(name, setupScript)}`, relative);
  if (!existsSync(binary)) throw new Error(`${name} is not built at ${binary}: run "WEFT_SETUP_MODE=--test bash ${setupScript}" or scripts/setup --test`);
  return binary;
}
