// Where registry credentials come from, in this order:
//   1. $REGISTRY_AUTH_FILE (Podman/skopeo auth.json), when set
//   2. Docker's $DOCKER_CONFIG/config.json (default ~/.docker/config.json):
//      credHelpers[host] -> docker-credential-<helper>, else credsStore, else auths
//   3. Podman's ${XDG_RUNTIME_DIR}/containers/auth.json, then ~/.config/containers/auth.json
// auths entries may be keyed "host", "https://host", "https://host/v1/" or, in
// auth.json, "host/namespace/repo" (the longest matching prefix wins).
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface Credential {
  username?: string;
  password?: string;
  /** An OAuth2 refresh token (docker's identitytoken, or a helper's "<token>" user). */
  identityToken?: string;
  /** A bearer token to send as-is (auth.json's registrytoken). */
  registryToken?: string;
  /** Where it came from, for messages (never the secret itself). */
  source: string;
}

export interface CredentialOptions {
  env?: NodeJS.ProcessEnv;
  /** Runs docker-credential-<name>; injectable for tests. */
  runHelper?: (helper: string, action: 'get' | 'store' | 'erase', input: string, env?: NodeJS.ProcessEnv) => Promise<string>;
}

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
  registrytoken?: string;
}

export interface DockerConfig {
  auths?: Record<string, AuthEntry>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
  [key: string]: unknown;
}

const dockerHubKeys = ['https://index.docker.io/v1/', 'index.docker.io', 'docker.io', 'registry-1.docker.io'];

export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.DOCKER_CONFIG || path.join(env.HOME || os.homedir(), '.docker');
  return path.join(dir, 'config.json');
}

function podmanAuthFiles(env: NodeJS.ProcessEnv): string[] {
  const files: string[] = [];
  if (env.XDG_RUNTIME_DIR) files.push(path.join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json'));
  const configHome = env.XDG_CONFIG_HOME || path.join(env.HOME || os.homedir(), '.config');
  files.push(path.join(configHome, 'containers', 'auth.json'));
  return files;
}

/** The key under which docker stores a registry's credentials. */
export function configKey(registry: string): string {
  return dockerHubKeys.includes(registry) ? 'https://index.docker.io/v1/' : registry;
}

/** Normalises a config key ("https://host/v1/" -> "host") for matching. */
function normaliseKey(key: string): string {
  return key.replace(/^https?:\/\//, '').replace(/\/v[12]\/?$/, '').replace(/\/$/, '').toLowerCase();
}

function hostMatches(key: string, registry: string): boolean {
  const k = normaliseKey(key);
  const r = registry.toLowerCase();
  if (k === r) return true;
  return dockerHubKeys.includes(r) && dockerHubKeys.map(normaliseKey).includes(k);
}

async function readJson(file: string): Promise<DockerConfig | undefined> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    return JSON.parse(text) as DockerConfig;
  } catch (error) {
    throw new Error(`cannot parse ${file}: ${(error as Error).message}; fix or remove the file`);
  }
}

function fromEntry(entry: AuthEntry, source: string): Credential | undefined {
  if (entry.registrytoken) return { registryToken: entry.registrytoken, source };
  if (entry.identitytoken) {
    let username: string | undefined = entry.username;
    if (!username && entry.auth) username = Buffer.from(entry.auth, 'base64').toString('utf8').split(':')[0];
    return { identityToken: entry.identitytoken, username, source };
  }
  if (entry.auth) {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw new Error(`the "auth" entry in ${source} is not base64 of "user:password"; run weft login again`);
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1), source };
  }
  if (entry.username !== undefined && entry.password !== undefined) return { username: entry.username, password: entry.password, source };
  return undefined;
}

/** Finds an auths entry for registry (and, for auth.json, repository-scoped keys, longest first). */
function findEntry(auths: Record<string, AuthEntry> | undefined, registry: string, repository?: string): AuthEntry | undefined {
  if (!auths) return undefined;
  if (repository) {
    const parts = repository.split('/');
    for (let i = parts.length; i > 0; i--) {
      const key = `${registry}/${parts.slice(0, i).join('/')}`;
      if (auths[key]) return auths[key];
    }
  }
  for (const [key, entry] of Object.entries(auths)) if (hostMatches(key, registry)) return entry;
  return undefined;
}

export function defaultRunHelper(helper: string, action: 'get' | 'store' | 'erase', input: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(`docker-credential-${helper}`, [action], { timeout: 30_000, env }, (error, stdout, stderr) => {
      if (error) {
        const text = `${stdout}${stderr}`.trim();
        if (action === 'get' && /credentials not found/i.test(text)) return resolve('');
        const hint = (error as NodeJS.ErrnoException).code === 'ENOENT' ? `: install docker-credential-${helper} or remove it from ${dockerConfigPath(env)}` : `: ${text}`;
        return reject(new Error(`docker-credential-${helper} ${action} failed${hint}`));
      }
      resolve(stdout);
    });
    child.stdin?.end(input);
  });
}

async function fromHelper(helper: string, registry: string, options: CredentialOptions): Promise<Credential | undefined> {
  const run = options.runHelper ?? defaultRunHelper;
  const serverUrl = configKey(registry);
  const out = await run(helper, 'get', serverUrl, options.env ?? process.env);
  if (!out.trim()) return undefined;
  let parsed: { Username?: string; Secret?: string };
  try {
    parsed = JSON.parse(out) as { Username?: string; Secret?: string };
  } catch {
    throw new Error(`docker-credential-${helper} get returned something that is not JSON`);
  }
  const source = `docker-credential-${helper}`;
  if (parsed.Username === '<token>') return { identityToken: parsed.Secret, source };
  return { username: parsed.Username, password: parsed.Secret, source };
}

/** Looks up credentials for a registry host[:port] (and optionally a repository). */
export async function lookupCredential(registry: string, repository?: string, options: CredentialOptions = {}): Promise<Credential | undefined> {
  const env = options.env ?? process.env;
  if (env.REGISTRY_AUTH_FILE) {
    const config = await readJson(env.REGISTRY_AUTH_FILE);
    const entry = findEntry(config?.auths, registry, repository);
    if (entry) return fromEntry(entry, env.REGISTRY_AUTH_FILE);
  }
  const dockerFile = dockerConfigPath(env);
  const docker = await readJson(dockerFile);
  if (docker) {
    const helperKey = Object.keys(docker.credHelpers ?? {}).find((key) => hostMatches(key, registry));
    const helper = helperKey ? docker.credHelpers![helperKey] : undefined;
    if (helper) {
      const cred = await fromHelper(helper, registry, options);
      if (cred) return cred;
    } else if (docker.credsStore) {
      const cred = await fromHelper(docker.credsStore, registry, options);
      if (cred) return cred;
    }
    const entry = findEntry(docker.auths, registry, repository);
    if (entry) {
      const cred = fromEntry(entry, dockerFile);
      if (cred) return cred;
    }
  }
  for (const file of podmanAuthFiles(env)) {
    const config = await readJson(file);
    const entry = findEntry(config?.auths, registry, repository);
    if (entry) {
      const cred = fromEntry(entry, file);
      if (cred) return cred;
    }
  }
  return undefined;
}

async function writeConfigAtomically(file: string, config: DockerConfig): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.weft-${process.pid}-${Date.now()}`;
  await fs.writeFile(tmp, `${JSON.stringify(config, null, '\t')}\n`, { mode: 0o600 });
  await fs.chmod(tmp, 0o600);
  await fs.rename(tmp, file);
}

/** Stores credentials where docker would: the configured helper, else config.json auths (mode 0600). Returns where. */
export async function storeCredential(registry: string, username: string, password: string, options: CredentialOptions = {}): Promise<string> {
  const env = options.env ?? process.env;
  const file = dockerConfigPath(env);
  const config = (await readJson(file)) ?? {};
  const helper = config.credHelpers?.[registry] ?? config.credsStore;
  if (helper) {
    const run = options.runHelper ?? defaultRunHelper;
    await run(helper, 'store', JSON.stringify({ ServerURL: configKey(registry), Username: username, Secret: password }), env);
    return `docker-credential-${helper}`;
  }
  config.auths = { ...(config.auths ?? {}) };
  for (const key of Object.keys(config.auths)) if (hostMatches(key, registry)) delete config.auths[key];
  config.auths[configKey(registry)] = { auth: Buffer.from(`${username}:${password}`).toString('base64') };
  await writeConfigAtomically(file, config);
  return file;
}

/** Removes stored credentials for a registry. Returns false when there were none. */
export async function eraseCredential(registry: string, options: CredentialOptions = {}): Promise<boolean> {
  const env = options.env ?? process.env;
  const file = dockerConfigPath(env);
  const config = await readJson(file);
  if (!config) return false;
  let removed = false;
  const helper = config.credHelpers?.[registry] ?? config.credsStore;
  if (helper) {
    const run = options.runHelper ?? defaultRunHelper;
    await run(helper, 'erase', configKey(registry), env);
    removed = true;
  }
  if (config.auths) {
    for (const key of Object.keys(config.auths)) {
      if (hostMatches(key, registry)) {
        delete config.auths[key];
        removed = true;
      }
    }
    if (removed) await writeConfigAtomically(file, config);
  }
  return removed;
}
