// Running programs from tests: the weft CLI (the compiled dist/src/cli/main.js)
// and the real tools beside it. One runner, so every test sees a failure the same way.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository (this file is dist/test/support/command.js once compiled). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const weftMain = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');

export interface CommandResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface CommandOptions {
  /** Default: the repository. */
  cwd?: string;
  /** Laid over this process's environment (with NO_COLOR=1); an undefined value removes the variable. */
  env?: Record<string, string | undefined>;
  /** Written to the program's standard input (default: none, stdin is closed at once). */
  input?: string;
  /** The program is SIGKILLed after this long and the call fails (default 10 minutes). */
  timeoutMs?: number;
}

/** Runs a program; never throws for a non-zero exit (the result says), throws when it cannot start or does not return. */
export function runCommand(file: string, args: readonly string[], options: CommandOptions = {}): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', ...options.env };
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
    const child = spawn(file, [...args], { cwd: options.cwd ?? repoRoot, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timeoutMs = options.timeoutMs ?? 10 * 60_000;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${file}: ${error.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) reject(new Error(`${path.basename(file)} ${args.join(' ')} did not return within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
      else resolve({ stdout, stderr, code: code ?? (signal ? 128 : 1) });
    });
    // A program that exits without reading its stdin makes this write fail with EPIPE: not an error here.
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
  });
}

/** Runs a program and fails with its output when it exits non-zero. */
export async function mustRun(file: string, args: readonly string[], options: CommandOptions = {}): Promise<CommandResult> {
  const result = await runCommand(file, args, options);
  if (result.code !== 0) {
    throw new Error(`${path.basename(file)} ${args.join(' ')} exited ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  }
  return result;
}

/** Runs the weft CLI (never throws for a non-zero exit). */
export function weft(args: readonly string[], options: CommandOptions = {}): Promise<CommandResult> {
  return runCommand(process.execPath, [weftMain, ...args], options);
}

/** Runs the weft CLI and fails with its output when it exits non-zero. */
export function mustWeft(args: readonly string[], options: CommandOptions = {}): Promise<CommandResult> {
  return mustRun(process.execPath, [weftMain, ...args], options);
}
