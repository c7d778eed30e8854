// Applies image layers (tar, optionally gzip) onto a root filesystem directory,
// the way a container runtime does: in order, with OCI whiteouts, and without
// ever writing outside the root.
//
// Written here rather than shelling out to umoci because the local runtime
// must work from the image content store alone, and because the safety rules
// (symlinks resolved inside the root, hostile names refused) are part of what
// this module guarantees and is tested for. tar-stream does the tar parsing.
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import type { Readable } from 'node:stream';
import { extract, type Header } from 'tar-stream';

export class UnpackError extends Error {
  override name = 'UnpackError';
}

const WHITEOUT_PREFIX = '.wh.';
const OPAQUE = '.wh..wh..opq';
const MAX_SYMLINKS = 40;

/**
 * Normalises an entry name to a list of path components, refusing absolute
 * names and `..` (a hostile layer must be rejected, not silently re-rooted).
 */
export function entryComponents(name: string): string[] {
  if (name.includes('\0')) throw new UnpackError(`layer entry name contains a NUL byte: ${JSON.stringify(name)}`);
  let rel = name.replace(/^\.\/+/, '');
  if (rel.startsWith('/')) throw new UnpackError(`layer entry "${name}" is an absolute path: refusing to unpack a hostile layer`);
  rel = rel.replace(/\/+$/, '');
  const parts = rel.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new UnpackError(`layer entry "${name}" contains "..": refusing to unpack a hostile layer`);
  return parts;
}

/**
 * Resolves `components` inside `root`, following symlinks already in the root
 * as if `root` were `/` (an absolute link target is re-rooted, `..` stops at
 * the root). Every component except the last is resolved; the last is
 * returned as-is so the caller can create, replace or lstat it.
 */
export async function resolveInRoot(root: string, components: string[], followLast = false): Promise<string> {
  let resolved: string[] = [];
  const pending = [...components];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const isLast = pending.length === 0;
    const candidate = path.join(root, ...resolved, part);
    if (isLast && !followLast) {
      resolved.push(part);
      break;
    }
    let stat;
    try {
      stat = await fs.lstat(candidate);
    } catch {
      resolved.push(part);
      continue;
    }
    if (stat.isSymbolicLink()) {
      if (++links > MAX_SYMLINKS) throw new UnpackError(`too many symbolic links resolving ${components.join('/')} in the image`);
      const target = await fs.readlink(candidate);
      if (target.startsWith('/')) resolved = [];
      pending.unshift(...target.split('/'));
    } else {
      resolved.push(part);
    }
  }
  const full = path.join(root, ...resolved);
  const rel = path.relative(root, full);
  if (rel.startsWith('..') || path.isAbsolute(rel)) throw new UnpackError(`${components.join('/')} resolves outside the root`);
  return full;
}

async function removeAll(target: string): Promise<void> {
  await fs.rm(target, { recursive: true, force: true });
}

async function emptyDirectory(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return;
  }
  await Promise.all(names.map((n) => removeAll(path.join(dir, n))));
}

async function ensureDirectory(target: string, mode: number): Promise<void> {
  try {
    const stat = await fs.lstat(target);
    if (stat.isDirectory()) {
      await fs.chmod(target, mode);
      return;
    }
    await removeAll(target);
  } catch {
    // absent
  }
  await fs.mkdir(target, { mode });
  await fs.chmod(target, mode);
}

export interface UnpackStats {
  entries: number;
  whiteouts: number;
  skipped: number;
}

const canChown = process.getuid?.() === 0;

/**
 * Applies one layer stream (uncompressed tar) onto `root`. Entries whose
 * directories were whited out by this same layer are handled in order, as the
 * OCI spec requires (whiteouts only hide lower layers).
 */
export async function applyLayer(root: string, tarStream: Readable, stats: UnpackStats = { entries: 0, whiteouts: 0, skipped: 0 }): Promise<UnpackStats> {
  const ex = extract();
  const dirModes: Array<{ target: string; mode: number; mtime?: Date }> = [];
  const opaqueDone = new Set<string>();
  const handle = async (header: Header, stream: Readable): Promise<void> => {
    const parts = entryComponents(header.name);
    if (parts.length === 0) {
      stream.resume();
      return;
    }
    const base = parts[parts.length - 1];
    const parent = parts.slice(0, -1);
    if (base === OPAQUE) {
      stream.resume();
      const dir = await resolveInRoot(root, parent, true);
      if (!opaqueDone.has(dir)) {
        opaqueDone.add(dir);
        await emptyDirectory(dir);
      }
      stats.whiteouts++;
      return;
    }
    if (base.startsWith(WHITEOUT_PREFIX)) {
      stream.resume();
      const hidden = base.slice(WHITEOUT_PREFIX.length);
      entryComponents(hidden);
      if (!hidden || hidden === '..' || hidden === '.') throw new UnpackError(`bad whiteout entry "${header.name}"`);
      await removeAll(await resolveInRoot(root, [...parent, hidden]));
      stats.whiteouts++;
      return;
    }
    const target = await resolveInRoot(root, parts);
    await fs.mkdir(path.dirname(target), { recursive: true });
    const mode = (header.mode ?? 0o644) & 0o7777;
    stats.entries++;
    switch (header.type) {
      case 'directory': {
        stream.resume();
        await ensureDirectory(target, 0o755);
        dirModes.push({ target, mode, mtime: header.mtime });
        if (canChown) await fs.lchown(target, header.uid ?? 0, header.gid ?? 0);
        return;
      }
      case 'file':
      case 'contiguous-file': {
        await removeAll(target);
        const handleFd = await fs.open(target, 'wx', 0o600);
        try {
          for await (const chunk of stream) await handleFd.write(chunk as Buffer);
        } finally {
          await handleFd.close();
        }
        if (canChown) await fs.lchown(target, header.uid ?? 0, header.gid ?? 0);
        await fs.chmod(target, mode);
        if (header.mtime) await fs.utimes(target, header.mtime, header.mtime);
        return;
      }
      case 'symlink': {
        stream.resume();
        await removeAll(target);
        await fs.symlink(header.linkname ?? '', target);
        if (canChown) await fs.lchown(target, header.uid ?? 0, header.gid ?? 0);
        return;
      }
      case 'link': {
        stream.resume();
        const source = await resolveInRoot(root, entryComponents(header.linkname ?? ''));
        await removeAll(target);
        await fs.link(source, target);
        return;
      }
      default:
        // Devices and FIFOs are not needed by JVM programs and cannot be created rootless: skipped.
        stream.resume();
        stats.skipped++;
        stats.entries--;
        return;
    }
  };
  ex.on('entry', (header, stream, next) => {
    handle(header, stream as unknown as Readable).then(
      () => next(),
      (error: Error) => {
        stream.resume();
        next(error);
      },
    );
  });
  await pipeline(tarStream, ex);
  // Directory modes last (a read-only directory must still receive its children), deepest first.
  for (const d of dirModes.reverse()) {
    await fs.chmod(d.target, d.mode);
    if (d.mtime) await fs.utimes(d.target, d.mtime, d.mtime).catch(() => undefined);
  }
  return stats;
}

/** True when the first bytes are a gzip header. */
async function isGzip(file: string): Promise<boolean> {
  const fd = await fs.open(file, 'r');
  try {
    const buf = Buffer.alloc(2);
    await fd.read(buf, 0, 2, 0);
    return buf[0] === 0x1f && buf[1] === 0x8b;
  } finally {
    await fd.close();
  }
}

/** Applies a layer file (gzip or plain tar, detected from its bytes) onto `root`. */
export async function applyLayerFile(root: string, file: string, stats?: UnpackStats): Promise<UnpackStats> {
  const gz = await isGzip(file);
  const source = createReadStream(file);
  const stream = gz ? source.pipe(createGunzip()) : source;
  source.on('error', (e) => stream.destroy(e));
  return applyLayer(root, stream, stats);
}
