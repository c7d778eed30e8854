// JVM layer planning, as Jib does it, plus fat-jar splitting (which Jib cannot
// do): dependencies (release), SNAPSHOT dependencies, project dependencies,
// resources, classes; least to most often changed. A thin program jar is
// exploded into /app/classes and /app/resources; a Spring Boot jar's
// BOOT-INF/lib and a generic fat jar's top-level lib/*.jar become dependency
// layers and its own classes and resources their own layers.
import { createReadStream, promises as fs } from 'node:fs';
import { createHash } from 'node:crypto';
import yauzl from 'yauzl';
import type { JarFactsStore } from './cache.js';
import path from 'node:path';
import { hashFile, sha256 } from './blobstore.js';
import { mapBounded } from './bounded.js';
import { quickJarNames } from './jar-quick.js';
import { classFileName, classPathEntries, DEFAULT_LIMITS, JarError, openJar, type Jar, type ZipLimits } from './jar.js';

const FACTS_VERSION = 1;
/** Dependency jars up to this size are read into memory once (hashed and checked from the same bytes). */
const READ_WHOLE_JAR = 256 * 1024 * 1024;
import type { LayerEntry } from './layer.js';

export const APP_ROOT = '/app';
export const CLASSPATH = ['/app/resources', '/app/classes', '/app/libs/*'];

export type LayerName = 'dependencies' | 'snapshot-dependencies' | 'project-dependencies' | 'resources' | 'classes';
export const LAYER_ORDER: readonly LayerName[] = ['dependencies', 'snapshot-dependencies', 'project-dependencies', 'resources', 'classes'];

export interface PlannedLayer {
  name: LayerName;
  entries: LayerEntry[];
}

export interface JvmPlanInputs {
  /** The program jar (thin or fat). */
  program: string;
  /** Jars, or directories whose *.jar files are dependencies. */
  libs?: string[];
  /** Jars (or directories of jars) that are the project's own modules: the project-dependencies layer. */
  projectLibs?: string[];
  /** Regular expression on a dependency's file name that marks it as a project dependency. */
  projectLibPattern?: string;
  /** Main class; default: the manifest's Start-Class (Spring Boot) or Main-Class. */
  main?: string;
  limits?: ZipLimits;
  /** Remembered facts about jars (LayerCache), so unchanged jars are neither re-checked nor re-inflated. */
  facts?: JarFactsStore;
}

export interface JvmPlan {
  mainClass: string;
  fatJar: 'spring-boot' | 'nested-lib' | null;
  layers: PlannedLayer[];
  /** Dependency file names in /app/libs, sorted. */
  dependencies: string[];
  warnings: string[];
  /** Releases the open jars; call after the layers were written. */
  close(): void;
  /** Remembers the program jar's entry digests (in `facts`) once the layers were written. */
  remember(): Promise<void>;
}

export const isSnapshot = (name: string): boolean => /-SNAPSHOT(\.jar)?$|-SNAPSHOT[-.]|-\d{8}\.\d{6}-\d+(\.jar)?$/i.test(name);

interface Dependency {
  name: string;
  entry: LayerEntry;
  /** Local file, when not nested in the program jar. */
  file?: string;
  digest?: string;
  project: boolean;
}

/** The jars a --lib argument names: itself, or the *.jar files directly inside a directory (never through a symlink leaving it). */
async function expandLib(arg: string): Promise<string[]> {
  let stat;
  try {
    stat = await fs.stat(arg);
  } catch (error) {
    throw new JarError(`--lib ${arg}: ${(error as Error).message}`);
  }
  if (stat.isFile()) return [path.resolve(arg)];
  if (!stat.isDirectory()) throw new JarError(`--lib ${arg} is neither a jar nor a directory of jars`);
  const root = await fs.realpath(arg);
  const jars: string[] = [];
  for (const name of (await fs.readdir(root)).sort()) {
    if (!name.endsWith('.jar')) continue;
    const full = path.join(root, name);
    const lstat = await fs.lstat(full);
    if (lstat.isSymbolicLink()) {
      const real = await fs.realpath(full).catch(() => undefined);
      if (!real) throw new JarError(`--lib ${arg}: ${name} is a dangling symlink: remove it or point it at a jar`);
      if (!real.startsWith(root + path.sep)) {
        throw new JarError(
          `--lib ${arg}: ${name} is a symlink to ${real}, outside the directory: copy that jar into ${arg} or pass it with its own --lib`,
        );
      }
      if (!(await fs.stat(real)).isFile()) continue;
    } else if (!lstat.isFile()) {
      continue;
    }
    jars.push(full);
  }
  return jars;
}

/** Refuses what is not a regular file (a FIFO or a device would block or never end when read). */
async function requireRegularFile(file: string, what: string): Promise<void> {
  const stat = await fs.stat(file).catch((error: Error) => {
    throw new JarError(`cannot read ${what} ${file}: ${error.message}`);
  });
  if (!stat.isFile()) throw new JarError(`${what} ${file} is not a regular file (a directory, FIFO or device): pass a jar file`);
}

/**
 * The jars a manifest Class-Path names, resolved against the jar's directory.
 * A jar is input from elsewhere, so its manifest may only add files inside
 * that directory (after symlinks are resolved): anything outside, and anything
 * that is not a regular file, is refused unless it was also given with --lib.
 */
async function classPathFiles(program: string, classPath: string | undefined, given: ReadonlySet<string>, warnings: string[]): Promise<string[]> {
  const programDir = await fs.realpath(path.dirname(path.resolve(program)));
  const inside = (p: string): boolean => p.startsWith(programDir + path.sep);
  const files: string[] = [];
  for (const entry of classPathEntries(classPath)) {
    const file = path.resolve(programDir, entry);
    const real = await fs.realpath(file).catch(() => undefined);
    if (real && given.has(real)) continue; // also passed with --lib: already a dependency
    if (!inside(file) || (real && !inside(real))) {
      throw new JarError(
        `the Class-Path of ${program} names ${entry}, which is outside the jar's directory ${programDir}: refusing to add it to the image; pass it with --lib if it belongs there`,
      );
    }
    if (!real) {
      warnings.push(`Class-Path entry ${entry} of ${program} does not exist (the JVM would skip it too); pass it with --lib if it is needed`);
      continue;
    }
    const stat = await fs.stat(real);
    if (stat.isDirectory()) warnings.push(`Class-Path entry ${entry} is a directory; pass its jars with --lib ${real}`);
    else if (!stat.isFile()) throw new JarError(`the Class-Path of ${program} names ${entry}, which is not a regular file (a FIFO or device): refusing it`);
    else files.push(file);
  }
  return files;
}

/** Key of the remembered facts about a jar: its content digest plus the checks' limits. */
function factsKey(digest: string, limits: ZipLimits | undefined): string {
  return createHash('sha256').update(`${FACTS_VERSION}\0${digest}\0${JSON.stringify(limits ?? {})}`).digest('hex');
}

/** Reads the program jar and the dependencies and decides what goes in which layer. Nothing is written. */
export async function planJvmLayers(inputs: JvmPlanInputs): Promise<JvmPlan> {
  const warnings: string[] = [];
  const opened: Jar[] = [];
  const close = (): void => {
    for (const jar of opened) jar.close();
    opened.length = 0;
  };
  const facts = inputs.facts;
  try {
    await requireRegularFile(inputs.program, 'the program jar');
    const programDigest = (await hashFile(inputs.program).catch((error: Error) => {
      throw new JarError(`cannot read ${inputs.program}: ${error.message}`);
    })).digest;
    const programKey = factsKey(programDigest, inputs.limits);
    const programFacts = await facts?.getJarFacts(programKey);
    const program = await openJar(inputs.program, inputs.limits, { inMemory: true });
    opened.push(program);
    const names = [...program.entries.keys()];
    const springBoot = names.some((n) => n.startsWith('BOOT-INF/'));
    const nestedLib = !springBoot && names.some((n) => /^lib\/[^/]+\.jar$/.test(n));
    const fatJar = springBoot ? 'spring-boot' : nestedLib ? 'nested-lib' : null;

    const mainClass = inputs.main ?? (springBoot ? program.manifest['Start-Class'] : undefined) ?? program.manifest['Main-Class'];
    if (!mainClass) {
      throw new JarError(`${inputs.program} names no Main-Class in its manifest: pass --main <fully.qualified.Class>`);
    }
    const classFile = classFileName(mainClass);

    const classes: LayerEntry[] = [];
    const resources: LayerEntry[] = [];
    const deps: Dependency[] = [];
    const classNames = new Set<string>();
    const projectPattern = inputs.projectLibPattern ? new RegExp(inputs.projectLibPattern) : undefined;
    // Entry digests of the program jar: remembered from an earlier build of the same jar, or collected now.
    const known = programFacts?.entryDigests ?? {};
    const collected: Record<string, string> = {};
    let used = 0;

    const fromZip = (name: string, imagePath: string): LayerEntry => {
      const info = program.entries.get(name)!;
      used++;
      return {
        type: 'file',
        path: imagePath,
        size: info.size,
        open: () => program.open(name),
        readAll: () => program.read(name),
        contentDigest: known[name],
        onDigest: (digest) => {
          collected[name] = digest;
        },
      };
    };
    const addProgramEntry = (relative: string, zipName: string): void => {
      if (relative === '' || relative.endsWith('/')) return;
      if (relative === 'META-INF/MANIFEST.MF' || /^META-INF\/[^/]+\.(SF|RSA|DSA|EC)$/i.test(relative)) return;
      if (relative.endsWith('.class')) {
        classNames.add(relative);
        classes.push(fromZip(zipName, `${APP_ROOT}/classes/${relative}`));
      } else {
        resources.push(fromZip(zipName, `${APP_ROOT}/resources/${relative}`));
      }
    };

    for (const name of names) {
      if (name.endsWith('/')) continue;
      if (springBoot) {
        if (name.startsWith('BOOT-INF/classes/')) addProgramEntry(name.slice('BOOT-INF/classes/'.length), name);
        else if (/^BOOT-INF\/lib\/[^/]+\.jar$/.test(name)) {
          const base = name.slice('BOOT-INF/lib/'.length);
          deps.push({ name: base, entry: fromZip(name, `${APP_ROOT}/libs/${base}`), project: false });
        }
        // The Spring Boot launcher (org/springframework/boot/loader), BOOT-INF/*.idx and META-INF are not needed:
        // the image runs Start-Class directly on a plain class path.
      } else if (nestedLib && /^lib\/[^/]+\.jar$/.test(name)) {
        const base = name.slice('lib/'.length);
        deps.push({ name: base, entry: fromZip(name, `${APP_ROOT}/libs/${base}`), project: false });
      } else {
        addProgramEntry(name, name);
      }
    }

    // Dependencies from --lib, --project-lib and the manifest Class-Path.
    const localDeps: Array<{ file: string; project: boolean }> = [];
    for (const lib of inputs.libs ?? []) for (const file of await expandLib(lib)) localDeps.push({ file, project: false });
    for (const lib of inputs.projectLibs ?? []) for (const file of await expandLib(lib)) localDeps.push({ file, project: true });
    const given = new Set(await Promise.all(localDeps.map((d) => fs.realpath(d.file))));
    for (const file of await classPathFiles(inputs.program, program.manifest['Class-Path'], given, warnings)) localDeps.push({ file, project: false });
    const programReal = await fs.realpath(inputs.program);
    let foundInLibs = false;
    const unopened: string[] = [];
    // Each jar is read once (a few at a time): hashed, and checked from the same bytes when no earlier
    // build checked it (quickJarNames in one pass, yauzl when that is not sure or the jar is huge).
    const checked = await mapBounded(localDeps, 4, async (dep) => {
      if ((await fs.realpath(dep.file)) === programReal) return undefined;
      let digest: string;
      let size: number;
      let data: Buffer | undefined;
      const stat = await fs.stat(dep.file);
      if (stat.size <= READ_WHOLE_JAR) {
        data = await fs.readFile(dep.file).catch((error: Error) => {
          throw new JarError(`cannot read ${dep.file}: ${error.message}`);
        });
        ({ digest, size } = { digest: sha256(data), size: data.length });
      } else ({ digest, size } = await hashFile(dep.file));
      const key = factsKey(digest, inputs.limits);
      let opened = false;
      if (!(await facts?.getJarFacts(key))) {
        const names = data ? quickJarNames(data, { ...DEFAULT_LIMITS, ...inputs.limits }) : undefined;
        if (names) foundInLibs ||= names.has(classFile);
        else {
          const jar = await openJar(dep.file, inputs.limits, data ? { data } : { inMemory: true }); // refuses non-jars, truncated and hostile jars
          foundInLibs ||= jar.entries.has(classFile);
          jar.close();
        }
        opened = true;
        await facts?.putJarFacts(key, { valid: true });
      }
      return { dep, digest, size, opened };
    });
    for (const item of checked) {
      if (!item) continue;
      const { dep, digest, size, opened } = item;
      if (!opened) unopened.push(dep.file); // checked by an earlier build: same bytes, same limits
      const name = path.basename(dep.file);
      deps.push({
        name,
        file: dep.file,
        digest,
        project: dep.project,
        entry: {
          type: 'file',
          path: `${APP_ROOT}/libs/${name}`,
          size,
          contentDigest: digest,
          open: async () => createReadStream(dep.file),
          readAll: () => fs.readFile(dep.file),
        },
      });
    }

    // One file per name in /app/libs: the same jar twice is fine, two different jars with one name are not.
    const byName = new Map<string, Dependency>();
    const digestOf = async (d: Dependency): Promise<string> => {
      if (d.digest) return d.digest;
      const hash = createHash('sha256');
      const e = d.entry as { open: () => Promise<NodeJS.ReadableStream> };
      for await (const chunk of await e.open()) hash.update(chunk as Buffer);
      return `sha256:${hash.digest('hex')}`;
    };
    for (const dep of deps) {
      const existing = byName.get(dep.name);
      if (!existing) {
        byName.set(dep.name, dep);
        continue;
      }
      if ((await digestOf(existing)) !== (await digestOf(dep))) {
        throw new JarError(`two different dependencies are both named ${dep.name}: rename one, or pass only one of them`);
      }
      if (dep.project) existing.project = true;
    }

    // The main class must exist, in the program or a dependency.
    let found = classNames.has(classFile) || foundInLibs;
    for (const file of unopened) {
      if (found) break;
      const jar = await openJar(file, inputs.limits);
      found = jar.entries.has(classFile);
      jar.close();
    }
    if (!found) {
      for (const dep of byName.values()) {
        if (found || dep.file) continue;
        // a nested jar: read it and look inside
        const e = dep.entry as { open: () => Promise<NodeJS.ReadableStream> };
        const chunks: Buffer[] = [];
        for await (const chunk of await e.open()) chunks.push(chunk as Buffer);
        const zip = await yauzl.fromBufferPromise(Buffer.concat(chunks), { lazyEntries: true }).catch(() => undefined);
        if (!zip) continue;
        for await (const entry of zip.eachEntry()) if (entry.fileName === classFile) found = true;
        zip.close();
      }
    }
    if (!found) {
      throw new JarError(
        `main class ${mainClass} (${classFile}) is not in ${inputs.program} or its dependencies: check the Main-Class in the manifest or pass --main`,
      );
    }

    const layers = new Map<LayerName, LayerEntry[]>(LAYER_ORDER.map((n) => [n, []]));
    for (const dep of [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const layer: LayerName =
        dep.project || projectPattern?.test(dep.name) ? 'project-dependencies' : isSnapshot(dep.name) ? 'snapshot-dependencies' : 'dependencies';
      layers.get(layer)!.push(dep.entry);
    }
    // Concatenated, not push(...list): a jar of 150 000 entries would overflow the call stack as arguments.
    layers.set('resources', layers.get('resources')!.concat(resources));
    layers.set('classes', layers.get('classes')!.concat(classes));
    return {
      mainClass,
      fatJar,
      layers: LAYER_ORDER.filter((n) => layers.get(n)!.length > 0).map((name) => ({ name, entries: layers.get(name)! })),
      dependencies: [...byName.keys()].sort(),
      warnings,
      close,
      remember: async () => {
        if (!facts || programFacts?.entryDigests) return;
        const merged = { ...known, ...collected };
        // Only a complete set is remembered; entries a cached layer did not need to hash are simply not there yet.
        if (Object.keys(merged).length >= used) await facts.putJarFacts(programKey, { valid: true, entryDigests: merged });
      },
    };
  } catch (error) {
    close();
    throw error;
  }
}
