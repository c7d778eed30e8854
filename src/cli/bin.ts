#!/usr/bin/env node
// The installed `weft` (package.json bin): scripts/bundle-cli.mjs bundles this
// file alone into dist/bin/weft.cjs. It answers --version itself and runs the
// CLI (main.ts, bundled to dist/bin/main.cjs) and the code-cached command
// bundles (dist/bin/<command>.cjs) through V8's code cache, so a run after the
// first one does not compile them again (docs/registry-client.md, "Start-up").
// Only meaningful as that bundle: it locates its siblings with __dirname.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { requireWithCodeCache } from '../common/code-cache.js';
import { VERSION } from './version.js';

declare const __dirname: string;

const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  process.stdout.write(`${VERSION}\n`);
} else {
  const here = __dirname;
  // Code compiled by vm.Script cannot use import() on Node 20 (it needs
  // --experimental-vm-modules): the bundles call this instead, which
  // loads a code-cached CommonJS bundle, or imports an ES module from here.
  const weftImport = (specifier: string): Promise<unknown> =>
    specifier.endsWith('.cjs') && specifier.startsWith('./')
      ? Promise.resolve().then(() => requireWithCodeCache(path.join(here, specifier)).exports)
      : import(pathToFileURL(path.resolve(here, specifier)).href);
  requireWithCodeCache(path.join(here, 'main.cjs'), { globals: { __weftImport: weftImport } });
}
