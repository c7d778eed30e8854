// htpasswd Basic authentication (bcrypt entries, as written by `htpasswd -B`).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { compare } from 'bcryptjs';

export class Htpasswd {
  private readonly users = new Map<string, string>();
  /** sha256(user:password) of credentials already verified, so bcrypt runs once per client, not per request. */
  private readonly verified = new Set<string>();

  constructor(file: string) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new Error(`cannot read htpasswd file ${file}: ${(error as Error).message}`);
    }
    text.split(/\r?\n/).forEach((line, index) => {
      const trimmed = line.trim();
      if (!trimmed || trimmed.startsWith('#')) return;
      const colon = trimmed.indexOf(':');
      const user = trimmed.slice(0, colon);
      const hash = trimmed.slice(colon + 1);
      if (colon <= 0 || !/^\$2[abxy]\$\d\d\$/.test(hash)) {
        throw new Error(`${file}:${index + 1}: only bcrypt entries are supported; create them with "htpasswd -B ${file} <user>"`);
      }
      this.users.set(user, hash);
    });
    if (this.users.size === 0) throw new Error(`htpasswd file ${file} has no users; add one with "htpasswd -B ${file} <user>"`);
  }

  /** True when the Authorization header carries valid Basic credentials. */
  async check(header: string | undefined): Promise<boolean> {
    if (!header || !/^basic /i.test(header)) return false;
    const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return false;
    const user = decoded.slice(0, colon);
    const password = decoded.slice(colon + 1);
    const hash = this.users.get(user);
    if (!hash) return false;
    const key = createHash('sha256').update(`${user}\u0000${password}\u0000${hash}`).digest('hex');
    if (this.verified.has(key)) return true;
    const ok = await compare(password, hash);
    if (ok) this.verified.add(key);
    return ok;
  }
}
