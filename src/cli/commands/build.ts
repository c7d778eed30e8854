// `weft build`: parses options and prints the result. The work is in src/image/build.ts.
import type { Command } from 'commander';
import { parseImageReference, type DockerReference } from '../../image/reference.js';
import { printJson, progress, dim } from '../output.js';

interface BuildFlags {
  lib: string[];
  projectLib: string[];
  projectLibPattern?: string;
  main?: string;
  base: string;
  output?: string;
  tag?: string;
  jvmFlag: string[];
  java?: string;
  arg: string[];
  platform?: string;
  json?: boolean;
  gzipLevel?: number;
  cacheDir?: string;
  cache: boolean;
  label: string[];
  annotation: string[];
  title?: string;
  imageVersion?: string;
  insecureRegistry: string[];
  spark?: boolean;
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** The registry reference of a docker:// output, whose layers the build uploads as they are ready. */
function pushTarget(output: string | undefined): DockerReference | undefined {
  if (!output) return undefined;
  const ref = parseImageReference(output);
  return ref.transport === 'docker' ? ref.ref : undefined;
}

function keyValues(list: string[], flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of list) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new Error(`${flag} ${item}: use ${flag} key=value`);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

function gzipLevel(value: string): number {
  const n = Number(value);
  if (!/^\d$/.test(value)) throw new Error(`--gzip-level ${value}: use a whole number from 0 to 9`);
  return n;
}

export function register(program: Command): void {
  program
    .command('build')
    .description('Build a JVM program (jar + dependencies, or a fat jar) into a layered, reproducible OCI image, without a daemon')
    .argument('<program.jar>', 'the program jar (thin with Class-Path/--lib dependencies, or a Spring Boot / nested-lib fat jar)')
    .option('--lib <jar-or-dir>', 'a dependency jar, or a directory of *.jar files (repeatable)', collect, [])
    .option('--project-lib <jar-or-dir>', "a jar of the project's own modules: goes into the project-dependencies layer (repeatable)", collect, [])
    .option('--project-lib-pattern <regex>', 'dependency file names matching this regular expression go into the project-dependencies layer')
    .option('--main <class>', 'main class (default: Start-Class or Main-Class from the manifest)')
    .option('--base <image>', 'base image: oci:<dir>[:<tag>], docker-archive:<file>[:<name:tag>], docker://<host>/<repo>[:<tag>] or scratch', 'scratch')
    .option('--output <dest>', 'where to write the image: oci:<dir>:<tag>, docker-archive:<file>:<name:tag> or docker://<host>/<repo>:<tag>')
    .option('--tag <tag>', 'tag for an oci: output given without one (default latest)')
    .option('--jvm-flag <flag>', 'JVM flag for the entry point (repeatable; default -XX:MaxRAMPercentage=75 unless a heap flag is given)', collect, [])
    .option('--java <path>', 'java executable in the image (default $JAVA_HOME/bin/java of the base, else java on PATH)')
    .option('--arg <arg>', 'program argument baked into the image Cmd (repeatable)', collect, [])
    .option('--platform <os/arch>', 'platform of the image and of the base to pick (default: the base, or this machine)')
    .option('--gzip-level <n>', 'gzip level 0-9 of the layers (default 1; jars are already deflated, see docs/image.md)', gzipLevel)
    .option('--cache-dir <dir>', 'layer cache directory (default $WEFT_CACHE_DIR or ${XDG_CACHE_HOME:-~/.cache}/weft/layers)')
    .option('--no-cache', 'rebuild every layer (the results still go into the cache)')
    .option('--label <key=value>', 'image config label (repeatable)', collect, [])
    .option('--annotation <key=value>', 'manifest annotation (repeatable)', collect, [])
    .option('--title <title>', 'org.opencontainers.image.title (default: the jar name)')
    .option('--image-version <version>', 'org.opencontainers.image.version')
    .option('--insecure-registry <host>', 'registry host to reach over plain HTTP (repeatable; loopback always may)', collect, [])
    .option('--spark', "a Spark program (runnables of kind spark): weft's Spark launcher is the entry point, with the JVM flags Spark needs; without --base, a JRE with the modules Spark needs (see docs/spark.md)")
    .option('--json', 'print the manifest digest and every layer as JSON')
    .action(async (jar: string, opts: BuildFlags) => {
      if (opts.spark && opts.main) throw new Error("--spark and --main: a Spark image's entry point is weft's launcher; give the program's main class as spark.mainClass in the weft.yaml");
      let output = opts.output;
      if (output) {
        const ref = parseImageReference(output); // fail on a bad destination before building
        if (ref.transport === 'oci' && !ref.tag) output = `oci:${ref.dir}:${opts.tag ?? 'latest'}`;
        parseImageReference(output); // checks a --tag given separately too
      }
      const needsRemote = opts.base.startsWith('docker://') || output?.startsWith('docker://');
      // Loaded only when needed, so local builds never depend on the network code.
      const remote = needsRemote
        ? (await import('../../registry/client/index.js')).createRemoteTransport({ insecureRegistries: opts.insecureRegistry })
        : undefined;
      // Loaded on use so that `weft --help` and other commands start fast.
      const [{ buildJvmImage }, { writeImage }] = await Promise.all([import('../../image/build.js'), import('../../image/images.js')]);
      let cleanup = async (): Promise<void> => undefined;
      const build = async (options: Parameters<typeof buildJvmImage>[0]) => {
        if (!opts.spark) return buildJvmImage(options);
        const { buildSparkImage } = await import('../../runtime/spark/image.js');
        const spark = await buildSparkImage({ ...options, base: opts.base === 'scratch' ? undefined : options.base });
        cleanup = spark.cleanup;
        return spark.result;
      };
      const result = await build({
        program: jar,
        libs: opts.lib,
        projectLibs: opts.projectLib,
        projectLibPattern: opts.projectLibPattern,
        main: opts.main,
        base: opts.base,
        remote,
        pushTo: pushTarget(output),
        platform: opts.platform,
        jvmFlags: opts.jvmFlag,
        java: opts.java,
        args: opts.arg,
        gzipLevel: opts.gzipLevel,
        cacheDir: opts.cacheDir,
        noCache: !opts.cache,
        labels: keyValues(opts.label, '--label'),
        annotations: keyValues(opts.annotation, '--annotation'),
        title: opts.title,
        version: opts.imageVersion,
        onProgress: opts.json ? undefined : (line) => progress(dim(line)),
      });
      for (const warning of result.warnings) progress(`warning: ${warning}`);
      let written: { digest: string; reference: string } | undefined;
      try {
        if (output) {
          if (!opts.json) progress(dim(`writing ${output}`));
          written = await writeImage(result.image, output, { remote });
        }
      } finally {
        await cleanup();
      }
      if (opts.json) {
        printJson({
          digest: result.manifestDigest,
          output: written?.reference ?? null,
          mainClass: result.mainClass,
          fatJar: result.fatJar,
          base: result.base,
          entrypoint: result.entrypoint,
          layers: result.layers,
          warnings: result.warnings,
        });
      } else {
        process.stdout.write(`${result.manifestDigest}\n`);
      }
    });
}
