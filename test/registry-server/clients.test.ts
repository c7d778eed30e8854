// Real clients against the embedded registry: skopeo copy in and out, podman
// pull and push (vfs storage in a temp folder); digests preserved.
import { toolBinary } from '../support/tools.js';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { startRegistry, type RunningRegistry } from '../../src/registry/server/index.js';
import { makeImage, raw, run, sha256, tempDir, writeLayout, type TestImage } from './helpers.js';

let registry: RunningRegistry;
let dir: { path: string; cleanup: () => Promise<void> };
let host: string;
let image: TestImage;

before(async () => {
  dir = await tempDir('registry-clients');
  registry = await startRegistry({ root: join(dir.path, 'root'), logLevel: 'silent' });
  host = `127.0.0.1:${registry.port}`;
  image = await makeImage(3, 300_000, 'clients');
  await writeLayout(join(dir.path, 'layout'), image, 'v1');
});

after(async () => {
  await registry.close();
  await dir.cleanup();
});

function must(result: { code: number | null; stdout: string; stderr: string }, what: string): string {
  assert.equal(result.code, 0, `${what} failed (exit ${result.code}):\n${result.stderr}\n${result.stdout}`);
  return result.stdout;
}

test('skopeo copy into the registry and back out keeps every digest', { timeout: 180_000 }, async () => {
  must(await run('skopeo', ['copy', '--dest-tls-verify=false', `oci:${join(dir.path, 'layout')}:v1`, `docker://${host}/clients/skopeo:v1`]), 'skopeo copy in');
  const manifest = await raw(registry.url, 'GET', '/v2/clients/skopeo/manifests/v1', { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
  assert.equal(manifest.status, 200);
  assert.equal(manifest.headers['docker-content-digest'], image.manifestDigest, 'manifest digest changed on the way in');
  assert.ok(manifest.body.equals(image.manifest));

  const inspect = JSON.parse(must(await run('skopeo', ['inspect', '--tls-verify=false', `docker://${host}/clients/skopeo:v1`]), 'skopeo inspect'));
  assert.equal(inspect.Digest, image.manifestDigest);
  assert.deepEqual(inspect.Layers, image.layerDigests);

  const out = join(dir.path, 'out');
  must(await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${host}/clients/skopeo:v1`, `oci:${out}:v1`]), 'skopeo copy out');
  const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8'));
  assert.equal(index.manifests[0].digest, image.manifestDigest);
  for (const digest of [image.configDigest, ...image.layerDigests]) {
    const blob = await readFile(join(out, 'blobs', 'sha256', digest.slice(7)));
    assert.equal(sha256(blob), digest);
  }
  // and registry to registry (skopeo mounts or re-uploads), preserving the digest
  must(await run('skopeo', ['copy', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${host}/clients/skopeo:v1`, `docker://${host}/clients/other:v2`]), 'skopeo copy between repositories');
  assert.equal((await raw(registry.url, 'HEAD', '/v2/clients/other/manifests/v2')).headers['docker-content-digest'], image.manifestDigest);
});

test('podman pulls from and pushes to the registry', { timeout: 300_000 }, async () => {
  must(await run('skopeo', ['copy', '--dest-tls-verify=false', `oci:${join(dir.path, 'layout')}:v1`, `docker://${host}/clients/podman:v1`]), 'skopeo copy in');
  const storage = ['--root', join(dir.path, 'podman', 'root'), '--runroot', join(dir.path, 'podman', 'run'), '--storage-driver', 'vfs', '--events-backend', 'file', '--cgroup-manager', 'cgroupfs'];
  const env = { ...process.env, XDG_RUNTIME_DIR: join(dir.path, 'podman', 'xdg'), XDG_CONFIG_HOME: join(dir.path, 'podman', 'config') };
  try {
    must(await run('podman', [...storage, 'pull', '--tls-verify=false', `${host}/clients/podman:v1`], { env }), 'podman pull');
    const id = must(await run('podman', [...storage, 'image', 'inspect', '--format', '{{.Id}}', `${host}/clients/podman:v1`], { env }), 'podman inspect').trim();
    assert.equal(`sha256:${id}`, image.configDigest, 'podman image id is the config digest');
    must(await run('podman', [...storage, 'push', '--tls-verify=false', `${host}/clients/podman:v1`, `docker://${host}/clients/pushed:v1`], { env }), 'podman push');
    const pushed = await raw(registry.url, 'GET', '/v2/clients/pushed/manifests/v1', { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' } });
    assert.equal(pushed.status, 200);
    assert.equal(sha256(pushed.body), pushed.headers['docker-content-digest']);
    const doc = JSON.parse(pushed.body.toString('utf8'));
    assert.equal(doc.config.digest, image.configDigest, 'podman push keeps the config (image id)');
    for (const layer of doc.layers as Array<{ digest: string; size: number }>) {
      const blob = await raw(registry.url, 'GET', `/v2/clients/pushed/blobs/${layer.digest}`);
      assert.equal(blob.status, 200);
      assert.equal(sha256(blob.body), layer.digest);
      assert.equal(blob.body.length, layer.size);
    }
    // pull what podman pushed, into a fresh store
    const fresh = ['--root', join(dir.path, 'podman2', 'root'), '--runroot', join(dir.path, 'podman2', 'run'), '--storage-driver', 'vfs', '--events-backend', 'file', '--cgroup-manager', 'cgroupfs'];
    must(await run('podman', [...fresh, 'pull', '--tls-verify=false', `${host}/clients/pushed:v1`], { env }), 'podman pull of the pushed image');
    const id2 = must(await run('podman', [...fresh, 'image', 'inspect', '--format', '{{.Id}}', `${host}/clients/pushed:v1`], { env }), 'podman inspect').trim();
    assert.equal(`sha256:${id2}`, image.configDigest);
  } finally {
    // vfs layers may be owned by root with odd modes: let podman remove its own store
    await run('podman', [...storage, 'system', 'reset', '--force'], { env }).catch(() => undefined);
  }
});

/** crane is built by scripts/setup.d/35-crane.sh (scripts/setup --test) into $WEFT_TOOLS/crane-<version>/. */
async function crane(): Promise<string> {
  return toolBinary('crane', 'crane', 'scripts/setup.d/35-crane.sh');
}

test('crane push, copy and pull against the registry keep the digest', { timeout: 180_000 }, async () => {
  const bin = await crane();
  const pushed = await run(bin, ['push', '--insecure', join(dir.path, 'layout'), `${host}/clients/crane:v1`]);
  assert.equal(pushed.code, 0, pushed.stderr);
  assert.equal(pushed.stdout.trim(), `${host}/clients/crane@${image.manifestDigest}`);
  const copied = await run(bin, ['copy', '--insecure', `${host}/clients/crane:v1`, `${host}/clients/crane-copy:v1`]);
  assert.equal(copied.code, 0, copied.stderr);
  const digest = await run(bin, ['digest', '--insecure', `${host}/clients/crane-copy:v1`]);
  assert.equal(digest.stdout.trim(), image.manifestDigest);
  const out = join(dir.path, 'crane-out');
  const pulled = await run(bin, ['pull', '--insecure', '--format', 'oci', `${host}/clients/crane-copy:v1`, out]);
  assert.equal(pulled.code, 0, pulled.stderr);
  const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8'));
  assert.equal(index.manifests[0].digest, image.manifestDigest);
  for (const d of image.layerDigests) assert.equal(sha256(await readFile(join(out, 'blobs', 'sha256', d.slice(7)))), d);
  const tags = await run(bin, ['ls', '--insecure', `${host}/clients/crane-copy`]);
  assert.deepEqual(tags.stdout.trim().split('\n'), ['v1']);
});
