#!/usr/bin/env node
// The weft command: parses arguments and prints results. All work happens in
// the capability folders (src/image, src/registry, src/runtime, ...).
import { Command } from 'commander';
import { registerCommands } from './commands/index.js';
import { reportError } from './output.js';

const program = new Command();
program
  .name('weft')
  .description('Build JVM programs into reproducible OCI images without a daemon, push them, and run them on Kubernetes or locally')
  .version('0.1.0')
  .showHelpAfterError();

registerCommands(program, process.argv)
  .then(() => program.parseAsync(process.argv))
  .catch((error: unknown) => {
    process.exitCode = reportError(error, process.argv.includes('--json'));
  });
