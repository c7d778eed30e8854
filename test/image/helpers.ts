// Test helpers: temp dirs, small Java programs compiled with the machine's JDK,
// and a tiny zip writer for crafting hostile jars (bad names, bombs, symlinks).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { deflateRawSync, crc32 as zlibCrc32 } from 'node:zlib';

export function tempDir(prefix = 'weft-image-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function run(cmd: string, args: string[], options: { cwd?: string; input?: string } = {}): string {
  const result = spawnSync(cmd, args, { cwd: options.cwd, input: options.input, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (result.error) throw new Error(`${cmd} could not start: ${result.error.message}`);
  if (result.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${result.status}: ${result.stderr}`);
  return result.stdout;
}

export const COMMONS_LANG3 = '/usr/share/java/commons-lang3.jar';
export const GUAVA = '/usr/share/java/guava.jar';

/**
 * Compiles Java sources (path -> text) against `classpath` and packs them into
 * `jarPath` with the given manifest lines and extra resource files.
 */
export function makeJar(
  work: string,
  jarPath: string,
  sources: Record<string, string>,
  options: { classpath?: string[]; manifest?: Record<string, string>; resources?: Record<string, string> } = {},
): string {
  const src = path.join(work, `src-${path.basename(jarPath, '.jar')}-${Math.random().toString(36).slice(2)}`);
  const classes = path.join(src, 'classes');
  mkdirSync(classes, { recursive: true });
  const files: string[] = [];
  for (const [name, text] of Object.entries(sources)) {
    const file = path.join(src, 'java', name);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, text);
    files.push(file);
  }
  if (files.length > 0) {
    const cp = options.classpath?.length ? ['-cp', options.classpath.join(':')] : [];
    run('javac', ['--release', '11', ...cp, '-d', classes, ...files]);
  }
  for (const [name, text] of Object.entries(options.resources ?? {})) {
    const file = path.join(classes, name);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, text);
  }
  const manifestFile = path.join(src, 'MANIFEST.MF');
  writeFileSync(manifestFile, Object.entries(options.manifest ?? {}).map(([k, v]) => `${k}: ${v}\n`).join(''));
  mkdirSync(path.dirname(jarPath), { recursive: true });
  run('jar', ['--create', '--file', jarPath, '--manifest', manifestFile, '-C', classes, '.']);
  return jarPath;
}

export const helloSource = (message = 'hello'): Record<string, string> => ({
  'com/example/Hello.java': `package com.example;
import org.apache.commons.lang3.StringUtils;
public class Hello {
  public static void main(String[] args) { System.out.println(StringUtils.upperCase("${message}")); }
}
`,
  'com/example/util/Helper.java': `package com.example.util;
public class Helper { public static int answer() { return 42; } }
`,
});

export interface ZipMember {
  name: string;
  data?: Buffer;
  /** Store deflated (default) or stored. */
  method?: 'deflate' | 'store';
  /** Override the sizes written in the headers (to lie about them). */
  declaredSize?: number;
  /** Unix mode for the external attributes (e.g. 0o120777 for a symlink). */
  unixMode?: number;
  /** Override the CRC-32 written in the headers. */
  crc?: number;
}

/** Writes a zip file by hand (local headers, central directory, end record): for crafting hostile jars. */
export function writeZip(file: string, members: ZipMember[]): void {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const m of members) {
    const data = m.data ?? Buffer.alloc(0);
    const method = m.method === 'store' ? 0 : 8;
    const body = method === 8 ? deflateRawSync(data) : data;
    const crc = m.crc ?? zlibCrc32(data) >>> 0;
    const name = Buffer.from(m.name, 'utf8');
    const size = m.declaredSize ?? data.length;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x0800, 6);
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(0, 10);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(0, 28);
    locals.push(local, name, body);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(m.unixMode !== undefined ? (3 << 8) | 20 : 20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0x0800, 8);
    central.writeUInt16LE(method, 10);
    central.writeUInt32LE(0, 12);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(body.length, 20);
    central.writeUInt32LE(size, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(m.unixMode !== undefined ? (m.unixMode << 16) >>> 0 : 0, 38);
    central.writeUInt32LE(offset, 42);
    centrals.push(central, name);
    offset += local.length + name.length + body.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(members.length, 8);
  end.writeUInt16LE(members.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  writeFileSync(file, Buffer.concat([...locals, cd, end]));
}

export function hasCommand(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
