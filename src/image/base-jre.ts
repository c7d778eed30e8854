// `weft base jre`: a small Java runtime base image built offline from the local
// JDK. jlink makes the runtime (only the modules asked for), `ldd` finds the
// host shared libraries it needs (copied with their symlink chains, plus the
// dynamic loader), and a minimal /etc makes user and host lookups work. Common
// dependency jars can be baked into /app/libs so application images built on
// top only carry what changes. See docs/base-images.md.
//
// Layers, least to most often changed:
//   1. os:   loader, libc, libz, libstdc++ ..., /etc/{passwd,group,nsswitch.conf}, /tmp, /root
//   2. jre:  /opt/java (the jlink image)
//   3. libs: /app/libs/*.jar (only with --add-jars)
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { assembleImage, buildAndWriteImage, hostArchitecture, type AssembledLayerReport } from './assemble.js';
import type { LayerCache } from './cache.js';
import type { StaticImage } from './image.js';
import type { RemoteTransport } from './transport.js';
import type { ImageConfig } from './oci.js';
import { directoryEntries, type LayerEntry } from './layer.js';

const run = promisify(execFile);

/** Modules of the default runtime. Chosen to run typical server-side libraries, and nothing with native GUI dependencies. */
export const DEFAULT_JRE_MODULES: readonly string[] = [
  'java.base', // the language and core APIs
  'java.logging', // java.util.logging, used by many libraries
  'java.management', // JMX, memory/thread MXBeans (metrics libraries)
  'java.naming', // JNDI (and LDAP/DNS lookups many frameworks touch)
  'java.net.http', // java.net.http.HttpClient
  'java.sql', // JDBC API (pulls java.xml and java.transaction.xa)
  'java.xml', // DOM/SAX/StAX parsers
  'jdk.crypto.ec', // elliptic-curve TLS cipher suites (needed for most HTTPS servers)
  'jdk.unsupported', // sun.misc.Unsafe, used by guava, netty, protobuf ...
  'jdk.zipfs', // zip file system provider (nested-jar readers)
];

/** Where things live inside the image. */
export const JRE_HOME_IN_IMAGE = '/opt/java';
export const JRE_LIBS_IN_IMAGE = '/app/libs';
const IMAGE_PATH = `${JRE_HOME_IN_IMAGE}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`;

export class JreBaseError extends Error {
  override name = 'JreBaseError';
}

export interface JreBaseOptions {
  /** JDK home (has bin/jlink and jmods/). Default: $JAVA_HOME, else the JDK of `jlink` on PATH. */
  jdk?: string;
  /** Modules to include (their dependencies are added by jlink). Default DEFAULT_JRE_MODULES. */
  modules?: readonly string[];
  /** A directory of jars to bake into /app/libs. */
  addJars?: string;
  /**
   * Shared libraries (sonames, like libstdc++.so.6) to copy from the host beside those the JRE
   * needs, with what they need: for native code that programs bring in their jars.
   */
  hostLibraries?: readonly string[];
  /** Reuse an earlier jlink output with the same inputs (default true). */
  cache?: boolean;
  /** Cache folder (default ${XDG_CACHE_HOME:-~/.cache}/weft/jlink). */
  cacheDir?: string;
  /** Progress messages (stderr in the CLI). */
  onProgress?: (message: string) => void;
}

export interface JreBaseLayerPlan {
  name: 'os' | 'jre' | 'libs';
  description: string;
  entries: LayerEntry[];
}

export interface JreBasePlan {
  jdk: string;
  javaVersion: string;
  /** Modules asked for (jlink resolves their dependencies). */
  modules: string[];
  /** Modules actually in the runtime (from its `release` file). */
  resolvedModules: string[];
  /** Host shared libraries copied into the image (image paths, symlinks included). */
  libraries: string[];
  /** Jars baked into /app/libs (file names). */
  jars: string[];
  /** The jlink output directory (in the cache, or a temp dir removed by cleanup()). */
  runtimeDir: string;
  cached: boolean;
  layers: JreBaseLayerPlan[];
  /** Image config without rootfs/history (the writer fills those). */
  config: Pick<ImageConfig, 'architecture' | 'os'> & { config: NonNullable<ImageConfig['config']> };
  annotations: Record<string, string>;
  /** Removes temporary files (not the cache). */
  cleanup(): Promise<void>;
}

const exists = (p: string): Promise<boolean> =>
  fs.access(p).then(
    () => true,
    () => false,
  );

/** Finds the JDK: explicit path, $JAVA_HOME, or the home of `jlink` on PATH. */
export async function findJdk(explicit?: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const candidates: Array<{ dir: string; origin: string }> = [];
  if (explicit) candidates.push({ dir: explicit, origin: '--jdk' });
  else {
    if (env.JAVA_HOME) candidates.push({ dir: env.JAVA_HOME, origin: '$JAVA_HOME' });
    for (const dir of (env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
      const jlink = path.join(dir, 'jlink');
      if (await exists(jlink)) {
        candidates.push({ dir: path.dirname(path.dirname(await fs.realpath(jlink))), origin: `jlink on PATH (${jlink})` });
        break;
      }
    }
  }
  if (candidates.length === 0) {
    throw new JreBaseError('no JDK found: install one (Debian: default-jdk-headless), set JAVA_HOME, or pass --jdk <path>');
  }
  for (const { dir, origin } of candidates) {
    const home = path.resolve(dir);
    const jlink = path.join(home, 'bin', 'jlink');
    const jmods = path.join(home, 'jmods');
    if (!(await exists(jlink))) {
      if (explicit) throw new JreBaseError(`${home} (from ${origin}) is not a JDK: it has no bin/jlink. Pass the JDK home, e.g. /usr/lib/jvm/java-17-openjdk-amd64`);
      continue;
    }
    if (!(await exists(path.join(jmods, 'java.base.jmod')))) {
      throw new JreBaseError(
        `the JDK at ${home} (from ${origin}) has no jmods/java.base.jmod, which jlink needs: install the jmods (Debian: openjdk-NN-jmods or the full default-jdk-headless) or pass another --jdk`,
      );
    }
    return home;
  }
  throw new JreBaseError(`no usable JDK in ${candidates.map((c) => c.origin).join(', ')}: set JAVA_HOME or pass --jdk <path>`);
}

/** Reads a JDK or runtime `release` file into a map. */
export async function readRelease(home: string): Promise<Record<string, string>> {
  const text = await fs.readFile(path.join(home, 'release'), 'utf8').catch(() => '');
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z_]+)="?(.*?)"?$/.exec(line.trim());
    if (m) out[m[1]] = m[2];
  }
  return out;
}

function featureVersion(javaVersion: string): number {
  const n = Number.parseInt(javaVersion.split(/[.+-]/)[0] ?? '', 10);
  return Number.isFinite(n) ? n : 0;
}

/** jlink flags for a small, reproducible runtime. */
export function jlinkFlags(javaVersion: string): string[] {
  // --compress=2 (zip) was renamed zip-6 in JDK 21 and the old spelling is deprecated.
  const compress = featureVersion(javaVersion) >= 21 ? '--compress=zip-6' : '--compress=2';
  return ['--strip-debug', '--no-header-files', '--no-man-pages', compress];
}

function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'weft', 'jlink');
}

async function listJmods(jdk: string): Promise<Set<string>> {
  const names = await fs.readdir(path.join(jdk, 'jmods'));
  return new Set(names.filter((n) => n.endsWith('.jmod')).map((n) => n.slice(0, -'.jmod'.length)));
}

async function validateModules(jdk: string, requested: readonly string[] | undefined): Promise<string[]> {
  const available = await listJmods(jdk);
  if (!requested) {
    // Defaults that a newer JDK folded into java.base (e.g. jdk.crypto.ec in 24) are simply left out.
    return DEFAULT_JRE_MODULES.filter((m) => available.has(m));
  }
  const modules = [...new Set(requested.map((m) => m.trim()).filter(Boolean))];
  if (modules.length === 0) throw new JreBaseError('--modules is empty: name at least one module, e.g. java.base');
  const missing = modules.filter((m) => !available.has(m));
  if (missing.length) {
    throw new JreBaseError(
      `module${missing.length > 1 ? 's' : ''} ${missing.join(', ')} not in ${path.join(jdk, 'jmods')}: check the spelling (\`java --list-modules\` lists them)`,
    );
  }
  return modules.sort();
}

/** sha256 over everything that decides jlink's output. */
async function jlinkKey(jdk: string, modules: readonly string[], flags: readonly string[]): Promise<string> {
  const hash = createHash('sha256');
  hash.update(JSON.stringify({ v: 1, jdk, modules, flags }));
  hash.update(await fs.readFile(path.join(jdk, 'release')).catch(() => Buffer.alloc(0)));
  const jmodsDir = path.join(jdk, 'jmods');
  for (const name of (await fs.readdir(jmodsDir)).sort()) {
    const stat = await fs.stat(path.join(jmodsDir, name));
    hash.update(`\n${name}\0${stat.size}\0${stat.mtimeMs}`);
  }
  return hash.digest('hex').slice(0, 32);
}

/** Runs jlink into `dest` (which must not exist). */
async function jlink(jdk: string, modules: readonly string[], flags: readonly string[], dest: string): Promise<void> {
  const args = ['--module-path', path.join(jdk, 'jmods'), '--add-modules', modules.join(','), ...flags, '--output', dest];
  try {
    await run(path.join(jdk, 'bin', 'jlink'), args, { maxBuffer: 16 * 1024 * 1024 });
  } catch (error) {
    const e = error as { stderr?: string; stdout?: string; message: string };
    const detail = `${e.stdout ?? ''}${e.stderr ?? ''}`.trim() || e.message;
    throw new JreBaseError(`jlink failed: ${detail}`);
  }
}

/** The jlink output for these inputs: from the cache, or made now (atomically placed into the cache). */
async function runtimeImage(
  jdk: string,
  modules: readonly string[],
  flags: readonly string[],
  options: JreBaseOptions,
  temps: string[],
): Promise<{ dir: string; cached: boolean }> {
  const useCache = options.cache !== false;
  if (!useCache) {
    const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-jlink-'));
    temps.push(tmp);
    const dir = path.join(tmp, 'jre');
    options.onProgress?.(`jlink ${modules.join(',')}`);
    await jlink(jdk, modules, flags, dir);
    return { dir, cached: false };
  }
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const key = await jlinkKey(jdk, modules, flags);
  const dir = path.join(cacheDir, key);
  if (await exists(path.join(dir, 'release'))) return { dir, cached: true };
  await fs.mkdir(cacheDir, { recursive: true });
  const tmp = await fs.mkdtemp(path.join(cacheDir, `.${key}.tmp-`));
  try {
    options.onProgress?.(`jlink ${modules.join(',')}`);
    await jlink(jdk, modules, flags, path.join(tmp, 'jre'));
    try {
      await fs.rename(path.join(tmp, 'jre'), dir);
    } catch (error) {
      // Another build placed the same runtime first: use theirs.
      if (!(await exists(path.join(dir, 'release')))) throw error;
    }
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
  return { dir, cached: false };
}

async function walkFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const entry of await fs.readdir(d, { withFileTypes: true })) {
      const full = path.join(d, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (entry.isFile()) out.push(full);
    }
  };
  await walk(dir);
  return out.sort();
}

async function isElf(file: string): Promise<boolean> {
  const handle = await fs.open(file, 'r');
  try {
    const buf = Buffer.alloc(4);
    const { bytesRead } = await handle.read(buf, 0, 4, 0);
    return bytesRead === 4 && buf.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
  } finally {
    await handle.close();
  }
}

/** Host paths of the shared libraries the runtime's ELF files need (outside the runtime itself), via ldd. */
export async function sharedLibraries(runtimeDir: string): Promise<string[]> {
  const elves = await elfFilesIn(runtimeDir);
  // The runtime's libraries find each other at run time (libjli loads lib/server/libjvm.so by
  // path); tell ldd where they are so it reports only what must come from the host.
  const ownDirs = [...new Set(elves.filter((f) => f.endsWith('.so')).map((f) => path.dirname(f)))];
  return sharedLibrariesOf(elves, { libraryPath: ownDirs, exclude: await fs.realpath(runtimeDir) });
}

/** Host paths of shared libraries by soname, from the dynamic linker's cache (ldconfig -p). */
export async function resolveSonames(sonames: readonly string[]): Promise<string[]> {
  if (sonames.length === 0) return [];
  let stdout: string;
  try {
    ({ stdout } = await run('ldconfig', ['-p'], { maxBuffer: 16 * 1024 * 1024 }));
  } catch (error) {
    throw new JreBaseError(`ldconfig -p failed, so the host libraries ${sonames.join(', ')} cannot be found: ${(error as Error).message}`);
  }
  const arch = process.arch === 'x64' ? 'x86-64' : process.arch === 'arm64' ? 'AArch64' : '';
  const paths: string[] = [];
  const missing: string[] = [];
  for (const soname of sonames) {
    // Lines like "\tlibstdc++.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libstdc++.so.6".
    const hits = stdout
      .split('\n')
      .map((l) => /^\s*(\S+) \(([^)]*)\) => (\S+)$/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null && m[1] === soname);
    const hit = hits.find((m) => !arch || m[2].includes(arch)) ?? hits[0];
    if (hit) paths.push(hit[3]);
    else missing.push(soname);
  }
  if (missing.length) throw new JreBaseError(`shared libraries not on this machine: ${missing.join(', ')}; install them and retry`);
  return paths;
}

/** The ELF files under a directory (sorted). */
export async function elfFilesIn(dir: string): Promise<string[]> {
  const elves: string[] = [];
  for (const file of await walkFiles(dir)) if (await isElf(file)) elves.push(file);
  return elves;
}

/**
 * Host paths of the shared libraries some ELF files need, via ldd. `libraryPath` is searched
 * first (LD_LIBRARY_PATH); libraries under `exclude` (the files' own tree) are left out.
 */
export async function sharedLibrariesOf(elves: readonly string[], options: { libraryPath?: string[]; exclude?: string } = {}): Promise<string[]> {
  const found = new Set<string>();
  const missing: string[] = [];
  const env = options.libraryPath?.length ? { ...process.env, LD_LIBRARY_PATH: options.libraryPath.join(':') } : process.env;
  const root = options.exclude;
  for (const elf of elves) {
    let stdout: string;
    try {
      ({ stdout } = await run('ldd', [elf], { maxBuffer: 4 * 1024 * 1024, env }));
    } catch (error) {
      const e = error as { code?: string; stdout?: string; stderr?: string; message: string };
      if (e.code === 'ENOENT') throw new JreBaseError('ldd not found: install libc-bin (it comes with every Debian system)');
      // "not a dynamic executable" for static files: nothing to copy.
      if (/not a dynamic executable|statically linked/.test(`${e.stdout ?? ''}${e.stderr ?? ''}`)) continue;
      throw new JreBaseError(`ldd ${elf} failed: ${(e.stderr ?? e.message).trim()}`);
    }
    for (const line of stdout.split('\n')) {
      const text = line.trim();
      if (!text || text.startsWith('linux-vdso') || text.includes('statically linked')) continue;
      const notFound = /^(\S+) => not found/.exec(text);
      if (notFound) {
        missing.push(`${notFound[1]} (needed by ${root ? path.relative(root, elf) : elf})`);
        continue;
      }
      const m = /=>\s+(\/\S+)\s+\(/.exec(text) ?? /^(\/\S+)\s+\(/.exec(text);
      if (!m) continue;
      const lib = path.normalize(m[1]);
      const real = await fs.realpath(lib).catch(() => lib);
      if (root && (real === root || real.startsWith(root + path.sep))) continue; // the tree's own libraries
      found.add(lib);
    }
  }
  if (missing.length) {
    throw new JreBaseError(`shared libraries needed are missing on this machine: ${[...new Set(missing)].join(', ')}; install them and retry`);
  }
  return [...found].sort();
}

/**
 * Layer entries for host files at the same paths in the image, following each
 * symlink chain (every link is kept as a link, and its target is added too).
 */
export async function hostFileEntries(files: readonly string[]): Promise<{ entries: LayerEntry[]; paths: string[] }> {
  const entries = new Map<string, LayerEntry>();
  // `chain` holds the links followed to get here: meeting one again is a loop.
  const add = async (file: string, chain: readonly string[]): Promise<void> => {
    const p = path.normalize(file);
    if (chain.includes(p) || chain.length > 40) {
      throw new JreBaseError(`too many levels of symlinks (a loop?) at ${[...chain, p].join(' -> ')}`);
    }
    if (entries.has(p)) return;
    const stat = await fs.lstat(p).catch((error: Error) => {
      throw new JreBaseError(`cannot read ${p}: ${error.message}`);
    });
    if (stat.isSymbolicLink()) {
      const target = await fs.readlink(p);
      await add(path.resolve(path.dirname(p), target), [...chain, p]);
      entries.set(p, { type: 'symlink', path: p, target });
    } else if (stat.isFile()) {
      entries.set(p, { type: 'file', path: p, source: p, mode: stat.mode });
    } else {
      throw new JreBaseError(`${p} is neither a file nor a symlink`);
    }
  };
  for (const file of files) await add(file, []);
  const paths = [...entries.keys()].sort();
  return { entries: paths.map((p) => entries.get(p) as LayerEntry), paths };
}

const ETC_PASSWD = 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n';
const ETC_GROUP = 'root:x:0:\nnogroup:x:65534:\n';
const ETC_NSSWITCH = 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nservices: files\nprotocols: files\n';

/** The minimal /etc (root and nobody; files then DNS for hosts), /tmp and /root every weft-made base has. */
export function minimalSystemEntries(): LayerEntry[] {
  return [
    { type: 'file', path: '/etc/passwd', data: ETC_PASSWD },
    { type: 'file', path: '/etc/group', data: ETC_GROUP },
    { type: 'file', path: '/etc/nsswitch.conf', data: ETC_NSSWITCH },
    { type: 'directory', path: '/tmp' },
    { type: 'directory', path: '/root' },
  ];
}

async function jarEntries(dir: string): Promise<{ entries: LayerEntry[]; jars: string[] }> {
  const stat = await fs.stat(dir).catch(() => undefined);
  if (!stat?.isDirectory()) throw new JreBaseError(`--add-jars ${dir} is not a directory: pass a directory that holds the .jar files to bake in`);
  const names = (await fs.readdir(dir)).filter((n) => n.endsWith('.jar')).sort();
  if (names.length === 0) throw new JreBaseError(`--add-jars ${dir} holds no .jar files`);
  const entries: LayerEntry[] = [];
  for (const name of names) {
    const file = path.join(dir, name);
    const s = await fs.stat(file).catch(() => undefined);
    if (!s?.isFile()) throw new JreBaseError(`${file} is not a regular file (a broken link or a directory named .jar): remove it from ${dir}`);
    const handle = await fs.open(file, 'r');
    const head = Buffer.alloc(4);
    try {
      await handle.read(head, 0, 4, 0);
    } finally {
      await handle.close();
    }
    if (!head.equals(Buffer.from([0x50, 0x4b, 0x03, 0x04])) && !head.equals(Buffer.from([0x50, 0x4b, 0x05, 0x06]))) {
      throw new JreBaseError(`${file} is not a jar (no zip header): remove it from ${dir}`);
    }
    entries.push({ type: 'file', path: `${JRE_LIBS_IN_IMAGE}/${name}`, source: file, mode: 0o644 });
  }
  return { entries, jars: names };
}

/** Everything needed to write a JRE base image: layer entries, config, annotations. Nothing is written to the output. */
export async function planJreBase(options: JreBaseOptions = {}): Promise<JreBasePlan> {
  if (process.platform !== 'linux') throw new JreBaseError('weft base jre copies Linux shared libraries from this machine: run it on Linux');
  const arch = hostArchitecture();
  if (!arch) throw new JreBaseError(`unsupported architecture ${process.arch}`);
  const temps: string[] = [];
  const cleanup = async (): Promise<void> => {
    for (const t of temps) await fs.rm(t, { recursive: true, force: true });
  };
  try {
    const jdk = await findJdk(options.jdk);
    const release = await readRelease(jdk);
    const javaVersion = release.JAVA_VERSION ?? 'unknown';
    const modules = await validateModules(jdk, options.modules);
    // Validate the jars before the slow jlink step.
    const jars = options.addJars ? await jarEntries(path.resolve(options.addJars)) : undefined;
    const flags = jlinkFlags(javaVersion);
    const runtime = await runtimeImage(jdk, modules, flags, options, temps);
    const runtimeRelease = await readRelease(runtime.dir);
    const resolvedModules = (runtimeRelease.MODULES ?? '').split(/\s+/).filter(Boolean).sort();

    const extra = await resolveSonames(options.hostLibraries ?? []);
    const libs = await hostFileEntries([...new Set([...(await sharedLibraries(runtime.dir)), ...extra, ...(await sharedLibrariesOf(extra))])].sort());
    const osEntries: LayerEntry[] = [
      ...libs.entries,
      ...minimalSystemEntries(),
    ];
    const layers: JreBaseLayerPlan[] = [
      { name: 'os', description: `dynamic loader and ${libs.paths.length} shared-library paths from the host, minimal /etc`, entries: osEntries },
      {
        name: 'jre',
        description: `jlink runtime (Java ${javaVersion}, ${resolvedModules.length} modules) at ${JRE_HOME_IN_IMAGE}`,
        entries: await directoryEntries(runtime.dir, JRE_HOME_IN_IMAGE),
      },
    ];
    if (jars) layers.push({ name: 'libs', description: `${jars.jars.length} common jars at ${JRE_LIBS_IN_IMAGE}`, entries: jars.entries });

    const labels: Record<string, string> = {
      'io.weft.jre.java-version': javaVersion,
      'io.weft.jre.modules': modules.join(','),
    };
    if (jars) labels['io.weft.jre.libs'] = jars.jars.join(',');
    return {
      jdk,
      javaVersion,
      modules,
      resolvedModules,
      libraries: libs.paths,
      jars: jars?.jars ?? [],
      runtimeDir: runtime.dir,
      cached: runtime.cached,
      layers,
      config: {
        architecture: arch,
        os: 'linux',
        config: {
          Env: [`PATH=${IMAGE_PATH}`, `JAVA_HOME=${JRE_HOME_IN_IMAGE}`, 'LANG=C.UTF-8'],
          // No Entrypoint/Cmd: an image built on top sets its own, and an inherited Cmd would
          // silently become its program arguments in runtimes that keep it.
          WorkingDir: '/',
          Labels: labels,
        },
      },
      annotations: {
        'org.opencontainers.image.title': 'weft JRE base',
        'org.opencontainers.image.description': `Java ${javaVersion} runtime (jlink: ${modules.join(',')})${jars ? ` with ${jars.jars.length} jars in ${JRE_LIBS_IN_IMAGE}` : ''}`,
        'org.opencontainers.image.version': javaVersion,
      },
      cleanup,
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

export type JreBaseLayerReport = AssembledLayerReport<JreBaseLayerPlan['name']>;

export interface JreBaseImage {
  image: StaticImage;
  plan: JreBasePlan;
  layers: JreBaseLayerReport[];
  /** Removes temporary files (jlink output when uncached, temp blob store). Call after the image was written. */
  cleanup(): Promise<void>;
}

export interface JreBaseBuildOptions extends JreBaseOptions {
  /** gzip level 0-9 for the layers. */
  gzipLevel?: number;
  /** Layer cache (default: the shared LayerCache); false writes into a temp store, nothing cached. */
  layerCache?: LayerCache | false;
}

/** Plans and writes the layers, and returns the image (not yet written to any destination). */
export async function buildJreBaseImage(options: JreBaseBuildOptions = {}): Promise<JreBaseImage> {
  const level = options.gzipLevel;
  if (level !== undefined && (!Number.isInteger(level) || level < 0 || level > 9)) {
    throw new JreBaseError(`--gzip-level must be a whole number from 0 to 9, got ${level}`);
  }
  const plan = await planJreBase(options);
  try {
    const assembled = await assembleImage({
      source: 'weft base jre',
      layers: plan.layers,
      config: plan.config,
      annotations: plan.annotations,
      gzipLevel: level,
      layerCache: options.cache === false ? false : options.layerCache,
      onProgress: options.onProgress,
    });
    return {
      image: assembled.image,
      plan,
      layers: assembled.layers,
      cleanup: async () => {
        await plan.cleanup();
        await assembled.cleanup();
      },
    };
  } catch (error) {
    await plan.cleanup();
    throw error;
  }
}

export interface JreBaseResult {
  reference: string;
  digest: string;
  javaVersion: string;
  jdk: string;
  modules: string[];
  resolvedModules: string[];
  libraries: string[];
  jars: string[];
  runtimeCached: boolean;
  /** Sum of the compressed layer sizes. */
  size: number;
  uncompressedSize: number;
  layers: JreBaseLayerReport[];
}

/** Builds the JRE base image and writes it to `output` (oci:, docker-archive:, or docker:// with `remote`). */
export function buildJreBase(options: JreBaseBuildOptions & { output: string; remote?: RemoteTransport }): Promise<JreBaseResult> {
  return buildAndWriteImage(options, (m) => new JreBaseError(m), () => buildJreBaseImage(options), ({ plan, layers }) => ({
    javaVersion: plan.javaVersion,
    jdk: plan.jdk,
    modules: plan.modules,
    resolvedModules: plan.resolvedModules,
    libraries: plan.libraries,
    jars: plan.jars,
    runtimeCached: plan.cached,
    layers,
  }));
}
