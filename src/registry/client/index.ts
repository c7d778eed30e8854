// The OCI distribution client: push, pull, copy, tags, referrers, deletes,
// auth and credentials. RegistryClient (client.ts) implements src/image's RemoteTransport.
import { eraseCredential, storeCredential, type CredentialOptions } from './credentials.js';
import { RegistryError } from './errors.js';
import { RegistryClient, type RemoteTransportOptions } from './client.js';

export { RegistryClient, createRemoteTransport, type RemoteTransportOptions } from './client.js';
export { AuthError, DigestMismatchError, InsecureTransportError, RegistryError } from './errors.js';
export { isLoopbackHost, mayCarryCredentials, plainHttpAllowed } from './policy.js';
export { parseChallenges, type Challenge } from './auth.js';
export { lookupCredential, dockerConfigPath, type Credential } from './credentials.js';
export type { PushResult, BlobReport } from './push.js';

export interface LoginOptions extends RemoteTransportOptions {
  credentialOptions?: CredentialOptions;
}

/** Verifies credentials against the registry, then stores them (config.json mode 0600, or the configured helper). */
export async function login(registry: string, username: string, password: string, options: LoginOptions = {}): Promise<{ storedIn: string }> {
  if (!username) throw new RegistryError('weft login needs a user name: pass -u <user>');
  if (!password) throw new RegistryError('weft login needs a password: pipe it to --password-stdin');
  const client = new RegistryClient({ ...options, credentials: { [registry]: { username, password } } });
  try {
    await client.session(registry).verifyLogin();
  } finally {
    client.close();
  }
  const storedIn = await storeCredential(registry, username, password, { env: options.env, ...options.credentialOptions });
  return { storedIn };
}

export async function logout(registry: string, options: { env?: NodeJS.ProcessEnv; credentialOptions?: CredentialOptions } = {}): Promise<boolean> {
  return eraseCredential(registry, { env: options.env, ...options.credentialOptions });
}

export { copyImage, type CopyResult } from './copy.js';
