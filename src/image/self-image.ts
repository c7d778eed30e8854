// `weft self-image`: weft packaged as a reproducible image, the image of every weft
// component that runs in a cluster (the registry, the master). Like `weft base jre`
// it is built offline from this machine: the Node.js runtime that runs weft now,
// the shared libraries it and the native addons need (found with ldd), weft's
// production dependencies (the non-dev packages of package-lock.json, as installed
// here) and weft's compiled code. Same inputs, same digest.
//
// Layers, least to most often changed:
//   1. os:   loader, libc, libstdc++ ..., minimal /etc, /tmp, /root
//   2. node: the node binary at /usr/local/bin/node
//   3. deps: /app/weft/node_modules (production packages only)
//   4. weft: /app/weft/package.json and the compiled code (dist, without tests and benchmarks)
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { assembleImage, buildAndWriteImage, hostArchitecture, type AssembledLayerReport } from './assemble.js';
import { hostFileEntries, minimalSystemEntries, sharedLibrariesOf } from './base-jre.js';
import type { LayerCache } from './cache.js';
import type { StaticImage } from './image.js';
import { directoryEntries, type LayerEntry } from './layer.js';
import type { ImageConfig } from './oci.js';
import type { RemoteTransport } from './transport.js';

export const WEFT_HOME_IN_IMAGE = '/app/weft';
export const NODE_IN_IMAGE = '/usr/local/bin/node';
/** Compiled trees that are not part of the product. */
const DIST_EXCLUDED = new Set(['test', 'bench']);
/** Files in dist that nothing needs at run time (types and source maps). */
const DIST_FILE_EXCLUDED = /\.(d\.ts|d\.ts\.map|js\.map)$/;

export class SelfImageError extends Error {
  override name = 'SelfImageError';
}

export type SelfImageLayerName = 'os' | 'node' | 'deps' | 'weft';

export interface SelfImageOptions {
  /** weft's installation (has package.json, package-lock.json, dist/, node_modules/). Default: the one running now. */
  root?: string;
  /** The Node.js binary to package. Default: the one running now (process.execPath). */
  node?: string;
  gzipLevel?: number;
  /** Layer cache (default: the shared LayerCache); false writes into a temp store, nothing cached. */
  layerCache?: LayerCache | false;
  onProgress?: (message: string) => void;
}

export interface SelfImagePlan {
  root: string;
  weftVersion: string;
  node: string;
  nodeVersion: string;
  /** Production packages (package-lock.json paths, e.g. node_modules/yaml). */
  packages: string[];
  /** Native addons among them (paths relative to the root). */
  nativeAddons: string[];
  libraries: string[];
  layers: Array<{ name: SelfImageLayerName; description: string; entries: LayerEntry[] }>;
  config: Pick<ImageConfig, 'architecture' | 'os'> & { config: NonNullable<ImageConfig['config']> };
  annotations: Record<string, string>;
}

/** The installation this module belongs to: dist/src/image/self-image.js is three levels below it. */
export function runningInstallation(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
}

async function readJson<T>(file: string, what: string): Promise<T> {
  const text = await fs.readFile(file, 'utf8').catch((error: Error) => {
    throw new SelfImageError(`cannot read ${what} at ${file}: ${error.message}`);
  });
  try {
    return JSON.parse(text) as T;
  } catch (error) {
    throw new SelfImageError(`${file} is not valid JSON: ${(error as Error).message}`);
  }
}

interface LockPackage {
  dev?: boolean;
  optional?: boolean;
  devOptional?: boolean;
  link?: boolean;
}

/** The production packages of a package-lock.json (v2/v3): every installed path not marked dev. */
export function productionPackages(lock: { lockfileVersion?: number; packages?: Record<string, LockPackage> }): Array<{ path: string; optional: boolean }> {
  if (!lock.packages) throw new SelfImageError('package-lock.json has no "packages" section (lockfileVersion 2 or 3 is needed: run npm install with npm 7 or newer)');
  return Object.entries(lock.packages)
    .filter(([key, info]) => key.startsWith('node_modules/') && !info.dev && !info.devOptional && !info.link)
    .map(([key, info]) => ({ path: key, optional: info.optional === true }))
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

async function exists(p: string): Promise<boolean> {
  return fs.access(p).then(
    () => true,
    () => false,
  );
}

/** Everything needed to write weft's own image; nothing is written. */
export async function planSelfImage(options: SelfImageOptions = {}): Promise<SelfImagePlan> {
  if (process.platform !== 'linux') throw new SelfImageError('weft self-image copies Linux binaries and libraries from this machine: run it on Linux');
  const arch = hostArchitecture();
  if (!arch) throw new SelfImageError(`unsupported architecture ${process.arch}`);
  const root = path.resolve(options.root ?? runningInstallation());
  const pkg = await readJson<{ name?: string; version?: string }>(path.join(root, 'package.json'), "weft's package.json");
  if (pkg.name !== 'weft') throw new SelfImageError(`${root} is not a weft installation (its package.json names "${pkg.name}")`);
  const main = path.join(root, 'dist', 'src', 'cli', 'main.js');
  if (!(await exists(main))) throw new SelfImageError(`${main} is missing: compile weft first (scripts/setup, or npx tsc -p tsconfig.json)`);
  const lock = await readJson<{ packages?: Record<string, LockPackage> }>(path.join(root, 'package-lock.json'), "weft's package-lock.json");

  const packages: string[] = [];
  const depEntries: LayerEntry[] = [];
  for (const { path: key, optional } of productionPackages(lock)) {
    const dir = path.join(root, key);
    if (!(await exists(path.join(dir, 'package.json')))) {
      if (optional) continue; // an optional dependency not installed on this platform
      throw new SelfImageError(`${key} is in package-lock.json but not installed in ${root}: run npm ci (scripts/setup does)`);
    }
    packages.push(key);
    const prefix = `${WEFT_HOME_IN_IMAGE}/${key}`;
    // Nested packages (<key>/node_modules/x) come in through their own lock entries, so a
    // dev-only package nested in a production one stays out.
    const nested = `${prefix}/node_modules`;
    for (const entry of await directoryEntries(dir, prefix, { externalSymlinks: 'copy' })) {
      const p = `/${entry.path.replace(/^\/+/, '')}`;
      if (p === nested || p.startsWith(`${nested}/`)) continue;
      depEntries.push(entry);
    }
  }
  const nativeAddons = depEntries
    .filter((e): e is LayerEntry & { type: 'file'; source: string } => e.type === 'file' && 'source' in e && e.path.endsWith('.node'))
    .map((e) => e.source);

  const node = await fs.realpath(options.node ?? process.execPath).catch((error: Error) => {
    throw new SelfImageError(`cannot read the Node.js binary ${options.node ?? process.execPath}: ${error.message}`);
  });
  const nodeVersion = options.node ? await nodeVersionOf(node) : process.version;
  const libraries = await sharedLibrariesOf([node, ...nativeAddons]);
  const libs = await hostFileEntries(libraries);

  const weftEntries: LayerEntry[] = [{ type: 'file', path: `${WEFT_HOME_IN_IMAGE}/package.json`, source: path.join(root, 'package.json') }];
  const distRoot = path.join(root, 'dist');
  for (const name of (await fs.readdir(distRoot)).sort()) {
    if (DIST_EXCLUDED.has(name)) continue;
    const full = path.join(distRoot, name);
    if (!(await fs.stat(full)).isDirectory()) continue;
    for (const entry of await directoryEntries(full, `${WEFT_HOME_IN_IMAGE}/dist/${name}`)) {
      if (entry.type === 'file' && DIST_FILE_EXCLUDED.test(entry.path)) continue;
      weftEntries.push(entry);
    }
  }

  const layers: SelfImagePlan['layers'] = [
    { name: 'os', description: `dynamic loader and ${libs.paths.length} shared-library paths from the host, minimal /etc`, entries: [...libs.entries, ...minimalSystemEntries()] },
    { name: 'node', description: `Node.js ${nodeVersion} at ${NODE_IN_IMAGE}`, entries: [{ type: 'file', path: NODE_IN_IMAGE, source: node, mode: 0o755 }] },
    { name: 'deps', description: `${packages.length} production packages at ${WEFT_HOME_IN_IMAGE}/node_modules`, entries: depEntries },
    { name: 'weft', description: `weft ${pkg.version ?? '?'} at ${WEFT_HOME_IN_IMAGE}`, entries: weftEntries },
  ];
  return {
    root,
    weftVersion: pkg.version ?? 'unknown',
    node,
    nodeVersion,
    packages,
    nativeAddons: nativeAddons.map((f) => path.relative(root, f)),
    libraries: libs.paths,
    layers,
    config: {
      architecture: arch,
      os: 'linux',
      config: {
        Entrypoint: [NODE_IN_IMAGE, `${WEFT_HOME_IN_IMAGE}/dist/src/cli/main.js`],
        // `weft` with no command prints its help; a pod's `args` (or a local run's args) name the command.
        Cmd: ['--help'],
        Env: ['PATH=/usr/local/bin:/usr/bin:/bin', 'NODE_ENV=production', 'HOME=/root'],
        WorkingDir: '/',
        Labels: { 'io.weft.version': pkg.version ?? 'unknown', 'io.weft.node-version': nodeVersion },
      },
    },
    annotations: {
      'org.opencontainers.image.title': 'weft',
      'org.opencontainers.image.description': `weft ${pkg.version ?? ''} (Node.js ${nodeVersion}): the image of weft's in-cluster components (registry, master)`,
      'org.opencontainers.image.version': pkg.version ?? 'unknown',
      'org.opencontainers.image.licenses': 'Apache-2.0',
    },
  };
}

async function nodeVersionOf(node: string): Promise<string> {
  const { execFile } = await import('node:child_process');
  return new Promise((resolve, reject) =>
    execFile(node, ['--version'], { timeout: 30_000 }, (error, stdout) =>
      error ? reject(new SelfImageError(`${node} --version failed: ${error.message}`)) : resolve(stdout.trim()),
    ),
  );
}

export type SelfImageLayerReport = AssembledLayerReport<SelfImageLayerName>;

export interface SelfImage {
  image: StaticImage;
  plan: SelfImagePlan;
  layers: SelfImageLayerReport[];
  cleanup(): Promise<void>;
}

/** Plans and writes the layers; the image is not yet written to any destination. */
export async function buildSelfImageHandle(options: SelfImageOptions = {}): Promise<SelfImage> {
  const plan = await planSelfImage(options);
  const assembled = await assembleImage({
    source: 'weft self-image',
    layers: plan.layers,
    config: plan.config,
    annotations: plan.annotations,
    gzipLevel: options.gzipLevel,
    layerCache: options.layerCache,
    onProgress: options.onProgress,
  });
  return { image: assembled.image, plan, layers: assembled.layers, cleanup: assembled.cleanup };
}

export interface SelfImageResult {
  reference: string;
  digest: string;
  weftVersion: string;
  nodeVersion: string;
  packages: number;
  nativeAddons: string[];
  libraries: string[];
  size: number;
  uncompressedSize: number;
  layers: SelfImageLayerReport[];
}

/** Builds weft's own image and writes it to `output` (oci:, docker-archive:, or docker:// with `remote`). */
export function buildSelfImage(options: SelfImageOptions & { output: string; remote?: RemoteTransport }): Promise<SelfImageResult> {
  return buildAndWriteImage(options, (m) => new SelfImageError(m), () => buildSelfImageHandle(options), ({ plan, layers }) => ({
    weftVersion: plan.weftVersion,
    nodeVersion: plan.nodeVersion,
    packages: plan.packages.length,
    nativeAddons: plan.nativeAddons,
    libraries: plan.libraries,
    layers,
  }));
}
