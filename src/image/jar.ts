// Reading jars with yauzl: the manifest (Main-Class, Start-Class, Class-Path),
// the entry list, and streams of single entries. Hostile jars are refused
// before anything is written: not a zip, truncated, entry names that are
// absolute or contain "..", symlink entries, encrypted entries, and zip bombs
// (declared uncompressed sizes are bounded in total and in ratio; yauzl checks
// while streaming that no entry inflates past its declared size).
import { promises as fs } from 'node:fs';
import type { Readable } from 'node:stream';
import yauzl from 'yauzl';
import { crc32, inflateRawSync } from 'node:zlib';

export class JarError extends Error {
  override name = 'JarError';
}

export interface ZipLimits {
  /** Largest total uncompressed size of all entries (default 4 GiB). */
  maxTotalUncompressed?: number;
  /** Largest uncompressed/compressed ratio for an entry over 1 MiB (default 200). */
  maxRatio?: number;
  /** Most entries in one jar (default 200 000). */
  maxEntries?: number;
}

const IN_MEMORY_LIMIT = 512 * 1024 * 1024;
export const DEFAULT_LIMITS: Required<ZipLimits> = { maxTotalUncompressed: 4 * 1024 ** 3, maxRatio: 200, maxEntries: 200_000 };

export interface JarEntry {
  name: string;
  size: number;
  compressedSize: number;
  directory: boolean;
}

export interface Jar {
  readonly file: string;
  readonly entries: ReadonlyMap<string, JarEntry>;
  /** Main attributes of META-INF/MANIFEST.MF (empty when there is none). */
  readonly manifest: Readonly<Record<string, string>>;
  /** Streams the uncompressed content of one entry. */
  open(name: string): Promise<Readable>;
  read(name: string, maxBytes?: number): Promise<Buffer>;
  close(): void;
}

const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;

/** Parses the main section of a JAR manifest (72-byte lines, continuation lines start with one space). */
export function parseManifest(text: string): Record<string, string> {
  const attributes: Record<string, string> = {};
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  let current: string | undefined;
  for (const line of lines) {
    if (line === '') {
      if (Object.keys(attributes).length > 0) break; // end of the main section
      continue;
    }
    if (line.startsWith(' ') && current) {
      attributes[current] += line.slice(1);
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    current = line.slice(0, colon).trim();
    attributes[current] = line.slice(colon + 1).replace(/^ /, '');
  }
  for (const key of Object.keys(attributes)) attributes[key] = attributes[key].trim();
  return attributes;
}

function explainZipError(file: string, error: Error): JarError {
  const message = error.message;
  if (/absolute path|invalid relative path|invalid characters in fileName/.test(message)) {
    return new JarError(
      `${file} has an entry that would be written outside its directory (${message}): refusing it; rebuild the jar with relative entry names`,
    );
  }
  if (/end of central directory record signature not found/i.test(message)) {
    return new JarError(`${file} is not a jar (zip) file or is truncated: pass a jar built by jar, Maven or Gradle`);
  }
  if (/signature|unexpected EOF|too short|out of range|overflow|invalid/i.test(message)) {
    return new JarError(`${file} is a damaged or truncated jar (${message}): rebuild or re-download it`);
  }
  return new JarError(`cannot read ${file} as a jar: ${message}`);
}

/** Opens a jar (or its bytes, `data`, already read) and checks every central directory entry; throws JarError on hostile or broken input. */
export async function openJar(file: string, limits: ZipLimits = {}, options: { inMemory?: boolean; data?: Buffer } = {}): Promise<Jar> {
  const max = { ...DEFAULT_LIMITS, ...limits };
  const stat = options.data
    ? { isFile: () => true, size: options.data.length }
    : await fs.stat(file).catch((error: Error) => {
        throw new JarError(`cannot read ${file}: ${error.message}`);
      });
  if (!stat.isFile()) throw new JarError(`${file} is not a file: pass a jar`);
  let zip: yauzl.ZipFile;
  try {
    const zipOptions = { lazyEntries: true, autoClose: false, validateEntrySizes: true, strictFileNames: true };
    // A jar whose entries will all be read (the program jar) is read into memory once: yauzl then
    // serves every entry from the buffer instead of issuing small reads per entry.
    zip =
      options.data
        ? await yauzl.fromBufferPromise(options.data, zipOptions)
        : options.inMemory && stat.size <= IN_MEMORY_LIMIT
        ? await yauzl.fromBufferPromise(await fs.readFile(file), zipOptions)
        : await yauzl.openPromise(file, zipOptions);
  } catch (error) {
    throw explainZipError(file, error as Error);
  }
  const entries = new Map<string, JarEntry>();
  const raw = new Map<string, yauzl.Entry>();
  let total = 0;
  try {
    if (zip.entryCount > max.maxEntries) {
      throw new JarError(`${file} has ${zip.entryCount} entries, more than the limit of ${max.maxEntries}: refusing a possible zip bomb`);
    }
    for await (const entry of zip.eachEntry()) {
      const name = entry.fileName;
      const directory = name.endsWith('/');
      if (((entry.externalFileAttributes >>> 16) & S_IFMT) === S_IFLNK) {
        throw new JarError(`${file} contains a symlink entry "${name}": jars never need them; refusing it`);
      }
      if (entry.isEncrypted()) throw new JarError(`${file} has an encrypted entry "${name}": weft cannot read encrypted jars`);
      if (entries.has(name)) throw new JarError(`${file} has two entries named "${name}": rebuild the jar`);
      total += entry.uncompressedSize;
      if (total > max.maxTotalUncompressed) {
        throw new JarError(
          `${file} would expand to more than ${max.maxTotalUncompressed} bytes: refusing a possible zip bomb (raise the limit if the jar is genuine)`,
        );
      }
      if (entry.uncompressedSize > 1024 * 1024 && entry.uncompressedSize > max.maxRatio * Math.max(1, entry.compressedSize)) {
        throw new JarError(
          `${file}: entry "${name}" expands ${Math.round(entry.uncompressedSize / Math.max(1, entry.compressedSize))}x (${entry.uncompressedSize} bytes), over the limit of ${max.maxRatio}x: refusing a possible zip bomb`,
        );
      }
      entries.set(name, { name, size: entry.uncompressedSize, compressedSize: entry.compressedSize, directory });
      raw.set(name, entry);
    }
  } catch (error) {
    zip.close();
    throw error instanceof JarError ? error : explainZipError(file, error as Error);
  }
  const open = async (name: string): Promise<Readable> => {
    const entry = raw.get(name);
    if (!entry) throw new JarError(`${file} has no entry "${name}"`);
    try {
      const stream = await zip.openReadStreamPromise(entry);
      stream.on('error', () => undefined);
      return stream;
    } catch (error) {
      throw explainZipError(file, error as Error);
    }
  };
  /**
   * Reads one entry into memory: the compressed bytes are inflated in one
   * synchronous call, capped at the declared size (a lying entry cannot
   * inflate past it), and checked against the declared size and CRC-32.
   * Thousands of small class files read this way cost far less than one
   * inflate stream each.
   */
  const read = async (name: string, maxBytes = 16 * 1024 * 1024): Promise<Buffer> => {
    const entry = raw.get(name);
    if (!entry) throw new JarError(`${file} has no entry "${name}"`);
    if (entry.uncompressedSize > maxBytes) throw new JarError(`${file}: entry "${name}" is larger than ${maxBytes} bytes`);
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of await zip.openReadStreamPromise(entry, { decodeFileData: false })) chunks.push(chunk as Buffer);
    } catch (error) {
      throw explainZipError(file, error as Error);
    }
    const compressed = Buffer.concat(chunks);
    let data: Buffer;
    if (entry.compressionMethod === 0) data = compressed;
    else if (entry.compressionMethod === 8) {
      try {
        data = inflateRawSync(compressed, { maxOutputLength: Math.max(1, entry.uncompressedSize) });
      } catch (error) {
        throw new JarError(`${file}: entry "${name}" does not inflate to its declared size of ${entry.uncompressedSize} bytes (${(error as Error).message}): the jar is damaged or a zip bomb`);
      }
    } else {
      throw new JarError(`${file}: entry "${name}" uses compression method ${entry.compressionMethod}; jars use stored or deflated entries only`);
    }
    if (data.length !== entry.uncompressedSize) {
      throw new JarError(`${file}: entry "${name}" has ${data.length} bytes, not its declared size of ${entry.uncompressedSize}: the jar is damaged`);
    }
    if ((crc32(data) >>> 0) !== entry.crc32) throw new JarError(`${file}: entry "${name}" fails its CRC-32 check: the jar is damaged`);
    return data;
  };
  let manifest: Record<string, string> = {};
  if (entries.has('META-INF/MANIFEST.MF')) {
    try {
      manifest = parseManifest((await read('META-INF/MANIFEST.MF', 1024 * 1024)).toString('utf8'));
    } catch (error) {
      zip.close();
      throw error;
    }
  }
  return { file, entries, manifest, open, read, close: () => zip.close() };
}

/** `com.example.Main` -> `com/example/Main.class`; throws on a name that is not a Java class name. */
export function classFileName(mainClass: string): string {
  if (!/^[\p{L}_$][\p{L}\p{N}_$]*(\.[\p{L}_$][\p{L}\p{N}_$]*)*$/u.test(mainClass)) {
    throw new JarError(`"${mainClass}" is not a Java class name: pass --main with a fully qualified name like com.example.Main`);
  }
  return `${mainClass.replace(/\./g, '/')}.class`;
}

/** Paths named by a manifest Class-Path (space-separated URLs relative to the jar's directory). */
export function classPathEntries(value: string | undefined): string[] {
  if (!value) return [];
  return value
    .split(/\s+/)
    .filter(Boolean)
    .map((url) => {
      try {
        return decodeURIComponent(url.replace(/^file:/, ''));
      } catch {
        return url;
      }
    });
}
