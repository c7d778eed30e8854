// Applies image layers (tar, optionally gzip) onto a root filesystem directory,
// the way a container runtime does: in order, with OCI whiteouts, and without
// ever writing outside the root.
//
// Written here rather than shelling out to umoci because the local runtime
// must work from the image content store alone, and because the safety rules
// (symlinks resolved inside the root, hostile names refused) are part of what
// this module guarantees and is tested for. tar-stream does the tar parsing.
import { constants as fsConstants, createReadStream, promises as fs, type Stats } from 'node:fs';
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
  // fs.rm lstat()s every entry: a symlink is removed, never followed.
  await fs.rm(target, { recursive: true, force: true }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOTDIR') throw error; // a path through a file: nothing to remove
  });
}

async function lstatOrNull(target: string): Promise<Stats | null> {
  try {
    return await fs.lstat(target);
  } catch (error) {
    // ENOTDIR: a path through a file does not exist either.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
    throw error;
  }
}

async function emptyDirectory(dir: string): Promise<void> {
  const stat = await lstatOrNull(dir);
  if (!stat?.isDirectory()) return;
  await Promise.all((await fs.readdir(dir)).map((n) => removeAll(path.join(dir, n))));
}

// Opening with O_NOFOLLOW and then working on the descriptor (fchmod, fchown,
// futimes) changes exactly the inode that was opened: a path that became a
// symlink since it was checked fails with ELOOP instead of being followed.
const OPEN_DIRECTORY = fsConstants.O_RDONLY | fsConstants.O_DIRECTORY | fsConstants.O_NOFOLLOW;
const CREATE_FILE = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW;

/**
 * Creates the directory `components` inside `root` (like `mkdir -p`), each
 * component resolved inside the root: an existing symlink is followed as if
 * the root were `/`, so `etc -> /host/dir` makes `etc/x` land in
 * `<root>/host/dir/x`, never on the host. Returns the directory's host path.
 */
export async function makeDirectoryInRoot(root: string, components: string[], mode = 0o755): Promise<string> {
  let dir = root;
  for (let i = 1; i <= components.length; i++) {
    dir = await resolveInRoot(root, components.slice(0, i), true);
    const notADirectory = () => new UnpackError(`cannot create directory ${components.join('/')} in the image: ${components.slice(0, i).join('/')} is not a directory`);
    const stat = await lstatOrNull(dir);
    if (!stat) {
      // Safe to create recursively: resolveInRoot checked that every existing component is a real
      // directory inside the root (no symlinks), and what is missing is created here.
      await fs.mkdir(dir, { mode, recursive: true }).catch((error: NodeJS.ErrnoException) => {
        throw error.code === 'ENOTDIR' || error.code === 'EEXIST' ? notADirectory() : error;
      });
    } else if (!stat.isDirectory()) {
      throw notADirectory();
    }
  }
  return dir;
}

/** Makes `target` a directory (replacing a non-directory) and returns its identity for the deferred mode. */
async function ensureDirectory(target: string, owner: { uid: number; gid: number } | null): Promise<{ dev: number; ino: number }> {
  const stat = await lstatOrNull(target);
  if (stat && !stat.isDirectory()) await removeAll(target);
  if (!stat?.isDirectory()) await fs.mkdir(target, { mode: 0o700 });
  const handle = await fs.open(target, OPEN_DIRECTORY);
  try {
    // Writable by its owner until the layer is done (children still arrive); the layer's mode comes last.
    await handle.chmod(0o755);
    if (owner) await handle.chown(owner.uid, owner.gid);
    const { dev, ino } = await handle.stat();
    return { dev, ino };
  } finally {
    await handle.close();
  }
}

/** Applies a directory's deferred mode and times, only if the same directory is still at that path in the root. */
async function applyDirectoryMetadata(root: string, d: DeferredDirectory): Promise<void> {
  let target: string;
  try {
    target = await resolveInRoot(root, d.components);
  } catch {
    return;
  }
  let handle;
  try {
    handle = await fs.open(target, OPEN_DIRECTORY);
  } catch {
    return; // deleted, or replaced by a file or a symlink later in the layer: the mode belonged to the old directory
  }
  try {
    const { dev, ino } = await handle.stat();
    if (dev !== d.dev || ino !== d.ino) return;
    await handle.chmod(d.mode);
    if (d.mtime) await handle.utimes(d.mtime, d.mtime).catch(() => undefined);
  } finally {
    await handle.close();
  }
}

interface DeferredDirectory {
  components: string[];
  dev: number;
  ino: number;
  mode: number;
  mtime?: Date;
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
 *
 * Nothing outside `root` is ever created, changed or read: every parent is
 * resolved inside the root, the last component is never followed (lstat,
 * lchown, O_NOFOLLOW|O_EXCL creation, link(2) which does not follow), and
 * modes and times are set through descriptors opened with O_NOFOLLOW. This
 * relies on the root being private to the unpack while it runs (no other
 * process writes into it), which ImageStore guarantees with a fresh temp dir.
 */
export async function applyLayer(root: string, tarStream: Readable, stats: UnpackStats = { entries: 0, whiteouts: 0, skipped: 0 }): Promise<UnpackStats> {
  const ex = extract();
  const deferred: DeferredDirectory[] = [];
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
    const target = path.join(await makeDirectoryInRoot(root, parent), base);
    const mode = (header.mode ?? 0o644) & 0o7777;
    const owner = canChown ? { uid: header.uid ?? 0, gid: header.gid ?? 0 } : null;
    stats.entries++;
    switch (header.type) {
      case 'directory': {
        stream.resume();
        const identity = await ensureDirectory(target, owner);
        deferred.push({ components: parts, ...identity, mode, mtime: header.mtime });
        return;
      }
      case 'file':
      case 'contiguous-file': {
        await removeAll(target);
        const file = await fs.open(target, CREATE_FILE, 0o600);
        try {
          for await (const chunk of stream) await file.write(chunk as Buffer);
          if (owner) await file.chown(owner.uid, owner.gid); // before chmod: chown clears setuid bits
          await file.chmod(mode);
          if (header.mtime) await file.utimes(header.mtime, header.mtime);
        } finally {
          await file.close();
        }
        return;
      }
      case 'symlink': {
        stream.resume();
        await removeAll(target);
        await fs.symlink(header.linkname ?? '', target);
        if (owner) await fs.lchown(target, owner.uid, owner.gid);
        if (header.mtime) await fs.lutimes(target, header.mtime, header.mtime);
        return;
      }
      case 'link': {
        stream.resume();
        const source = await resolveInRoot(root, entryComponents(header.linkname ?? ''));
        const sourceStat = await lstatOrNull(source);
        if (!sourceStat) throw new UnpackError(`hard link ${header.name} points at ${header.linkname}, which is not in the image`);
        if (sourceStat.isDirectory()) throw new UnpackError(`hard link ${header.name} points at the directory ${header.linkname}: refusing it`);
        if (source === target) return;
        await removeAll(target);
        await fs.link(source, target); // link(2) does not follow a symlink source: the link itself is linked
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
  for (const d of deferred.reverse()) await applyDirectoryMetadata(root, d);
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
