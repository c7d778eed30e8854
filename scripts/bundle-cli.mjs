// Bundles the weft command for start-up time (docs/benchmarks.md, "CLI start-up";
// docs/registry-client.md, "Start-up").
//
//   dist/bin/weft.cjs       the installed entry (src/cli/bin.ts): answers --version, and
//                           runs main.cjs and the .cjs command bundles through V8's code
//                           cache (src/common/code-cache.ts).
//   dist/bin/main.cjs       src/cli/main.ts, the command table and commander in one
//                           CommonJS file. `weft --help` reads it and nothing else.
//   dist/bin/<command>.cjs  the command modules of the registry client's commands (copy,
//                           inspect, login, logout: copy.ts) with everything they import,
//                           in one CommonJS file each, code-cached like main.cjs.
//   dist/bin/<command>.mjs  other command modules with everything they import (and their
//   dist/bin/chunks/        npm packages, except those listed in `external`), split
//                           where they import lazily; loaded by the entry on use.
//
// Code compiled by vm.Script (the code cache) cannot use import() on Node 20, so
// main.cjs calls __weftImport (given by weft.cjs) where its source says import(),
// and the .cjs command bundles turn their lazy imports into require().
// A command module whose code locates files relative to itself (import.meta:
// the dashboard, workers, scripts it spawns) is not bundled: the entry imports
// it from the compiled tree (dist/src/cli/commands/<name>.js), where those paths
// hold. Run after tsc (npm run build, scripts/setup); takes about a second.
// Usage: node scripts/bundle-cli.mjs
import { build } from 'esbuild';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist', 'bin');
const commandsDir = path.join(root, 'src', 'cli', 'commands');
// Native addons, and packages that load files or workers by path at run time.
// Command modules bundled as code-cached CommonJS (none of their inputs may need an ES-only package at run time).
const codeCached = new Set(['copy']);
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
      const target = codeCached.has(name) && bundled.has(name) ? `./${name}.cjs` : bundled.has(name) ? `./${name}.mjs` : `../src/cli/commands/${name}.js`;
      return { path: target, external: true };
    });
  },
};
// The installed entry: small, compiled by Node as usual (it holds the code-cache loader).
await build({
  entryPoints: [path.join(root, 'src', 'cli', 'bin.ts')],
  outfile: path.join(out, 'weft.cjs'),
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  logLevel: 'warning',
});

// main.cjs: its import() of command modules become __weftImport(), which weft.cjs passes in.
const mainBuild = await build({
  entryPoints: [path.join(root, 'src', 'cli', 'main.ts')],
  outfile: path.join(out, 'main.cjs'),
  bundle: true,
  write: false,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  plugins: [commandModules],
  logLevel: 'warning',
});
let mainText = mainBuild.outputFiles[0].text.replace(/^#!.*\n/, '').replace(/\bimport\((["'][^"']+["'])\)/g, '__weftImport($1)');
if (/\bimport\(/.test(mainText)) throw new Error('dist/bin/main.cjs would still call import(), which code compiled by vm.Script cannot do on Node 20');
writeFileSync(path.join(out, 'main.cjs'), mainText);

// The code-cached command bundles: one CommonJS file each, lazy imports as require().
const cachedNames = [...bundled].filter((n) => codeCached.has(n));
if (cachedNames.length) {
  const cachedBuild = await build({
    entryPoints: Object.fromEntries(cachedNames.map((n) => [n, path.join(commandsDir, `${n}.ts`)])),
    outdir: out,
    outExtension: { '.js': '.cjs' },
    bundle: true,
    write: false,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    supported: { 'dynamic-import': false },
    external,
    logLevel: 'warning',
  });
  for (const file of cachedBuild.outputFiles) {
    if (/\bimport\(/.test(file.text)) throw new Error(`${file.path} would still call import(), which code compiled by vm.Script cannot do on Node 20`);
    writeFileSync(file.path, file.text);
  }
}

await build({
  entryPoints: Object.fromEntries([...bundled].filter((n) => !codeCached.has(n)).map((n) => [n, path.join(commandsDir, `${n}.ts`)])),
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
  `bundled the CLI into dist/bin in ${Date.now() - started} ms: weft.cjs, main.cjs, ${[...bundled].map((n) => (codeCached.has(n) ? `${n}.cjs` : `${n}.mjs`)).join(', ')}` +
    (unbundled.length ? `; from dist/src (they use import.meta): ${unbundled.join(', ')}` : ''),
);
