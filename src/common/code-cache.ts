// Loads a CommonJS bundle through V8's code cache, so a second `weft` run does
// not compile again what the first one compiled (docs/registry-client.md,
// "Start-up"). Node 20 has no module compile cache (module.enableCompileCache
// is Node 22+), and its start-up snapshot needs a flag on node's command line,
// which an npm `bin` cannot pass; vm.Script's cachedData needs neither.
//
// The cache is only ever an optimisation: a missing, unreadable, corrupt or
// stale file is ignored (and replaced), and a cache directory that cannot be
// written costs only the compile. Each cache file is
//   magic (8 bytes) | SHA-256 of the payload (32 bytes) | payload (V8's data)
// and is named after the SHA-256 of the bundle's source, Node's version and
// the architecture, so a rebuilt bundle or another Node never reads it; the
// payload hash is checked before V8 sees the bytes (V8's own checks are not
// meant to catch arbitrary corruption). Files are written to a unique
// temporary name and renamed, so concurrent first runs never see half a file.
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { Script } from 'node:vm';

const magic = Buffer.from('weftcc01');
const headerBytes = magic.length + 32;
/** Files already run in this process (like require's cache). */
const loaded = new Map<string, unknown>();

/** $WEFT_CODE_CACHE_DIR, else $XDG_CACHE_HOME/weft/code-cache (default ~/.cache/weft/code-cache); undefined when WEFT_CODE_CACHE=0. */
export function codeCacheDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.WEFT_CODE_CACHE === '0') return undefined;
  if (env.WEFT_CODE_CACHE_DIR) return env.WEFT_CODE_CACHE_DIR;
  let home = env.HOME;
  try {
    home ||= os.homedir();
  } catch {
    return undefined; // no home directory (a user without a passwd entry): no cache
  }
  return path.join(env.XDG_CACHE_HOME || path.join(home, '.cache'), 'weft', 'code-cache');
}

/** The cache file for this source: <dir>/<bundle name>-<hash of source, node version, arch>.bin */
export function codeCacheFile(dir: string, file: string, source: string): string {
  const key = createHash('sha256').update(source).update('\0').update(process.version).update('\0').update(process.arch).digest('hex').slice(0, 32);
  return path.join(dir, `${path.basename(file).replace(/[^A-Za-z0-9._-]/g, '_')}-${key}.bin`);
}

/** The V8 payload of a cache file, or undefined if it is missing, truncated or corrupt. */
export function readCodeCache(cacheFile: string): Buffer | undefined {
  let bytes: Buffer;
  try {
    bytes = readFileSync(cacheFile);
  } catch {
    return undefined;
  }
  if (bytes.length <= headerBytes || !bytes.subarray(0, magic.length).equals(magic)) return undefined;
  const payload = bytes.subarray(headerBytes);
  const sum = createHash('sha256').update(payload).digest();
  return sum.equals(bytes.subarray(magic.length, headerBytes)) ? payload : undefined;
}

/**
 * Writes a cache file atomically and removes the files of earlier builds of the
 * same bundle (same name, another key), so rebuilds do not pile up; any failure
 * (read-only directory, full disk) is ignored.
 */
export function writeCodeCache(cacheFile: string, payload: Buffer): void {
  const tmp = `${cacheFile}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  try {
    mkdirSync(path.dirname(cacheFile), { recursive: true });
    writeFileSync(tmp, Buffer.concat([magic, createHash('sha256').update(payload).digest(), payload]));
    renameSync(tmp, cacheFile);
    const name = path.basename(cacheFile);
    const bundle = name.replace(/-[0-9a-f]{32}\.bin$/, '');
    for (const other of readdirSync(path.dirname(cacheFile))) {
      if (other !== name && other.startsWith(`${bundle}-`) && /^-[0-9a-f]{32}\.bin$/.test(other.slice(bundle.length))) {
        try {
          unlinkSync(path.join(path.dirname(cacheFile), other));
        } catch {
          /* another process removed it first */
        }
      }
    }
  } catch {
    try {
      unlinkSync(tmp);
    } catch {
      /* nothing was written */
    }
  }
}

export interface CachedLoad {
  exports: unknown;
  /** 'hit' (V8 took the cache), 'rejected' (a file was there but unusable), 'miss' (none, or caching off). */
  cache: 'hit' | 'rejected' | 'miss';
}

/**
 * Runs a CommonJS file like require() would (once per process), compiling it
 * with the code cache from `dir` (default codeCacheDir(); undefined: no cache).
 * `globals` are passed to the file as extra wrapper parameters. Without a usable cache the code V8 compiled
 * while the process ran (the functions it actually used, not only the top
 * level) is written when the process exits; so is a bigger one over a cache
 * that a short run made.
 */
export function requireWithCodeCache(file: string, options: { dir?: string; globals?: Record<string, unknown> } = {}): CachedLoad {
  const done = loaded.get(file);
  if (done) return { exports: done, cache: 'hit' };
  const dir = 'dir' in options ? options.dir : codeCacheDir();
  const globals = Object.entries(options.globals ?? {});
  const source = readFileSync(file, 'utf8').replace(/^#!.*/, '');
  const cacheFile = dir ? codeCacheFile(dir, file, source) : undefined;
  const cachedData = cacheFile ? readCodeCache(cacheFile) : undefined;
  // Node's own CommonJS wrapper (module.wrap), with the extra names as further parameters.
  const parameters = ['exports', 'require', 'module', '__filename', '__dirname', ...globals.map(([name]) => name)].join(', ');
  const wrapped = `(function (${parameters}) { ${source}\n});`;
  const script = new Script(wrapped, { filename: file, cachedData });
  const cache = cachedData === undefined ? 'miss' : script.cachedDataRejected ? 'rejected' : 'hit';
  if (cacheFile) {
    // A cache made by a short run (`weft copy --help`) holds little beyond the top level; one
    // whose payload is small against the source is re-made if this run compiled much more.
    const small = cachedData !== undefined && cachedData.length * 3 < source.length;
    if (cache !== 'hit' || small) {
      process.once('exit', () => {
        let payload: Buffer;
        try {
          payload = script.createCachedData();
        } catch {
          return;
        }
        if (cache !== 'hit' || payload.length * 4 > cachedData!.length * 5) writeCodeCache(cacheFile, payload);
      });
    }
  }
  const module = { exports: {} as unknown, filename: file, id: file, loaded: false };
  const run = script.runInThisContext() as (...args: unknown[]) => void;
  run.call(module.exports, module.exports, createRequire(file), module, file, path.dirname(file), ...globals.map(([, value]) => value));
  module.loaded = true;
  loaded.set(file, module.exports);
  return { exports: module.exports, cache };
}
