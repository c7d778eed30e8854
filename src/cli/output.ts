// Terminal output helpers: colour only on a TTY and never with NO_COLOR, JSON on request.

const useColour = process.stderr.isTTY === true && !('NO_COLOR' in process.env) && process.env.TERM !== 'dumb';

export function colour(code: number, text: string): string {
  return useColour ? `\u001b[${code}m${text}\u001b[0m` : text;
}

export const dim = (text: string): string => colour(2, text);
export const bold = (text: string): string => colour(1, text);
export const red = (text: string): string => colour(31, text);
export const green = (text: string): string => colour(32, text);

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Progress lines go to stderr so stdout stays clean for digests and JSON. */
export function progress(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** Prints an error the user can act on and returns the exit code. */
export function reportError(error: unknown, json: boolean): number {
  const message = error instanceof Error ? error.message : String(error);
  const name = error instanceof Error ? error.name : 'Error';
  if (json) {
    process.stdout.write(`${JSON.stringify({ error: { name, message } })}\n`);
  } else {
    process.stderr.write(`${red('error:')} ${message}\n`);
    if (process.env.WEFT_DEBUG && error instanceof Error && error.stack) process.stderr.write(`${dim(error.stack)}\n`);
  }
  return 1;
}
