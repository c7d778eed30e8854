// Garbage collection: unreferenced old blobs go; referenced blobs, recent
// pushes and in-flight uploads stay. Runs the real `weft registry gc` command.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startRegistry } from '../../src/registry/server/index.js';
import { makeImage, pushBlob, pushImage, raw, run, sha256, tempDir } from './helpers.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

function blobFile(root: string, digest: string): string {
  const hex = digest.slice(7);
  return join(root, 'blobs', 'sha256', hex.slice(0, 2), hex);
}

async function age(root: string, digest: string): Promise<void> {
  const old = new Date(Date.now() - 3 * 3600_000);
  await utimes(blobFile(root, digest), old, old);
}

test('gc deletes only old unreferenced blobs, keeping referenced, recent and in-flight ones', { timeout: 120_000 }, async () => {
  const dir = await tempDir('registry-gc');
  const root = join(dir.path, 'root');
  const registry = await startRegistry({ root, logLevel: 'silent', enableDelete: true });
  try {
    const base = registry.url;
    const kept = await makeImage(2, 20_000, 'kept');
    const dropped = await makeImage(2, 20_000, 'dropped');
    assert.equal(await pushImage(base, 'gc/app', 'kept', kept), 201);
    assert.equal(await pushImage(base, 'gc/app', 'dropped', dropped), 201);
    // an old unreferenced blob, and a recent one (pushed, manifest not yet)
    const orphan = randomBytes(5000);
    const recent = randomBytes(5000);
    assert.equal((await pushBlob(base, 'gc/app', orphan)).status, 201);
    assert.equal((await pushBlob(base, 'gc/app', recent)).status, 201);
    // an upload in flight
    const inflight = randomBytes(8000);
    const post = await raw(base, 'POST', '/v2/gc/app/blobs/uploads/');
    const location = String(post.headers.location);
    assert.equal((await raw(base, 'PATCH', location, { body: inflight.subarray(0, 4000) })).status, 202);

    // delete the "dropped" manifest: its layers and config become unreferenced
    assert.equal((await raw(base, 'DELETE', `/v2/gc/app/manifests/${dropped.manifestDigest}`)).status, 202);
    const everything = [kept.manifestDigest, kept.configDigest, ...kept.layerDigests, dropped.manifestDigest, dropped.configDigest, ...dropped.layerDigests, sha256(orphan)];
    for (const digest of everything) await age(root, digest);
    const expectGone = [dropped.manifestDigest, dropped.configDigest, ...dropped.layerDigests, sha256(orphan)].sort();

    const dry = await run(process.execPath, [cli, 'registry', 'gc', '--root', root, '--dry-run', '--json']);
    assert.equal(dry.code, 0, dry.stderr);
    const dryReport = JSON.parse(dry.stdout) as { deleted: Array<{ digest: string }>; dryRun: boolean; keptRecent: number };
    assert.equal(dryReport.dryRun, true);
    assert.deepEqual(dryReport.deleted.map((d) => d.digest).sort(), expectGone);
    // (checked on disk: a HEAD would count as a use and restart the blob's grace period)
    for (const digest of expectGone) assert.ok(existsSync(blobFile(root, digest)), `dry run removed ${digest}`);

    const real = await run(process.execPath, [cli, 'registry', 'gc', '--root', root, '--json']);
    assert.equal(real.code, 0, real.stderr);
    const report = JSON.parse(real.stdout) as { deleted: Array<{ digest: string }>; keptRecent: number };
    assert.deepEqual(report.deleted.map((d) => d.digest).sort(), expectGone);
    assert.ok(report.keptRecent >= 1, 'the recent unreferenced blob was counted as kept');

    for (const digest of expectGone) assert.ok(!existsSync(blobFile(root, digest)), `${digest} survived gc`);
    for (const digest of expectGone) assert.equal((await raw(base, 'HEAD', `/v2/gc/app/blobs/${digest}`)).status, 404, `${digest} still served`);
    // referenced content intact and pullable
    const manifest = await raw(base, 'GET', '/v2/gc/app/manifests/kept');
    assert.equal(manifest.status, 200);
    for (const digest of [kept.configDigest, ...kept.layerDigests]) {
      const blob = await raw(base, 'GET', `/v2/gc/app/blobs/${digest}`);
      assert.equal(blob.status, 200);
      assert.equal(sha256(blob.body), digest);
    }
    assert.equal((await raw(base, 'HEAD', `/v2/gc/app/blobs/${sha256(recent)}`)).status, 200, 'recent push collected');
    // the in-flight upload completes after gc
    assert.equal((await raw(base, 'PATCH', location, { body: inflight.subarray(4000) })).status, 202);
    const done = await raw(base, 'PUT', `${location}?digest=${sha256(inflight)}`);
    assert.equal(done.status, 201);

    // inline gc in the server with no grace: the recent orphan goes, referenced content stays
    const inline = await registry.gc({ gracePeriodMs: 0 });
    const inlineDeleted = inline.deleted.map((d) => d.digest);
    assert.ok(inlineDeleted.includes(sha256(recent)));
    assert.ok(!inlineDeleted.some((d) => [kept.manifestDigest, kept.configDigest, ...kept.layerDigests].includes(d)));
    assert.equal((await raw(base, 'GET', '/v2/gc/app/manifests/kept')).status, 200);
  } finally {
    await registry.close();
    await dir.cleanup();
  }
});
