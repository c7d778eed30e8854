// The image config's `User` as a uid and gid, as runc needs them: "uid",
// "uid:gid", "name" or "name:group", names looked up in the image's own
// /etc/passwd and /etc/group. The rootfs comes from an untrusted image, so
// those files are read only when they resolve inside it (a symlink to a host
// file is not followed out of the root).
import { promises as fs } from 'node:fs';
import path from 'node:path';

export interface ImageUser {
  uid: number;
  gid: number;
}

export class ImageUserError extends Error {
  override name = 'ImageUserError';
}

async function readInRoot(rootfs: string, file: string): Promise<string | undefined> {
  try {
    const root = await fs.realpath(rootfs);
    const real = await fs.realpath(path.join(root, file));
    if (!real.startsWith(`${root}${path.sep}`)) return undefined;
    const stat = await fs.stat(real);
    if (!stat.isFile() || stat.size > 4 << 20) return undefined;
    return await fs.readFile(real, 'utf8');
  } catch {
    return undefined;
  }
}

/** Fields of the line of a passwd/group file whose first field is `name`. */
function entry(text: string | undefined, name: string): string[] | undefined {
  for (const line of (text ?? '').split('\n')) {
    const fields = line.split(':');
    if (fields[0] === name) return fields;
  }
  return undefined;
}

const isId = (s: string) => /^\d+$/.test(s);

/** Resolves `user` (the image config's User; empty = root) against the image's rootfs. */
export async function resolveImageUser(rootfs: string, user: string | undefined): Promise<ImageUser> {
  if (!user) return { uid: 0, gid: 0 };
  const [userPart, groupPart] = user.split(':', 2) as [string, string | undefined];
  let uid: number;
  let gid: number | undefined;
  if (isId(userPart)) {
    uid = Number(userPart);
    // A numeric user without a group gets its passwd group when the image has one, else gid 0 (as runc/podman).
    const byUid = (await readInRoot(rootfs, 'etc/passwd'))?.split('\n').map((l) => l.split(':')).find((f) => f[2] === userPart);
    gid = byUid && isId(byUid[3] ?? '') ? Number(byUid[3]) : 0;
  } else {
    const fields = entry(await readInRoot(rootfs, 'etc/passwd'), userPart);
    if (!fields || !isId(fields[2] ?? '') || !isId(fields[3] ?? '')) throw new ImageUserError(`the image's User "${user}": no user "${userPart}" in the image's /etc/passwd`);
    uid = Number(fields[2]);
    gid = Number(fields[3]);
  }
  if (groupPart !== undefined && groupPart !== '') {
    if (isId(groupPart)) gid = Number(groupPart);
    else {
      const fields = entry(await readInRoot(rootfs, 'etc/group'), groupPart);
      if (!fields || !isId(fields[2] ?? '')) throw new ImageUserError(`the image's User "${user}": no group "${groupPart}" in the image's /etc/group`);
      gid = Number(fields[2]);
    }
  }
  return { uid, gid: gid ?? 0 };
}
