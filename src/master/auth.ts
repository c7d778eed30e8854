// Bearer tokens: random, shown once, stored as SHA-256 hashes (a token has 256
// bits of entropy, so a fast hash is enough and lookups stay one indexed query).
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Role, Store, TokenRecord } from './store/index.js';

const rank: Record<Role, number> = { viewer: 1, operator: 2, admin: 3 };

export function newToken(): string {
  return `weft_${randomBytes(32).toString('base64url')}`;
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export function newTokenId(): string {
  return `tok-${randomBytes(6).toString('hex')}`;
}

/** The role a token has in a namespace: its entry for the namespace, else its "*" entry. */
export function roleIn(token: TokenRecord, namespace: string): Role | undefined {
  return token.roles[namespace] ?? token.roles['*'];
}

export function allows(token: TokenRecord, namespace: string, needed: Role): boolean {
  const role = roleIn(token, namespace);
  return role !== undefined && rank[role] >= rank[needed];
}

/**
 * Makes the token in `file` the admin token (roles {"*": "admin"}); writes a new
 * random one there (mode 0600) when the file does not exist. Earlier admin
 * tokens from another file content are revoked.
 */
export async function ensureAdminToken(store: Store, file: string): Promise<{ created: boolean }> {
  const { token, created } = await readOrWriteTokenFile(file);
  const hash = hashToken(token);
  let current = await store.tokenByHash(hash);
  if (!current) {
    try {
      current = await store.addToken({ id: newTokenId(), name: 'admin', hash, roles: { '*': 'admin' } });
    } catch (error) {
      // Another master on the same store added the same token first (both started on an empty store).
      current = await store.tokenByHash(hash);
      if (!current) throw error;
    }
  }
  for (const t of await store.listTokens()) {
    if (t.name === 'admin' && t.id !== current.id && t.revokedAt === undefined) await store.revokeToken(t.id);
  }
  return { created };
}

/**
 * The token in `file`, or a new one written there (mode 0600). A master that loses the race to create the
 * file (two started at once on one host) reads the winner's token once it is written.
 */
async function readOrWriteTokenFile(file: string): Promise<{ token: string; created: boolean }> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      const token = newToken();
      await fs.mkdir(path.dirname(path.resolve(file)), { recursive: true });
      try {
        await fs.writeFile(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
        return { token, created: true };
      } catch (writeError) {
        if ((writeError as NodeJS.ErrnoException).code !== 'EEXIST') throw writeError;
        continue; // another master created it just now: read theirs
      }
    }
    const token = text.trim();
    if (token) return { token, created: false };
    // Empty: being written by another master this very moment (a fresh file), or left empty by someone.
    const fresh = Date.now() - (await fs.stat(file)).mtimeMs < 5_000;
    if (!fresh || Date.now() > deadline) throw new Error(`the admin token file ${file} is empty: remove it to have the master write a new token`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
