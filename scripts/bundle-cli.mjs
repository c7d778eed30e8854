// Bundles the weft command for start-up time (docs/benchmarks.md, "CLI start-up").
//
//   dist/bin/weft.cjs       the entry: src/cli/main.ts, the command table and
//                           commander in one CommonJS file. `weft --help` and
//                           `weft --version` read this file and nothing else (no
//                           ES module loader, no module resolution).
//   dist/bin/<command>.mjs  a command module with everything it imports (and its
//   dist/bin/chunks/        npm packages, except those listed in `external`), split
//                           where it imports lazily; loaded by the entry on use.
//
// A command module whose code locates files relative to itself (import.meta:
// the dashboard, workers, scripts it spawns) is not bundled: the entry imports
// it from the compiled tree (dist/src/cli/commands/<name>.js), where those paths
// hold. Run after tsc (npm run build, scripts/setup); takes about a second.
// Usage: node scripts/bundle-cli.mjs
import { build } from 'esbuild';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist', 'bin');
const commandsDir = path.join(root, 'src', 'cli', 'commands');
// Native addons, and packages that load files or workers by path at run time.
const external = ['better-sqlite3', '@kubernetes/client-node', 'pg', 'etcd3', 'pino', 'prom-client', 'commander'];
// ES modules bundled from CommonJS packages call require() for Node's built-ins.
const requireShim = 'import { createRequire as __weftCreateRequire } from "node:module"; const require = __weftCreateRequire(import.meta.url);';

// The command modules named by the table in src/cli/commands/index.ts (load: () => import('./<name>.js')).
const table = readFileSync(path.join(commandsDir, 'index.ts'), 'utf8');
const names = [...table.matchAll(/import\('\.\/([a-z-]+)\.js'\)/g)].map((m) => m[1]);
if (names.length === 0) throw new Error('no command modules found in src/cli/commands/index.ts');

/** Which command modules can be bundled: none of their inputs may use import.meta. */
async function bundleable() {
  const result = await build({
    entryPoints: names.map((n) => path.join(commandsDir, `${n}.ts`)),
    bundle: true,
    write: false,
    metafile: true,
    outdir: out,
    platform: 'node',
    format: 'esm',
    packages: 'external',
    logLevel: 'silent',
  });
  const usesMeta = new Set(Object.keys(result.metafile.inputs).filter((file) => readFileSync(path.join(root, file), 'utf8').includes('import.meta')));
  const ok = [];
  for (const [file, output] of Object.entries(result.metafile.outputs)) {
    if (!output.entryPoint) continue;
    const name = path.basename(output.entryPoint, '.ts');
    const inputs = Object.keys(output.inputs);
    if (!inputs.some((i) => usesMeta.has(i))) ok.push(name);
    void file;
  }
  return new Set(ok);
}

const started = Date.now();
const bundled = await bundleable();
rmSync(out, { recursive: true, force: true });

// The entry: each command module import in the table points at its bundle, or at the compiled tree.
const commandModules = {
  name: 'command-modules',
  setup(b) {
    b.onResolve({ filter: /^\.\/[a-z-]+\.js$/ }, (args) => {
      if (path.resolve(args.importer) !== path.join(commandsDir, 'index.ts')) return undefined;
      const name = path.basename(args.path, '.js');
      return { path: bundled.has(name) ? `./${name}.mjs` : `../src/cli/commands/${name}.js`, external: true };
    });
  },
};
await build({
  entryPoints: [path.join(root, 'src', 'cli', 'main.ts')],
  outfile: path.join(out, 'weft.cjs'),
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  plugins: [commandModules],
  logLevel: 'warning',
});

await build({
  entryPoints: Object.fromEntries([...bundled].map((n) => [n, path.join(commandsDir, `${n}.ts`)])),
  outdir: out,
  outExtension: { '.js': '.mjs' },
  chunkNames: 'chunks/[name]-[hash]',
  splitting: true,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  external,
  banner: { js: requireShim },
  logLevel: 'warning',
});
const unbundled = names.filter((n) => !bundled.has(n));
console.log(
  `bundled the CLI into dist/bin in ${Date.now() - started} ms: weft.cjs, ${[...bundled].map((n) => `${n}.mjs`).join(', ')}` +
    (unbundled.length ? `; from dist/src (they use import.meta): ${unbundled.join(', ')}` : ''),
);
