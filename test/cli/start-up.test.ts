// The CLI's start-up path: `weft --help` and `weft --version` are answered from
// the command table without loading any command module, and that table must
// say what the modules really register.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { Command } from 'commander';
import { modules, registerAllCommands } from '../../src/cli/commands/index.js';

const run = promisify(execFile);
const main = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli', 'main.js');

test('the command table matches the commands the modules register (name, help term, description)', async () => {
  const program = new Command();
  await registerAllCommands(program);
  const help = program.createHelp();
  const real = program.commands.map((cmd) => ({ name: cmd.name(), term: help.subcommandTerm(cmd), description: cmd.description() }));
  const table = modules.flatMap((m) => m.commands);
  assert.deepEqual(table, real);
});

/**
 * Runs the CLI with hooks that record every module it loads: ES modules (a resolve
 * hook), CommonJS files (require's resolution) and the bundles the installed entry
 * runs through the code cache (one cache file each, in a cache directory of its own).
 */
async function runRecordingModules(args: string[], entry = main): Promise<{ stdout: string; urls: string[] }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'weft-start-up-'));
  try {
    const log = path.join(dir, 'modules.log');
    const hooks = path.join(dir, 'hooks.mjs');
    await writeFile(
      hooks,
      `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  appendFileSync(${JSON.stringify(log)}, result.url + '\\n');
  return result;
}\n`,
    );
    const register = path.join(dir, 'register.mjs');
    await writeFile(register, `import { register } from 'node:module';\nregister(${JSON.stringify(`file://${hooks}`)});\n`);
    const requireHook = path.join(dir, 'require-hook.cjs');
    await writeFile(
      requireHook,
      `const Module = require('node:module'); const { appendFileSync } = require('node:fs'); const { pathToFileURL } = require('node:url');
const resolve = Module._resolveFilename;
Module._resolveFilename = function (...args) {
  const file = resolve.apply(this, args);
  if (file.startsWith('/')) appendFileSync(${JSON.stringify(log)}, pathToFileURL(file).href + '\\n');
  return file;
};\n`,
    );
    const cacheDir = path.join(dir, 'code-cache');
    const { stdout } = await run(process.execPath, ['--require', requireHook, '--import', register, entry, ...args], {
      env: { ...process.env, WEFT_CODE_CACHE: '', WEFT_CODE_CACHE_DIR: cacheDir },
    });
    const urls = (await readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean);
    // A code-cached bundle leaves its cache file: dist/bin/<name>-<key>.bin stands for dist/bin/<name>.
    const cached = (await readdir(cacheDir).catch(() => [] as string[])).map((f) => `file://${path.join(path.dirname(entry), f.replace(/-[0-9a-f]{32}\.bin$/, ''))}`);
    return { stdout, urls: [...urls, ...cached] };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('weft --help prints every command with its real term, without loading a command module', async () => {
  const { stdout, urls } = await runRecordingModules(['--help']);
  const commandModules = urls.filter((u) => /\/cli\/commands\/(?!index\.js)/.test(u));
  assert.deepEqual(commandModules, []);
  assert.ok(urls.some((u) => u.endsWith('/cli/commands/index.js')), 'the hook saw no module at all');
  for (const summary of modules.flatMap((m) => m.commands)) {
    assert.ok(stdout.includes(`  ${summary.term} `), `help lacks "${summary.term}"\n${stdout}`);
  }
  assert.match(stdout, /help \[command\]/);
});

test('weft build --help loads the build module and no other command module', async () => {
  const { stdout, urls } = await runRecordingModules(['build', '--help']);
  const commandModules = urls.filter((u) => /\/cli\/commands\/(?!index\.js)/.test(u)).map((u) => path.basename(u));
  assert.deepEqual([...new Set(commandModules)], ['build.js']);
  assert.match(stdout, /--base/);
});

test('weft --version prints the version; a typo gets a suggestion; help <command> shows the real options', async () => {
  const version = await run(process.execPath, [main, '--version']);
  const pkg = JSON.parse(await readFile(path.join(path.dirname(main), '..', '..', '..', 'package.json'), 'utf8')) as { version: string };
  assert.equal(version.stdout.trim(), pkg.version);
  assert.equal((await run(process.execPath, [main, '--help', '--version'])).stdout.trim(), pkg.version);
  const typo = await run(process.execPath, [main, 'biuld']).catch((error: { stderr: string; code: number }) => error);
  assert.notEqual((typo as { code?: number }).code ?? 0, 0);
  assert.match((typo as { stderr: string }).stderr, /Did you mean build\?/);
  const help = await run(process.execPath, [main, 'help', 'build']);
  assert.match(help.stdout, /--base/);
});

// The installed command (package.json bin) is the bundle scripts/bundle-cli.mjs writes to dist/bin.
const bundle = path.join(path.dirname(main), '..', '..', 'bin', 'weft.cjs');

test('the bundled weft (dist/bin/weft.cjs) answers --help and --version from its entry and main.cjs, the same as the compiled tree', async () => {
  const { stdout, urls } = await runRecordingModules(['--help'], bundle);
  assert.equal(stdout, (await run(process.execPath, [main, '--help'])).stdout);
  const files = urls.filter((u) => u.startsWith('file:'));
  assert.ok(files.some((u) => u.endsWith('/dist/bin/main.cjs')), files.join('\n'));
  assert.deepEqual(files.filter((u) => !u.endsWith('/dist/bin/weft.cjs') && !u.endsWith('/dist/bin/main.cjs')), []);
  assert.equal((await run(process.execPath, [bundle, '--version'])).stdout, (await run(process.execPath, [main, '--version'])).stdout);
  const pkg = JSON.parse(await readFile(path.join(path.dirname(main), '..', '..', '..', 'package.json'), 'utf8')) as { bin: { weft: string } };
  assert.equal(path.resolve(path.dirname(main), '..', '..', '..', pkg.bin.weft), path.resolve(bundle));
});

test('the bundled weft loads `weft copy` from its bundle, nothing from the compiled tree', async () => {
  const { stdout, urls } = await runRecordingModules(['copy', '--help'], bundle);
  const files = urls.filter((u) => u.startsWith('file:'));
  assert.ok(files.some((u) => u.endsWith('/dist/bin/copy.cjs')), files.join('\n'));
  assert.deepEqual(files.filter((u) => u.includes('/dist/src/')), []);
  assert.match(stdout, /--insecure-registry/);
});

test('each command module of the bundled weft loads and shows the same help as the compiled tree', async () => {
  for (const summary of modules.map((m) => m.commands[0]!)) {
    const [fromBundle, fromTree] = await Promise.all([run(process.execPath, [bundle, summary.name, '--help']), run(process.execPath, [main, summary.name, '--help'])]);
    assert.equal(fromBundle.stdout, fromTree.stdout, summary.name);
  }
});
