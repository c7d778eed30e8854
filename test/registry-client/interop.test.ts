// Interoperability with independent clients: skopeo (Debian) and crane
// (go-containerregistry), both directions, through the weft CLI.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createRemoteTransport } from '../../src/registry/client/index.js';
import { parseDockerReference } from '../../src/image/reference.js';
import { craneBinary, run, startDistribution, syntheticImage, tempDir, writeLayoutByHand, type Distribution, type SyntheticImage } from './helpers.js';

// The installed command (package.json bin: the bundle, with its code cache).
const weftMain = path.resolve('dist/bin/weft.cjs');
let registry: Distribution;
let image: SyntheticImage;
let other: SyntheticImage;
let work: string;
let layout: string;
let otherLayout: string;

const weft = (args: string[]) => run(process.execPath, [weftMain, ...args], { env: { ...process.env, NO_COLOR: '1' } });

before(async () => {
  registry = await startDistribution();
  work = await tempDir('weft-interop-');
  image = await syntheticImage([{ name: 'lib.jar', size: 400_000, seed: 'interop-lib' }, { name: 'classes', size: 80_000, seed: 'interop-classes' }], 'weft');
  other = await syntheticImage([{ name: 'lib.jar', size: 300_000, seed: 'peer-lib' }], 'peer');
  layout = path.join(work, 'layout');
  otherLayout = path.join(work, 'other-layout');
  await writeLayoutByHand(layout, image, 'v1');
  await writeLayoutByHand(otherLayout, other, 'v1');
});
after(async () => {
  await registry?.close();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

async function crane(args: string[]) {
  const bin = craneBinary();
  try {
    await fs.access(bin);
  } catch {
    throw new Error(`crane is missing at ${bin}: run scripts/setup --test (scripts/setup.d/35-crane.sh builds it)`);
  }
  return run(bin, args);
}

test('weft copy oci: -> docker:// pushes what skopeo and crane read back with the same digest', async () => {
  const target = `${registry.host}/interop/weft:v1`;
  const out = await weft(['copy', `oci:${layout}:v1`, `docker://${target}`, '--json']);
  assert.equal(out.code, 0, out.stderr + out.stdout);
  const summary = JSON.parse(out.stdout) as { digest: string; counts: { sent: number } };
  assert.equal(summary.digest, image.manifestDigest);
  assert.equal(summary.counts.sent, 3);

  const sk = await run('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${target}`]);
  assert.equal(sk.code, 0, sk.stderr);
  assert.equal(sk.stdout, image.manifestBytes.toString());
  const skCopy = await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${target}`, `oci:${path.join(work, 'skopeo-out')}:v1`]);
  assert.equal(skCopy.code, 0, skCopy.stderr);
  const skIndex = JSON.parse(await fs.readFile(path.join(work, 'skopeo-out', 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  assert.equal(skIndex.manifests[0]!.digest, image.manifestDigest);

  const cd = await crane(['digest', '--insecure', target]);
  assert.equal(cd.code, 0, cd.stderr);
  assert.equal(cd.stdout.trim(), image.manifestDigest);
  const cp = await crane(['pull', '--insecure', '--format=oci', target, path.join(work, 'crane-out')]);
  assert.equal(cp.code, 0, cp.stderr);
  const cIndex = JSON.parse(await fs.readFile(path.join(work, 'crane-out', 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  assert.equal(cIndex.manifests[0]!.digest, image.manifestDigest);
});

test('weft reads what skopeo pushed and what crane pushed, digests preserved', async () => {
  const bySkopeo = `${registry.host}/interop/skopeo:v1`;
  const sk = await run('skopeo', ['copy', '--dest-tls-verify=false', `oci:${otherLayout}:v1`, `docker://${bySkopeo}`]);
  assert.equal(sk.code, 0, sk.stderr);
  const client = createRemoteTransport();
  try {
    const a = await client.open(parseDockerReference(bySkopeo));
    assert.equal(a.manifestDigest, other.manifestDigest);
    for (const layer of a.manifest.layers) for await (const _ of await a.openBlob(layer)) void _;

    const byCrane = `${registry.host}/interop/crane:v1`;
    const cr = await crane(['push', '--insecure', otherLayout, byCrane]);
    assert.equal(cr.code, 0, cr.stderr);
    const b = await client.open(parseDockerReference(byCrane));
    assert.equal(b.manifestDigest, other.manifestDigest);
    assert.deepEqual(b.manifestBytes, other.manifestBytes);
  } finally {
    client.close();
  }
});

test('crane copies what weft pushed; weft copies registry to registry, then to oci: and docker-archive:', async () => {
  const src = `${registry.host}/interop/weft:v1`;
  await weft(['copy', `oci:${layout}:v1`, `docker://${src}`, '-q']);
  const cc = await crane(['copy', '--insecure', src, `${registry.host}/interop/crane-copy:v1`]);
  assert.equal(cc.code, 0, cc.stderr);
  const out = await weft(['copy', `docker://${registry.host}/interop/crane-copy:v1`, `docker://${registry.host}/interop/weft-copy:v1`, '--json']);
  assert.equal(out.code, 0, out.stderr);
  const summary = JSON.parse(out.stdout) as { digest: string; counts: { mounted: number; sent: number } };
  assert.equal(summary.digest, image.manifestDigest);
  assert.equal(summary.counts.mounted, 3, 'same registry: every blob mounted');

  const ociOut = path.join(work, 'weft-out');
  const o = await weft(['copy', `docker://${registry.host}/interop/weft-copy:v1`, `oci:${ociOut}:v1`, '-q']);
  assert.equal(o.code, 0, o.stderr);
  const ins = await run('skopeo', ['inspect', '--raw', `oci:${ociOut}:v1`]);
  assert.equal(ins.code, 0, ins.stderr);
  assert.equal(ins.stdout, image.manifestBytes.toString());

  const archive = path.join(work, 'app.tar');
  const a = await weft(['copy', `docker://${registry.host}/interop/weft-copy:v1`, `docker-archive:${archive}:interop/app:v1`, '-q']);
  assert.equal(a.code, 0, a.stderr);
  const arch = await run('skopeo', ['inspect', '--config', `docker-archive:${archive}`]);
  assert.equal(arch.code, 0, arch.stderr);
  assert.equal(JSON.parse(arch.stdout).config.Labels['weft.test'], 'weft', 'the archive carries the same config');

  const inspect = await weft(['inspect', `docker://${registry.host}/interop/weft-copy:v1`, '--json']);
  assert.equal(inspect.code, 0, inspect.stderr);
  const info = JSON.parse(inspect.stdout) as { digest: string; layers: number; labels: Record<string, string> };
  assert.equal(info.digest, image.manifestDigest);
  assert.equal(info.layers, 2);
  assert.equal(info.labels['weft.test'], 'weft');
  const raw = await weft(['inspect', '--raw', `docker://${registry.host}/interop/weft-copy:v1`]);
  assert.equal(raw.stdout, image.manifestBytes.toString());
});

test('weft copy rejects bad input with a hint and writes nothing', async () => {
  const bad = await weft(['copy', `oci:${layout}:v1`, 'ftp://nowhere']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /unsupported image reference.*docker:\/\//);
  const missing = await weft(['copy', `docker://${registry.host}/interop/nothing:v1`, `oci:${path.join(work, 'never')}:v1`]);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /404|MANIFEST_UNKNOWN|unknown/i);
  await assert.rejects(fs.access(path.join(work, 'never')));
});
