// A weft entry point that registers only the copy/inspect/login commands: what
// `weft copy` costs when the CLI loads command modules lazily. Used by
// bench/push-pull.ts to separate CLI start-up from transfer time.
import { Command } from 'commander';
import { register } from '../src/cli/commands/copy.js';
import { reportError } from '../src/cli/output.js';

const program = new Command().name('weft');
register(program);
program.parseAsync(process.argv).catch((error: unknown) => {
  process.exitCode = reportError(error, process.argv.includes('--json'));
});
