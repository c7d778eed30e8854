// The CLI's start-up path: `weft --help` and `weft --version` are answered from
// the command table without loading any command module, and that table must
// say what the modules really register.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
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

/** Runs the CLI with a module hook that records every module URL it loads. */
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
    const { stdout } = await run(process.execPath, ['--import', register, entry, ...args]);
    const urls = (await readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean);
    return { stdout, urls };
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

test('the bundled weft (dist/bin/weft.cjs) answers --help and --version from its one file, the same as the compiled tree', async () => {
  const { stdout, urls } = await runRecordingModules(['--help'], bundle);
  assert.equal(stdout, (await run(process.execPath, [main, '--help'])).stdout);
  assert.deepEqual(urls.filter((u) => u.startsWith('file:') && !u.endsWith('/dist/bin/weft.cjs')), []);
  assert.equal((await run(process.execPath, [bundle, '--version'])).stdout, (await run(process.execPath, [main, '--version'])).stdout);
  const pkg = JSON.parse(await readFile(path.join(path.dirname(main), '..', '..', '..', 'package.json'), 'utf8')) as { bin: { weft: string } };
  assert.equal(path.resolve(path.dirname(main), '..', '..', '..', pkg.bin.weft), path.resolve(bundle));
});

test('the bundled weft loads `weft copy` from its bundle, nothing from the compiled tree', async () => {
  const { stdout, urls } = await runRecordingModules(['copy', '--help'], bundle);
  const files = urls.filter((u) => u.startsWith('file:'));
  assert.ok(files.some((u) => u.endsWith('/dist/bin/copy.mjs')), files.join('\n'));
  assert.deepEqual(files.filter((u) => u.includes('/dist/src/')), []);
  assert.match(stdout, /--insecure-registry/);
});

test('each command module of the bundled weft loads and shows the same help as the compiled tree', async () => {
  for (const summary of modules.map((m) => m.commands[0]!)) {
    const [fromBundle, fromTree] = await Promise.all([run(process.execPath, [bundle, summary.name, '--help']), run(process.execPath, [main, summary.name, '--help'])]);
    assert.equal(fromBundle.stdout, fromTree.stdout, summary.name);
  }
});
