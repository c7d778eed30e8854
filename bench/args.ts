// The benchmarks' command-line flags: `--name value`.

/** The value after `--name`, or `dflt` when the flag is not given. */
export function flag(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}

/** A flag that must be a positive integer (a count of runs, of objects); anything else stops with what was given. */
export function countFlag(name: string, dflt: number): number {
  const value = flag(name, String(dflt));
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, not "${value}"`);
  return n;
}
