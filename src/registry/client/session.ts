// One registry host: scheme choice (HTTPS first, except plain HTTP first on
// loopback; plain HTTP only where policy allows), authentication (Basic or Bearer tokens per scope, refreshed on 401),
// retries with exponential backoff, and redirects.
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { basicHeader, mergeScopes, parseChallenges, parseTokenResponse, pickChallenge, type Challenge } from './auth.js';
import { lookupCredential, type Credential, type CredentialOptions } from './credentials.js';
import { AuthError, InsecureTransportError, RegistryError, isRetryable, retryableStatus } from './errors.js';
import { HttpClient, discard, header, headerValues, readBody, type HttpResponse } from './http.js';
import { insecureRegistryList, isLoopbackHost, mayCarryCredentials, plainHttpAllowed } from './policy.js';

export interface SessionOptions {
  /** Hosts allowed over plain HTTP besides loopback ones (WEFT_INSECURE_REGISTRIES adds more). */
  insecureRegistries?: string[];
  /** Explicit credentials per registry host, used before any credential file. */
  credentials?: Record<string, { username: string; password: string }>;
  credentialOptions?: CredentialOptions;
  /** Retries after the first attempt for 408/429/5xx and dropped connections (default 5). */
  retries?: number;
  /** First backoff delay in ms, doubled each attempt, with jitter (default 200, cap 10 s). */
  retryBaseMs?: number;
  /** Host name -> address override (like curl --resolve), for tests. */
  resolve?: Record<string, string>;
  /** Extra trusted CA certificates (PEM). */
  ca?: string[];
  env?: NodeJS.ProcessEnv;
  /**
   * Blob bodies of 4 MiB or more hashed (and, into a layout, written) on a
   * worker thread: true always (a long-lived process), false never; unset,
   * WEFT_HASH_THREAD decides (1/0), else only once the thread runs or for a
   * body large enough to pay for starting it (64 MiB, hash-thread.ts).
   */
  hashThread?: boolean;
  /** Observes every HTTP exchange (method, url, status) — for --debug and tests. */
  onExchange?: (event: { method: string; url: string; status: number | string }) => void;
}

export interface RequestOptions {
  method: string;
  /** Path below the registry base (e.g. /v2/repo/manifests/tag) or an absolute URL. */
  path: string | URL;
  scopes: string[];
  headers?: Record<string, string>;
  /** Produces the body; called again for every attempt so streams can be re-opened. */
  body?: () => Promise<Buffer | Readable> | Buffer | Readable;
  contentLength?: number;
  /** Retry on 408/429/5xx and network errors (default true). */
  retry?: boolean;
  /** Statuses the caller handles; anything else becomes a RegistryError. */
  expect: number[];
  /** A large body is expected (a blob GET): read off a socket directly, here and after a redirect. */
  bulk?: boolean;
}

interface CachedToken {
  token: string;
  expiresAt: number;
  /** Obtained with user credentials (so it is itself a secret). */
  authenticated: boolean;
}

/** Registry hosts whose API lives elsewhere. */
function apiHost(registry: string): string {
  return registry === 'docker.io' || registry === 'index.docker.io' ? 'registry-1.docker.io' : registry;
}

export class RegistrySession {
  readonly registry: string;
  readonly host: string;
  private basePromise?: Promise<URL>;
  private challenge?: Challenge;
  private readonly tokens = new Map<string, CachedToken>();
  private readonly tokenFetches = new Map<string, Promise<CachedToken>>();
  private credentialPromise?: Promise<Credential | undefined>;
  private readonly insecure: string[];

  constructor(
    registry: string,
    private readonly http: HttpClient,
    private readonly options: SessionOptions = {},
  ) {
    this.registry = registry;
    this.host = apiHost(registry);
    this.insecure = insecureRegistryList(options.insecureRegistries ?? [], options.env ?? process.env);
  }

  get retries(): number {
    return this.options.retries ?? 5;
  }

  /** The caller's hashThread choice, else WEFT_HASH_THREAD's; undefined: decided per body. */
  get hashThread(): boolean | undefined {
    if (this.options.hashThread !== undefined) return this.options.hashThread;
    const env = (this.options.env ?? process.env).WEFT_HASH_THREAD?.trim().toLowerCase();
    if (env === '1' || env === 'true' || env === 'on') return true;
    if (env === '0' || env === 'false' || env === 'off') return false;
    return undefined;
  }

  /** The registry's base URL (scheme://host), found by pinging /v2/ over HTTPS, then HTTP where allowed. */
  base(): Promise<URL> {
    this.basePromise ??= this.ping().catch((error: unknown) => {
      this.basePromise = undefined;
      throw error;
    });
    return this.basePromise;
  }

  private async ping(): Promise<URL> {
    const tryScheme = async (scheme: 'https' | 'http', probe = false): Promise<URL> => {
      const url = new URL(`${scheme}://${this.host}/v2/`);
      const res = await this.withRetry(`ping ${url.href}`, async () => {
        const r = await this.http.request({ method: 'GET', url, idleTimeoutMs: 30_000 });
        this.observe('GET', url, r.status);
        if (retryableStatus(r.status)) {
          await discard(r);
          throw new RegistryError(`${url.href} answered ${r.status}`, r.status, [], true);
        }
        return r;
      }, scheme === 'https' || probe ? 0 : undefined);
      await discard(res);
      if (res.status === 401) {
        const challenge = pickChallenge(parseChallenges(headerValues(res, 'www-authenticate').join(', ')));
        if (challenge) this.challenge = challenge;
      } else if (res.status !== 200 && res.status !== 404) {
        // 404: some registries hide /v2/ (still a registry); other statuses mean something else listens there.
        throw new RegistryError(`${url.href} answered ${res.status}: is ${this.host} a container registry?`, res.status);
      }
      return new URL(`${scheme}://${this.host}`);
    };
    if (isLoopbackHost(this.registry)) {
      // Loopback: plain HTTP first (it may carry credentials there anyway, see
      // policy.ts), so a local registry costs one round trip instead of a
      // failed TLS handshake plus a second ping. A loopback registry that
      // speaks TLS answers plain HTTP with 400 or drops the connection: then
      // HTTPS is tried as usual.
      try {
        return await tryScheme('http', true);
      } catch {
        /* fall through to HTTPS, then HTTP again with retries */
      }
    }
    try {
      return await tryScheme('https');
    } catch (httpsError) {
      if (!plainHttpAllowed(this.registry, this.insecure)) {
        throw new RegistryError(
          `cannot reach https://${this.host}/v2/: ${(httpsError as Error).message}. ` +
            `If this registry only speaks plain HTTP, mark it insecure with --insecure-registry ${this.registry} ` +
            `(or WEFT_INSECURE_REGISTRIES); weft still never sends credentials over plain HTTP to a non-loopback host`,
        );
      }
      try {
        return await tryScheme('http');
      } catch (httpError) {
        throw new RegistryError(
          `cannot reach ${this.registry} over HTTPS (${(httpsError as Error).message}) nor HTTP (${(httpError as Error).message}); is the registry running?`,
        );
      }
    }
  }

  private observe(method: string, url: URL, status: number | string): void {
    this.options.onExchange?.({ method, url: url.href, status });
  }

  private credential(): Promise<Credential | undefined> {
    this.credentialPromise ??= (async () => {
      const explicit = this.options.credentials?.[this.registry];
      if (explicit) return { ...explicit, source: 'command line' };
      return lookupCredential(this.registry, undefined, { env: this.options.env, ...this.options.credentialOptions });
    })();
    return this.credentialPromise;
  }

  /** Runs fn, retrying retryable failures with exponential backoff (and Retry-After). */
  async withRetry<T>(label: string, fn: (attempt: number) => Promise<T>, retries = this.retries): Promise<T> {
    const base = this.options.retryBaseMs ?? 200;
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn(attempt);
      } catch (error) {
        if (attempt >= retries || !isRetryable(error)) {
          if (attempt > 0 && error instanceof Error && !error.message.includes('attempts')) {
            error.message += ` (after ${attempt + 1} attempts)`;
          }
          throw error;
        }
        const retryAfter = (error as { retryAfterMs?: number }).retryAfterMs;
        const backoff = Math.min(10_000, base * 2 ** attempt);
        const delay = retryAfter !== undefined ? Math.min(retryAfter, 30_000) : backoff / 2 + Math.random() * (backoff / 2);
        this.options.onExchange?.({ method: 'RETRY', url: label, status: (error as Error).message });
        await sleep(delay);
      }
    }
  }

  /** The Authorization header for these scopes, fetching a token if needed. */
  private async authorization(url: URL, scopes: string[], forceRefresh: boolean): Promise<string | undefined> {
    const challenge = this.challenge;
    if (!challenge) return undefined;
    const cred = await this.credential();
    if (challenge.scheme === 'basic') {
      if (!cred) return undefined;
      const value = basicHeader(cred);
      if (!value) return undefined;
      this.refuseInsecure(url, cred);
      return value;
    }
    if (challenge.scheme !== 'bearer') return undefined;
    if (cred?.registryToken) {
      this.refuseInsecure(url, cred);
      return `Bearer ${cred.registryToken}`;
    }
    const merged = mergeScopes(scopes);
    const key = merged.join(' ');
    const cached = this.tokens.get(key);
    if (!forceRefresh && cached && cached.expiresAt > Date.now()) {
      if (cached.authenticated) this.refuseInsecure(url, cred);
      return `Bearer ${cached.token}`;
    }
    let pending = this.tokenFetches.get(key);
    if (!pending || forceRefresh) {
      pending = this.fetchToken(challenge, merged, cred).finally(() => this.tokenFetches.delete(key));
      this.tokenFetches.set(key, pending);
    }
    const token = await pending;
    this.tokens.set(key, token);
    if (token.authenticated) this.refuseInsecure(url, cred);
    return `Bearer ${token.token}`;
  }

  private refuseInsecure(url: URL, cred: Credential | undefined): void {
    if (!mayCarryCredentials(url)) {
      throw new InsecureTransportError(
        `refusing to send credentials${cred ? ` (from ${cred.source})` : ''} to ${url.protocol}//${url.host} over plain HTTP: ` +
          'weft sends credentials over plain HTTP only to loopback hosts; serve the registry over HTTPS',
      );
    }
  }

  private async fetchToken(challenge: Challenge, scopes: string[], cred: Credential | undefined): Promise<CachedToken> {
    const realm = challenge.params.realm;
    if (!realm) throw new AuthError(`${this.registry} asked for a bearer token without saying where to get one (no realm)`);
    let realmUrl: URL;
    try {
      realmUrl = new URL(realm);
    } catch {
      throw new AuthError(`${this.registry} named an invalid token realm "${realm}"`);
    }
    if (realmUrl.protocol !== 'https:' && realmUrl.protocol !== 'http:') throw new AuthError(`token realm ${realm} is not an http(s) URL`);
    const service = challenge.params.service;
    const useCred = cred && (cred.identityToken || (cred.username !== undefined && cred.password !== undefined)) ? cred : undefined;
    if (useCred) this.refuseInsecure(realmUrl, useCred);
    let res: HttpResponse;
    if (useCred?.identityToken) {
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: useCred.identityToken, client_id: 'weft' });
      if (service) form.set('service', service);
      if (scopes.length) form.set('scope', scopes.join(' '));
      res = await this.withRetry(`token ${realmUrl.href}`, () =>
        this.sendChecked({ method: 'POST', url: realmUrl, headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: Buffer.from(form.toString()) }),
      );
    } else {
      const url = new URL(realmUrl.href);
      if (service) url.searchParams.set('service', service);
      for (const scope of scopes) url.searchParams.append('scope', scope);
      const headers: Record<string, string> = {};
      const basic = useCred ? basicHeader(useCred) : undefined;
      if (basic) headers.Authorization = basic;
      res = await this.withRetry(`token ${url.href}`, () => this.sendChecked({ method: 'GET', url, headers }));
    }
    const body = await readBody(res, 1024 * 1024);
    if (res.status === 401 || res.status === 403) {
      throw new AuthError(
        useCred
          ? `the token server ${realmUrl.host} rejected the credentials from ${useCred.source} for ${this.registry}: run weft login ${this.registry}`
          : `${this.registry} requires authentication: run weft login ${this.registry}`,
        res.status,
        ['UNAUTHORIZED'],
      );
    }
    if (res.status !== 200) throw new AuthError(`the token server ${realmUrl.host} answered ${res.status}: ${body.toString('utf8').slice(0, 200)}`, res.status);
    const parsed = parseTokenResponse(body);
    return { ...parsed, authenticated: useCred !== undefined };
  }

  /** One HTTP exchange; retryable statuses become retryable errors (body drained). */
  private async sendChecked(req: { method: string; url: URL; headers?: Record<string, string>; body?: Buffer | Readable; contentLength?: number; bulk?: boolean }): Promise<HttpResponse> {
    let res: HttpResponse;
    try {
      res = await this.http.request({ ...req, idleTimeoutMs: 120_000 });
    } catch (error) {
      this.observe(req.method, req.url, (error as NodeJS.ErrnoException).code ?? 'error');
      throw error;
    }
    this.observe(req.method, req.url, res.status);
    if (retryableStatus(res.status)) {
      const body = await readBody(res).catch(() => Buffer.alloc(0));
      const error = new RegistryError(
        `${req.method} ${req.url.pathname} on ${req.url.host} answered ${res.status}${describeErrors(body)}`,
        res.status,
        errorCodes(body),
        true,
      );
      const retryAfter = header(res, 'retry-after');
      if (retryAfter && /^\d+$/.test(retryAfter)) Object.assign(error, { retryAfterMs: Number(retryAfter) * 1000 });
      throw error;
    }
    return res;
  }

  /**
   * Sends a request to the registry with authentication: on 401 the challenge
   * is re-read and a fresh token fetched once. GET/HEAD follow redirects (the
   * Authorization header never follows to another host).
   */
  async request(options: RequestOptions): Promise<HttpResponse> {
    const base = await this.base();
    const url = typeof options.path === 'string' ? new URL(options.path, base) : options.path;
    const once = async (): Promise<HttpResponse> => {
      let refreshed = false;
      for (;;) {
        const headers: Record<string, string> = { ...options.headers };
        const sameHost = url.host === base.host;
        if (sameHost) {
          const auth = await this.authorization(url, options.scopes, refreshed);
          if (auth) headers.Authorization = auth;
        }
        const body = options.body ? await options.body() : undefined;
        let res = await this.sendChecked({ method: options.method, url, headers, body, contentLength: options.contentLength, bulk: options.bulk });
        if (res.status === 401 && sameHost && !refreshed) {
          const challenges = parseChallenges(headerValues(res, 'www-authenticate').join(', '));
          await discard(res);
          const challenge = pickChallenge(challenges);
          const hadAuth = headers.Authorization !== undefined;
          if (challenge) this.challenge = challenge;
          // Retry once with a fresh token (expired or wider scope), or with credentials now that we know the scheme.
          if (challenge && (hadAuth || (await this.credential()) || challenge.scheme === 'bearer')) {
            refreshed = true;
            if (typeof (body as Readable | undefined)?.destroy === 'function') (body as Readable).destroy();
            continue;
          }
          throw await this.authFailure(url, challenge);
        }
        if (res.status === 401) {
          await discard(res);
          throw await this.authFailure(url, this.challenge);
        }
        if ((options.method === 'GET' || options.method === 'HEAD') && [301, 302, 303, 307, 308].includes(res.status)) {
          res = await this.followRedirects(res, options.method, options.headers ?? {}, headers.Authorization, options.bulk);
        }
        if (!options.expect.includes(res.status)) {
          const text = options.method === 'HEAD' ? Buffer.alloc(0) : await readBody(res).catch(() => Buffer.alloc(0));
          if (options.method === 'HEAD') await discard(res);
          throw new RegistryError(
            `${options.method} ${url.pathname} on ${this.registry} answered ${res.status}${describeErrors(text)}`,
            res.status,
            errorCodes(text),
            false,
          );
        }
        return res;
      }
    };
    return options.retry === false ? once() : this.withRetry(`${options.method} ${url.href}`, once);
  }

  private async authFailure(url: URL, challenge: Challenge | undefined): Promise<AuthError> {
    const cred = await this.credential();
    if (cred) return new AuthError(`${this.registry} rejected the credentials from ${cred.source} for ${url.pathname}: check them, or run weft login ${this.registry}`, 401, ['UNAUTHORIZED']);
    return new AuthError(
      `${this.registry} requires authentication${challenge ? ` (${challenge.scheme})` : ''}: run weft login ${this.registry}, or add credentials to ~/.docker/config.json`,
      401,
      ['UNAUTHORIZED'],
    );
  }

  private async followRedirects(first: HttpResponse, method: string, headers: Record<string, string>, auth: string | undefined, bulk?: boolean): Promise<HttpResponse> {
    let res = first;
    for (let hop = 0; hop < 5; hop++) {
      const location = header(res, 'location');
      if (!location) return res;
      const next = new URL(location, res.url);
      await discard(res);
      const h = { ...headers };
      if (auth && next.host === res.url.host && next.protocol === res.url.protocol) h.Authorization = auth;
      res = await this.sendChecked({ method, url: next, headers: h, bulk });
      if (![301, 302, 303, 307, 308].includes(res.status)) return res;
    }
    throw new RegistryError(`too many redirects from ${this.registry}`);
  }

  /** Verifies credentials: pings, then asks for a token (Bearer) or /v2/ with Basic. */
  async verifyLogin(): Promise<void> {
    const base = await this.base();
    if (!this.challenge) {
      throw new AuthError(`${this.registry} does not ask for authentication, so there is nothing to log in to`);
    }
    if (this.challenge.scheme === 'bearer') {
      const cred = await this.credential();
      const token = await this.fetchToken(this.challenge, [], cred);
      if (!token.authenticated) throw new AuthError(`no credentials given for ${this.registry}`);
      return;
    }
    const res = await this.request({ method: 'GET', path: new URL('/v2/', base), scopes: [], expect: [200, 401] });
    await discard(res);
    if (res.status !== 200) throw await this.authFailure(new URL('/v2/', base), this.challenge);
  }
}

function errorCodes(body: Buffer): string[] {
  try {
    const json = JSON.parse(body.toString('utf8')) as { errors?: Array<{ code?: string }> };
    return (json.errors ?? []).map((e) => e.code ?? '').filter(Boolean);
  } catch {
    return [];
  }
}

function describeErrors(body: Buffer): string {
  if (!body.length) return '';
  try {
    const json = JSON.parse(body.toString('utf8')) as { errors?: Array<{ code?: string; message?: string }> };
    if (json.errors?.length) return `: ${json.errors.map((e) => `${e.code ?? ''} ${e.message ?? ''}`.trim()).join('; ')}`;
  } catch {
    /* not JSON */
  }
  return `: ${body.toString('utf8').slice(0, 200).trim()}`;
}
