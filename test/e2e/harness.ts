// End-to-end helpers: run the weft CLI, unpack an image with umoci, run the
// bundle with runc. Everything real; every helper cleans up what it made.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

import { mustRun, repoRoot, weftMain, type CommandResult } from '../support/command.js';

// The CLI and program runners live in test/support/command.ts; re-exported for the e2e tests.
export { mustRun, mustWeft, repoRoot, runCommand, weft, weftMain, type CommandResult } from '../support/command.js';
const execFileAsync = promisify(execFile);
export const helloBuild = path.join(repoRoot, 'examples', 'hello', 'build');

/** A temp dir removed by the returned function. */
export async function tempDir(prefix: string): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), `weft-${prefix}-`));
  return { dir, remove: () => fs.rm(dir, { recursive: true, force: true }) };
}

/** Fails with a clear message when the example has not been compiled. */
export function requireExampleBuild(): void {
  for (const f of ['hello.jar', 'hello-fat.jar', 'libs']) {
    if (!existsSync(path.join(helloBuild, f))) {
      throw new Error(`${path.join(helloBuild, f)} is missing: run scripts/setup (or examples/hello/build.sh) first`);
    }
  }
  if (!existsSync(weftMain)) throw new Error(`${weftMain} is missing: run npx tsc -p tsconfig.json first`);
}

/** Unpacks oci:<layout>:<tag> into a runtime bundle with umoci (as root: no --rootless needed). */
export async function umociUnpack(layout: string, tag: string, bundle: string): Promise<void> {
  const rootless = process.getuid?.() !== 0 ? ['--rootless'] : [];
  await mustRun('umoci', ['unpack', ...rootless, '--image', `${layout}:${tag}`, bundle]);
}

export interface BundleOverrides {
  /** Replaces process.args. */
  args?: string[];
  /** Appended to process.args (program arguments after the image's entry point). */
  appendArgs?: string[];
  /** Appended to process.env (KEY=value). */
  env?: string[];
}

/**
 * Makes an unpacked bundle runnable here: no process.rlimits (the host forbids
 * raising them), no terminal, a writable root (the JVM writes /tmp/hsperfdata).
 */
export async function prepareBundle(bundle: string, overrides: BundleOverrides = {}): Promise<Record<string, any>> {
  const file = path.join(bundle, 'config.json');
  const config = JSON.parse(await fs.readFile(file, 'utf8')) as Record<string, any>;
  delete config.process.rlimits;
  config.process.terminal = false;
  if (config.root) config.root.readonly = false;
  if (overrides.args) config.process.args = overrides.args;
  if (overrides.appendArgs) config.process.args = [...(config.process.args ?? []), ...overrides.appendArgs];
  if (overrides.env) config.process.env = [...(config.process.env ?? []), ...overrides.env];
  await fs.writeFile(file, JSON.stringify(config, null, 2));
  return config;
}

/**
 * `runc run` on a bundle with a private state dir (--root) and a unique id;
 * returns the output and exit code, and always deletes the container.
 */
export async function runcRun(bundle: string, timeoutMs = 5 * 60 * 1000): Promise<CommandResult> {
  const state = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-runc-state-'));
  const id = `weft-e2e-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    return await new Promise<CommandResult>((resolve, reject) => {
      const child = spawn('runc', ['--root', state, 'run', '--bundle', bundle, id], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      const timer = setTimeout(() => {
        stderr += `\n[harness] runc did not finish within ${timeoutMs} ms; killing the container`;
        void execFileAsync('runc', ['--root', state, 'kill', id, 'KILL']).catch(() => undefined);
        child.kill('SIGKILL');
      }, timeoutMs);
      child.on('error', (error) => {
        clearTimeout(timer);
        reject(new Error(`cannot run runc: ${error.message} (install it: apt-get install runc)`));
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ stdout, stderr, code: code ?? (signal ? 128 : 1) });
      });
    });
  } finally {
    await execFileAsync('runc', ['--root', state, 'delete', '--force', id]).catch(() => undefined);
    await fs.rm(state, { recursive: true, force: true });
  }
}

/** Unpacks an image from an OCI layout and runs it with runc; removes the bundle afterwards. */
export async function runImage(layout: string, tag: string, overrides: BundleOverrides = {}): Promise<CommandResult & { config: Record<string, any> }> {
  const work = await tempDir('bundle');
  try {
    const bundle = path.join(work.dir, 'bundle');
    await umociUnpack(layout, tag, bundle);
    const config = await prepareBundle(bundle, overrides);
    const result = await runcRun(bundle);
    return { ...result, config };
  } finally {
    await work.remove();
  }
}

/** What the hello example prints for the given arguments and HELLO_NAME (see examples/hello). */
export function expectedHello(args: string[], name = 'world', javaFeature?: number): RegExp {
  const who = name.charAt(0).toUpperCase() + name.slice(1);
  const sorted = [...new Set(args)].sort();
  const java = javaFeature === undefined ? '\\d+' : String(javaFeature);
  const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^hello from weft: ${esc(who)} ${'\\*'.repeat(args.length + 1)}\\nargs=\\[${esc(sorted.join(','))}\\] crc32=[0-9a-f]{8} java=${java}\\n$`);
}
