// htpasswd Basic auth (entries made by the real `htpasswd -B`) and TLS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { startRegistry } from '../../src/registry/server/index.js';
import { errorCode, makeImage, pushImage, raw, run, tempDir, writeLayout } from './helpers.js';

function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

test('htpasswd: 401 with a Basic challenge, wrong password refused, right one accepted', { timeout: 120_000 }, async () => {
  const dir = await tempDir('registry-auth');
  const file = join(dir.path, 'htpasswd');
  const made = await run('htpasswd', ['-B', '-b', '-c', file, 'alice', 's3cret']);
  assert.equal(made.code, 0, `htpasswd (apache2-utils) failed: ${made.stderr}`);
  assert.match(readFileSync(file, 'utf8'), /^alice:\$2y\$/);
  const registry = await startRegistry({ root: join(dir.path, 'root'), htpasswd: file, logLevel: 'silent' });
  try {
    const anonymous = await raw(registry.url, 'GET', '/v2/');
    assert.equal(anonymous.status, 401);
    assert.match(String(anonymous.headers['www-authenticate']), /^Basic realm="[^"]+"/);
    assert.equal(errorCode(anonymous), 'UNAUTHORIZED');
    const wrong = await raw(registry.url, 'GET', '/v2/', { headers: { Authorization: basic('alice', 'nope') } });
    assert.equal(wrong.status, 401);
    const stranger = await raw(registry.url, 'GET', '/v2/', { headers: { Authorization: basic('mallory', 's3cret') } });
    assert.equal(stranger.status, 401);
    const good = await raw(registry.url, 'GET', '/v2/', { headers: { Authorization: basic('alice', 's3cret') } });
    assert.equal(good.status, 200);

    const image = await makeImage(1, 10_000, 'auth');
    await assert.rejects(pushImage(registry.url, 'auth/app', 'v1', image), /401/);
    assert.equal(await pushImage(registry.url, 'auth/app', 'v1', image, { Authorization: basic('alice', 's3cret') }), 201);

    // a real client with credentials
    await writeLayout(join(dir.path, 'layout'), image, 'v1');
    const host = `127.0.0.1:${registry.port}`;
    const denied = await run('skopeo', ['copy', '--dest-tls-verify=false', `oci:${join(dir.path, 'layout')}:v1`, `docker://${host}/auth/skopeo:v1`]);
    assert.notEqual(denied.code, 0, 'skopeo pushed without credentials');
    const copied = await run('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', 'alice:s3cret', `oci:${join(dir.path, 'layout')}:v1`, `docker://${host}/auth/skopeo:v1`]);
    assert.equal(copied.code, 0, copied.stderr);
    const check = await raw(registry.url, 'HEAD', '/v2/auth/skopeo/manifests/v1', { headers: { Authorization: basic('alice', 's3cret') } });
    assert.equal(check.headers['docker-content-digest'], image.manifestDigest);
  } finally {
    await registry.close();
    await dir.cleanup();
  }
});

test('htpasswd with anonymous pull: anyone pulls, pushes and deletes still need a login (a registry nodes pull from)', { timeout: 120_000 }, async () => {
  const dir = await tempDir('registry-anon');
  const file = join(dir.path, 'htpasswd');
  const made = await run('htpasswd', ['-B', '-b', '-c', file, 'alice', 's3cret']);
  assert.equal(made.code, 0, `htpasswd (apache2-utils) failed: ${made.stderr}`);
  const registry = await startRegistry({ root: join(dir.path, 'root'), htpasswd: file, anonymousPull: true, enableDelete: true, logLevel: 'silent' });
  try {
    const ping = await raw(registry.url, 'GET', '/v2/');
    assert.equal(ping.status, 401, 'the /v2/ ping still challenges (clients learn to send credentials for pushes)');
    assert.match(String(ping.headers['www-authenticate']), /^Basic realm=/);
    const image = await makeImage(1, 10_000, 'anon');
    await assert.rejects(pushImage(registry.url, 'anon/app', 'v1', image), /401/, 'an anonymous push is refused');
    assert.equal(await pushImage(registry.url, 'anon/app', 'v1', image, { Authorization: basic('alice', 's3cret') }), 201);
    const pulled = await raw(registry.url, 'GET', '/v2/anon/app/manifests/v1', { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(pulled.status, 200, 'an anonymous pull works');
    assert.equal(pulled.headers['docker-content-digest'], image.manifestDigest);
    const host = `127.0.0.1:${registry.port}`;
    const inspect = await run('skopeo', ['inspect', '--tls-verify=false', `docker://${host}/anon/app:v1`]);
    assert.equal(inspect.code, 0, `skopeo pulls without credentials: ${inspect.stderr}`);
    await writeLayout(join(dir.path, 'layout'), image, 'v1');
    const copied = await run('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', 'alice:s3cret', `oci:${join(dir.path, 'layout')}:v1`, `docker://${host}/anon/skopeo:v1`]);
    assert.equal(copied.code, 0, `skopeo pushes with credentials: ${copied.stderr}`);
    const del = await raw(registry.url, 'DELETE', `/v2/anon/app/manifests/${image.manifestDigest}`);
    assert.equal(del.status, 401, 'an anonymous delete is refused');
  } finally {
    await registry.close();
    await dir.cleanup();
  }
});

test('TLS: the registry serves HTTPS with the given certificate', { timeout: 120_000 }, async () => {
  const dir = await tempDir('registry-tls');
  const cert = join(dir.path, 'cert.pem');
  const key = join(dir.path, 'key.pem');
  const made = await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1']);
  assert.equal(made.code, 0, `openssl failed: ${made.stderr}`);
  const registry = await startRegistry({ root: join(dir.path, 'root'), tlsCert: cert, tlsKey: key, logLevel: 'silent' });
  try {
    assert.match(registry.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${registry.url}/v2/`, { ca: readFileSync(cert) }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(status, 200);
    const image = await makeImage(1, 10_000, 'tls');
    await writeLayout(join(dir.path, 'layout'), image, 'v1');
    const certDir = join(dir.path, 'certs');
    await run('mkdir', ['-p', certDir]);
    await run('cp', [cert, join(certDir, 'ca.crt')]);
    const copied = await run('skopeo', ['copy', '--dest-cert-dir', certDir, `oci:${join(dir.path, 'layout')}:v1`, `docker://127.0.0.1:${registry.port}/tls/app:v1`]);
    assert.equal(copied.code, 0, `skopeo over verified TLS failed: ${copied.stderr}`);
    const inspect = await run('skopeo', ['inspect', '--cert-dir', certDir, `docker://127.0.0.1:${registry.port}/tls/app:v1`]);
    assert.equal(inspect.code, 0, inspect.stderr);
    assert.equal(JSON.parse(inspect.stdout).Digest, image.manifestDigest);
  } finally {
    await registry.close();
    await dir.cleanup();
  }
});
