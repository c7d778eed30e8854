// `weft base jre` and `weft self-image`: parse options, print the result. The work is in
// src/image/base-jre.ts and src/image/self-image.ts.
import { InvalidArgumentError, type Command } from 'commander';
import { DEFAULT_GZIP_LEVEL } from '../../image/layer.js';
import { printJson, progress } from '../output.js';

export function register(program: Command): void {
  const base = program.command('base').description('Build base images');
  base
    .command('jre')
    .description('Build a small Java runtime base image from the local JDK (jlink + the shared libraries it needs), offline')
    .requiredOption('--output <dest>', 'where to write it: oci:<dir>:<tag>, docker-archive:<file>:<name:tag> or docker://<host>/<repo>:<tag>')
    .option('--jdk <path>', 'JDK home with bin/jlink and jmods/ (default: $JAVA_HOME, else the JDK of jlink on PATH)')
    .option('--modules <list>', 'comma-separated modules to include (default: a small server-side set, see docs/base-images.md)')
    .option('--preset <name>', 'add what a kind of program needs: spark (the modules java.desktop, jdk.management, java.security.jgss, jdk.security.auth, java.instrument, and the host libraries of the native code in its jars)')
    .option('--add-jars <dir>', 'bake the *.jar files of this directory into /app/libs (common dependencies)')
    .option('--gzip-level <n>', `gzip level 0-9 for the layers (default ${DEFAULT_GZIP_LEVEL})`, gzipLevel)
    .option('--no-cache', 'do not reuse a cached jlink runtime or cached layers')
    .option('--json', 'print a JSON description instead of the digest')
    .action(async (opts: { output: string; jdk?: string; modules?: string; preset?: string; addJars?: string; gzipLevel?: number; cache: boolean; json?: boolean }) => {
      if (opts.preset !== undefined && opts.preset !== 'spark') throw new InvalidArgumentError(`unknown preset "${opts.preset}": the presets are spark`);
      // Loaded on use so that `weft --help` and other commands start fast.
      const { buildJreBase, DEFAULT_JRE_MODULES } = await import('../../image/base-jre.js');
      let modules = opts.modules?.split(',');
      let hostLibraries: string[] | undefined;
      if (opts.preset === 'spark') ({ modules, hostLibraries } = (await import('../../runtime/spark/image.js')).sparkJrePreset(modules ?? DEFAULT_JRE_MODULES));
      const { createRemoteTransport } = await import('../../registry/client/index.js');
      const result = await buildJreBase({
        output: opts.output,
        jdk: opts.jdk,
        modules,
        hostLibraries,
        addJars: opts.addJars,
        gzipLevel: opts.gzipLevel,
        cache: opts.cache,
        remote: opts.output.startsWith('docker://') ? createRemoteTransport() : undefined,
        onProgress: opts.json ? undefined : (line) => progress(line),
      });
      if (opts.json) {
        printJson(result);
      } else {
        progress(`wrote ${result.reference} (Java ${result.javaVersion}, ${result.layers.length} layers, ${result.size} bytes compressed)`);
        process.stdout.write(`${result.digest}\n`);
      }
    });

  program
    .command('self-image')
    .description("Package this weft (its Node.js runtime, production dependencies and compiled code) as a reproducible image: the image of weft's in-cluster components")
    .requiredOption('--output <dest>', 'where to write it: oci:<dir>:<tag>, docker-archive:<file>:<name:tag> or docker://<host>/<repo>:<tag>')
    .option('--gzip-level <n>', `gzip level 0-9 for the layers (default ${DEFAULT_GZIP_LEVEL})`, gzipLevel)
    .option('--no-cache', 'rewrite every layer instead of reusing cached ones')
    .option('--json', 'print a JSON description instead of the digest')
    .action(async (opts: { output: string; gzipLevel?: number; cache: boolean; json?: boolean }) => {
      const { buildSelfImage } = await import('../../image/self-image.js');
      const { createRemoteTransport } = await import('../../registry/client/index.js');
      const result = await buildSelfImage({
        output: opts.output,
        gzipLevel: opts.gzipLevel,
        layerCache: opts.cache ? undefined : false,
        remote: opts.output.startsWith('docker://') ? createRemoteTransport() : undefined,
        onProgress: opts.json ? undefined : (line) => progress(line),
      });
      if (opts.json) {
        printJson(result);
      } else {
        progress(`wrote ${result.reference} (weft ${result.weftVersion}, Node.js ${result.nodeVersion}, ${result.packages} packages, ${result.size} bytes compressed)`);
        process.stdout.write(`${result.digest}\n`);
      }
    });
}

function gzipLevel(v: string): number {
  if (!/^[0-9]$/.test(v)) throw new InvalidArgumentError('give a whole number from 0 to 9');
  return Number(v);
}
