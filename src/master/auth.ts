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
  let token: string | undefined;
  let created = false;
  try {
    token = (await fs.readFile(file, 'utf8')).trim();
    if (!token) throw new Error(`the admin token file ${file} is empty: remove it to have the master write a new token`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    token = newToken();
    await fs.mkdir(path.dirname(path.resolve(file)), { recursive: true });
    await fs.writeFile(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
    created = true;
  }
  const hash = hashToken(token);
  let current = await store.tokenByHash(hash);
  if (!current) current = await store.addToken({ id: newTokenId(), name: 'admin', hash, roles: { '*': 'admin' } });
  for (const t of await store.listTokens()) {
    if (t.name === 'admin' && t.id !== current.id && t.revokedAt === undefined) await store.revokeToken(t.id);
  }
  return { created };
}
