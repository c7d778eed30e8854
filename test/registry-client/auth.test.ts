// Authentication against a real distribution registry: htpasswd Basic and a
// bearer-token server written here (RS256 JWTs signed with node:crypto, the
// certificate made with openssl), plus credential files and login/logout.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createSign, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { copyImage, createRemoteTransport, login, logout, lookupCredential } from '../../src/registry/client/index.js';
import { parseDockerReference } from '../../src/image/reference.js';
import { run, startDistribution, startProxy, syntheticImage, tempDir, type Distribution, type SyntheticImage } from './helpers.js';

let image: SyntheticImage;
let work: string;

before(async () => {
  image = await syntheticImage([{ name: 'a', size: 100_000, seed: 'auth-a' }, { name: 'b', size: 50_000, seed: 'auth-b' }]);
  work = await tempDir('weft-auth-');
});
after(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

async function htpasswdFile(user: string, password: string): Promise<string> {
  const out = await run('htpasswd', ['-Bbn', user, password]);
  if (out.code !== 0) throw new Error(`htpasswd failed (install apache2-utils): ${out.stderr}`);
  const file = path.join(work, `htpasswd-${user}`);
  await fs.writeFile(file, out.stdout);
  return file;
}

test('htpasswd Basic auth: anonymous push is refused with a hint, credentials from config.json work, login/logout', async () => {
  const registry = await startDistribution({ auth: { htpasswd: await htpasswdFile('alice', 's3cret') } });
  const dockerConfig = path.join(work, 'docker-basic');
  const env = { ...process.env, DOCKER_CONFIG: dockerConfig, REGISTRY_AUTH_FILE: '', XDG_RUNTIME_DIR: path.join(work, 'none'), HOME: work };
  try {
    const anonymous = createRemoteTransport({ env });
    await assert.rejects(anonymous.push(image, parseDockerReference(`${registry.host}/team/app:1`)), /requires authentication.*weft login/);
    anonymous.close();

    await assert.rejects(login(registry.host, 'alice', 'wrong', { env }), /rejected|UNAUTHORIZED/);
    await assert.rejects(fs.access(path.join(dockerConfig, 'config.json')), 'a failed login writes nothing');

    const { storedIn } = await login(registry.host, 'alice', 's3cret', { env });
    assert.equal(storedIn, path.join(dockerConfig, 'config.json'));
    const stat = await fs.stat(storedIn);
    assert.equal(stat.mode & 0o777, 0o600);
    const saved = JSON.parse(await fs.readFile(storedIn, 'utf8')) as { auths: Record<string, { auth: string }> };
    assert.equal(Buffer.from(saved.auths[registry.host]!.auth, 'base64').toString(), 'alice:s3cret');

    const client = createRemoteTransport({ env });
    const result = await client.push(image, parseDockerReference(`${registry.host}/team/app:1`));
    assert.equal(result.digest, image.manifestDigest);
    const pulled = await client.open(parseDockerReference(`${registry.host}/team/app:1`));
    assert.equal(pulled.manifestDigest, image.manifestDigest);
    client.close();

    // skopeo, reading the same docker config, sees what weft pushed.
    const sk = await run('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${registry.host}/team/app:1`], { env: { ...env, REGISTRY_AUTH_FILE: path.join(dockerConfig, 'config.json') } });
    assert.equal(sk.code, 0, sk.stderr);
    assert.equal(sk.stdout.trim(), image.manifestBytes.toString());

    assert.equal(await logout(registry.host, { env }), true);
    assert.equal(await lookupCredential(registry.host, undefined, { env }), undefined);

    // The CLI: weft login --password-stdin, then weft logout.
    const cli = (args: string[], input = '') => run(process.execPath, [path.resolve('dist/src/cli/main.js'), ...args], { input, env: { ...env, NO_COLOR: '1' } });
    const bad = await cli(['login', registry.host, '-u', 'alice', '--password-stdin'], 'nope\n');
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /rejected the credentials/);
    const good = await cli(['login', registry.host, '-u', 'alice', '--password-stdin', '--json'], 's3cret\n');
    assert.equal(good.code, 0, good.stderr);
    assert.equal(JSON.parse(good.stdout).storedIn, path.join(dockerConfig, 'config.json'));
    assert.equal((await lookupCredential(registry.host, undefined, { env }))?.password, 's3cret');
    const out = await cli(['logout', registry.host]);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(await lookupCredential(registry.host, undefined, { env }), undefined);
  } finally {
    await registry.close();
  }
});

/** A token server implementing the distribution token spec, signing RS256 JWTs with an x5c header. */
async function startTokenServer(dir: string, users: Record<string, string>) {
  const key = path.join(dir, 'token.key');
  const cert = path.join(dir, 'token.crt');
  const ssl = await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=weft-test-token']);
  if (ssl.code !== 0) throw new Error(`openssl could not make the token certificate: ${ssl.stderr}`);
  const keyPem = await fs.readFile(key, 'utf8');
  const certDer = (await fs.readFile(cert, 'utf8')).replace(/-----[^-]+-----|\s/g, '');
  const seen: Array<{ scopes: string[]; user?: string; service?: string }> = [];
  const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const scopes = url.searchParams.getAll('scope');
    let user: string | undefined;
    const auth = req.headers.authorization;
    if (auth?.startsWith('Basic ')) {
      const [u, p] = Buffer.from(auth.slice(6), 'base64').toString().split(':');
      if (users[u!] !== p) {
        res.writeHead(401).end('{"details":"bad credentials"}');
        return;
      }
      user = u;
    }
    seen.push({ scopes, user, service: url.searchParams.get('service') ?? undefined });
    const access = scopes.map((s) => {
      const [type, name, actions] = s.split(':');
      // Anonymous users may only pull; alice may push too.
      const granted = (actions ?? '').split(',').filter((a) => a === 'pull' || (user === 'alice' && (a === 'push' || a === 'delete')));
      return { type, name, actions: granted };
    });
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'RS256', x5c: [certDer] };
    const claims = { iss: 'weft-test-issuer', sub: user ?? '', aud: 'weft-test-service', exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access };
    const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = createSign('RSA-SHA256').update(signingInput).sign(keyPem);
    const token = `${signingInput}.${b64url(signature)}`;
    res.writeHead(200, { 'Content-Type': 'application/json' });
    // Alternate the two field names the spec allows.
    res.end(JSON.stringify(seen.length % 2 ? { token, expires_in: 300 } : { access_token: token, expires_in: 300 }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return { realm: `http://127.0.0.1:${port}/token`, cert, seen, close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

test('bearer token auth: scoped tokens from a token server, mount scopes, credentials from Podman auth.json', async () => {
  const dir = await tempDir('weft-token-');
  const tokens = await startTokenServer(dir, { alice: 'wonderland' });
  let registry: Distribution | undefined;
  try {
    registry = await startDistribution({ auth: { token: { realm: tokens.realm, service: 'weft-test-service', issuer: 'weft-test-issuer', rootcertbundle: tokens.cert } } });
    const authFile = path.join(dir, 'auth.json');
    const proxy = await startProxy(registry);
    const alice = { auth: Buffer.from('alice:wonderland').toString('base64') };
    await fs.writeFile(authFile, JSON.stringify({ auths: { [registry.host]: alice, [proxy.host]: alice } }));
    const env = { ...process.env, REGISTRY_AUTH_FILE: authFile, DOCKER_CONFIG: path.join(dir, 'nodocker') };

    // Anonymous: pull scope granted but push refused -> clear error.
    const anonymous = createRemoteTransport({ env: { ...env, REGISTRY_AUTH_FILE: path.join(dir, 'missing.json'), HOME: dir } });
    await assert.rejects(anonymous.push(image, parseDockerReference(`${registry.host}/team/app:1`)), /authentication|UNAUTHORIZED|denied/i);
    anonymous.close();

    try {
      const client = createRemoteTransport({ env });
      const pushed = await client.push(image, parseDockerReference(`${proxy.host}/team/app:1`));
      assert.equal(pushed.digest, image.manifestDigest);
      const pushScope = tokens.seen.find((s) => s.user === 'alice' && s.scopes.includes('repository:team/app:pull,push'));
      assert.ok(pushScope, `token requested with push scope: ${JSON.stringify(tokens.seen)}`);
      assert.equal(pushScope.service, 'weft-test-service');
      // Tokens are cached per scope: one token fetch for the whole push.
      assert.equal(tokens.seen.filter((s) => s.user === 'alice' && s.scopes.join(' ') === 'repository:team/app:pull,push').length, 1, JSON.stringify(tokens.seen));
      assert.ok(proxy.requests.filter((r) => r.method === 'PUT').every((r) => r.authorization?.startsWith('Bearer ')));

      // Mount across repositories asks for pull on the source and push on the target in one token.
      const source = await client.open(parseDockerReference(`${proxy.host}/team/app:1`));
      const mounted = await client.push(source, parseDockerReference(`${proxy.host}/team/other:1`));
      assert.ok(mounted.blobs.every((b) => b.status === 'mounted'), JSON.stringify(mounted.blobs));
      assert.ok(tokens.seen.some((s) => s.scopes.includes('repository:team/app:pull') && s.scopes.includes('repository:team/other:pull,push')));

      // A layer of 1 MiB or more is read off the socket directly (direct-read.ts): with the bearer token too.
      const big = await syntheticImage([{ name: 'big', size: 3 * 1024 * 1024, seed: 'auth-big' }]);
      await client.push(big, parseDockerReference(`${proxy.host}/team/big:1`));
      proxy.reset();
      const out = path.join(dir, 'pulled');
      await copyImage(client, `docker://${proxy.host}/team/big:1`, `oci:${out}:1`);
      const layer = big.manifest.layers[0]!;
      const layerBytes = await fs.readFile(path.join(out, 'blobs', 'sha256', layer.digest.slice(7)));
      assert.equal(`sha256:${createHash('sha256').update(layerBytes).digest('hex')}`, layer.digest);
      const layerGets = proxy.requests.filter((r) => r.method === 'GET' && r.url.endsWith(layer.digest));
      assert.equal(layerGets.length, 1, JSON.stringify(proxy.requests));
      assert.ok(layerGets[0]!.authorization?.startsWith('Bearer '), 'the direct read carried the token');
      client.close();

      // weft login against a token-auth registry verifies by asking the token server.
      const loginEnv = { ...env, DOCKER_CONFIG: path.join(dir, 'docker-login') };
      await assert.rejects(login(registry.host, 'alice', 'wrong', { env: loginEnv }), /rejected the credentials/);
      const stored = await login(registry.host, 'alice', 'wonderland', { env: loginEnv });
      assert.equal(stored.storedIn, path.join(dir, 'docker-login', 'config.json'));
      assert.ok(tokens.seen.some((s) => s.user === 'alice' && s.scopes.length === 0), 'login asked for an unscoped token with the credentials');
    } finally {
      await proxy.close();
    }
  } finally {
    await registry?.close();
    await tokens.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('credential helpers: credHelpers and credsStore run docker-credential-<name> get with the server URL', async () => {
  const dir = await tempDir('weft-helper-');
  try {
    const calls: string[] = [];
    const runHelper = async (helper: string, action: string, input: string) => {
      calls.push(`${helper} ${action} ${input}`);
      if (input === 'reg.example.test') return JSON.stringify({ ServerURL: input, Username: 'bob', Secret: 'pw' });
      if (input === 'https://index.docker.io/v1/') return JSON.stringify({ ServerURL: input, Username: '<token>', Secret: 'refresh-me' });
      return '';
    };
    await fs.writeFile(path.join(dir, 'config.json'), JSON.stringify({ credHelpers: { 'reg.example.test': 'pass' }, credsStore: 'secretservice', auths: { 'other.example.test': { username: 'u', password: 'p' } } }));
    const env = { DOCKER_CONFIG: dir, HOME: dir };
    const a = await lookupCredential('reg.example.test', undefined, { env, runHelper });
    assert.deepEqual([a?.username, a?.password], ['bob', 'pw']);
    const hub = await lookupCredential('docker.io', undefined, { env, runHelper });
    assert.equal(hub?.identityToken, 'refresh-me');
    const other = await lookupCredential('other.example.test', undefined, { env, runHelper });
    assert.deepEqual([other?.username, other?.password], ['u', 'p']);
    assert.deepEqual(calls.slice(0, 2), ['pass get reg.example.test', 'secretservice get https://index.docker.io/v1/']);
    // A real helper on PATH: a shell script speaking the protocol.
    const bin = path.join(dir, 'bin');
    await fs.mkdir(bin);
    await fs.writeFile(path.join(bin, 'docker-credential-weft-test'), '#!/bin/sh\nread url\necho "{\\"ServerURL\\":\\"$url\\",\\"Username\\":\\"carol\\",\\"Secret\\":\\"x-$url\\"}"\n', { mode: 0o755 });
    await fs.writeFile(path.join(dir, 'config.json'), JSON.stringify({ credsStore: 'weft-test' }));
    const viaPath = await lookupCredential('127.0.0.1:5000', undefined, { env: { ...env, PATH: `${bin}:${process.env.PATH}` } });
    assert.deepEqual([viaPath?.username, viaPath?.password], ['carol', 'x-127.0.0.1:5000']);
    // A helper that is not installed is a clear error.
    await assert.rejects(lookupCredential('127.0.0.1:5000', undefined, { env: { ...env, PATH: '/nonexistent' } }), /install docker-credential-weft-test/);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});
