// A weft entry point that registers only the copy/inspect/login commands. Since
// src/cli/main.ts loads only the module of the command it runs, this is a
// control in bench/push-pull.ts: `weft copy` should cost the same through it.
import { Command } from 'commander';
import { register } from '../src/cli/commands/copy.js';
import { reportError } from '../src/cli/output.js';

const program = new Command().name('weft');
register(program);
program.parseAsync(process.argv).catch((error: unknown) => {
  process.exitCode = reportError(error, process.argv.includes('--json'));
});
