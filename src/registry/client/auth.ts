// WWW-Authenticate challenges and bearer tokens (the distribution token spec
// and its OAuth2 variant for identity tokens).
import type { Credential } from './credentials.js';

export interface Challenge {
  scheme: string; // lowercased: "basic" or "bearer"
  params: Record<string, string>;
}

/**
 * Parses a WWW-Authenticate header (RFC 7235): one or more challenges, each a
 * scheme followed by comma-separated auth-params with quoted-string values.
 */
export function parseChallenges(headerValue: string): Challenge[] {
  const out: Challenge[] = [];
  let i = 0;
  const s = headerValue;
  const skipSpace = (): void => {
    while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++;
  };
  const readToken = (): string => {
    const start = i;
    while (i < s.length && /[!#$%&'*+\-.^_`|~0-9A-Za-z]/.test(s[i]!)) i++;
    return s.slice(start, i);
  };
  while (i < s.length) {
    skipSpace();
    while (s[i] === ',') {
      i++;
      skipSpace();
    }
    const scheme = readToken();
    if (!scheme) break;
    const challenge: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    out.push(challenge);
    for (;;) {
      skipSpace();
      const mark = i;
      const key = readToken();
      skipSpace();
      if (!key || s[i] !== '=') {
        // Not an auth-param: the scheme of the next challenge (or a token68 weft does not use).
        i = mark;
        break;
      }
      i++; // '='
      skipSpace();
      let value = '';
      if (s[i] === '"') {
        i++;
        while (i < s.length && s[i] !== '"') {
          if (s[i] === '\\' && i + 1 < s.length) i++;
          value += s[i];
          i++;
        }
        i++; // closing quote
      } else {
        const start = i;
        while (i < s.length && s[i] !== ',' && s[i] !== ' ') i++;
        value = s.slice(start, i);
      }
      challenge.params[key.toLowerCase()] = value;
      skipSpace();
      if (s[i] === ',') {
        i++;
        continue;
      }
      break;
    }
  }
  return out;
}

export function pickChallenge(challenges: Challenge[]): Challenge | undefined {
  return challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic');
}

export function basicHeader(cred: Credential): string | undefined {
  if (cred.username === undefined || cred.password === undefined) return undefined;
  return `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString('base64')}`;
}

/** The scope string distribution expects: repository:<name>:<actions>. */
export function repositoryScope(repository: string, actions: string[]): string {
  return `repository:${repository}:${actions.join(',')}`;
}

/**
 * Merges scopes, joining the actions of the same resource
 * (repository:a:pull + repository:a:push -> repository:a:pull,push).
 */
export function mergeScopes(scopes: string[]): string[] {
  const byResource = new Map<string, Set<string>>();
  for (const scope of scopes) {
    const last = scope.lastIndexOf(':');
    if (last < 0) {
      byResource.set(scope, byResource.get(scope) ?? new Set());
      continue;
    }
    const resource = scope.slice(0, last);
    const set = byResource.get(resource) ?? new Set<string>();
    for (const action of scope.slice(last + 1).split(',')) if (action) set.add(action);
    byResource.set(resource, set);
  }
  return [...byResource.entries()]
    .map(([resource, actions]) => (actions.size ? `${resource}:${[...actions].sort().join(',')}` : resource))
    .sort();
}

export interface TokenResponse {
  token: string;
  expiresAt: number;
}

/** Interprets a token endpoint's JSON: `token` or `access_token`, `expires_in` (default 60 s per the spec). */
export function parseTokenResponse(body: Buffer, now = Date.now()): TokenResponse {
  let json: { token?: string; access_token?: string; expires_in?: number };
  try {
    json = JSON.parse(body.toString('utf8')) as typeof json;
  } catch {
    throw new Error('the token server answered with something that is not JSON');
  }
  const token = json.token || json.access_token;
  if (!token) throw new Error('the token server answered without a token (neither "token" nor "access_token")');
  const expiresIn = typeof json.expires_in === 'number' && json.expires_in > 0 ? json.expires_in : 60;
  // Refresh a little early so a long push never sends an expired token.
  return { token, expiresAt: now + Math.max(1, expiresIn - 10) * 1000 };
}
