#!/usr/bin/env node
// The weft command: parses arguments and prints results. All work happens in
// the capability folders (src/image, src/registry, src/runtime, ...).
import { reportError } from './output.js';
import { VERSION } from './version.js';
const args = process.argv.slice(2);

// `weft --version` alone is answered before commander is loaded: importing
// commander is most of what start-up costs beyond Node itself (docs/benchmarks.md).
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  process.stdout.write(`${VERSION}\n`);
} else {
  const json = process.argv.includes('--json');
  Promise.all([import('commander'), import('./commands/index.js')])
    .then(async ([{ Command }, { registerCommands }]) => {
      const program = new Command();
      program
        .name('weft')
        .description('Build JVM programs into reproducible OCI images without a daemon, push them, and run them on Kubernetes or locally')
        .version(VERSION)
        .showHelpAfterError();
      await registerCommands(program, process.argv);
      await program.parseAsync(process.argv);
    })
    .catch((error: unknown) => {
      process.exitCode = reportError(error, json);
    });
}
