// The registry's protocol edges and hostile input, with raw HTTP.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { startRegistry, type RunningRegistry } from '../../src/registry/server/index.js';
import { waitFor } from '../support/wait.js';
import { errorCode, makeImage, pushBlob, pushChunked, pushImage, raw, sha256, tempDir } from './helpers.js';

let registry: RunningRegistry;
let dir: { path: string; cleanup: () => Promise<void> };
let base: string;

before(async () => {
  dir = await tempDir('registry-protocol');
  registry = await startRegistry({ root: join(dir.path, 'root'), logLevel: 'silent', uploadTimeoutMs: 400, maxManifestBytes: 64 * 1024, enableDelete: true });
  base = registry.url;
});

after(async () => {
  await registry.close();
  await dir.cleanup();
});

async function blobFiles(): Promise<string[]> {
  const out: string[] = [];
  const root = join(registry.root, 'blobs');
  for (const alg of await readdir(root).catch(() => [])) for (const p of await readdir(join(root, alg))) for (const f of await readdir(join(root, alg, p))) out.push(`${alg}:${f}`);
  return out;
}

test('ping answers with the API version header', async () => {
  const res = await raw(base, 'GET', '/v2/');
  assert.equal(res.status, 200);
  assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0');
});

test('repository names with "..", upper case or odd characters are NAME_INVALID', async () => {
  for (const path of ['/v2/a/../b/tags/list', '/v2/../../etc/blobs/uploads/', '/v2/Upper/tags/list', '/v2/a%2F..%2Fb/tags/list', '/v2/a//b/tags/list', '/v2/-a/manifests/latest', '/v2/a__-b/tags/list']) {
    const res = await raw(base, path.includes('uploads') ? 'POST' : 'GET', path);
    assert.equal(res.status, 400, path);
    assert.equal(errorCode(res), 'NAME_INVALID', path);
  }
  assert.equal((await readdir(join(registry.root, 'repositories'))).length, 0, 'nothing written for invalid names');
});

test('bad digests and unknown algorithms are DIGEST_INVALID and store nothing', async () => {
  for (const digest of ['sha256:xyz', 'md5:d41d8cd98f00b204e9800998ecf8427e', 'sha256:' + 'A'.repeat(64), 'nodigest']) {
    const res = await raw(base, 'POST', `/v2/hostile/blobs/uploads/?digest=${encodeURIComponent(digest)}`, { body: 'hello', headers: { 'Content-Length': '5' } });
    assert.equal(res.status, 400, digest);
    assert.equal(errorCode(res), 'DIGEST_INVALID', digest);
    const head = await raw(base, 'HEAD', `/v2/hostile/blobs/${encodeURIComponent(digest)}`);
    assert.equal(head.status, 400, `HEAD ${digest}`);
  }
  assert.deepEqual(await blobFiles(), []);
});

test('a digest mismatch is refused and leaves no blob and no upload behind', async () => {
  const data = randomBytes(10_000);
  const wrong = sha256('something else');
  const res = await raw(base, 'POST', `/v2/hostile/blobs/uploads/?digest=${wrong}`, { body: data, headers: { 'Content-Length': String(data.length) } });
  assert.equal(res.status, 400);
  assert.equal(errorCode(res), 'DIGEST_INVALID');
  assert.equal((await raw(base, 'HEAD', `/v2/hostile/blobs/${wrong}`)).status, 404);
  assert.equal((await raw(base, 'HEAD', `/v2/hostile/blobs/${sha256(data)}`)).status, 404);
  assert.deepEqual(await blobFiles(), []);
  assert.deepEqual(await readdir(join(registry.root, 'uploads')), []);

  // the same through a session: the final PUT names the wrong digest
  const post = await raw(base, 'POST', '/v2/hostile/blobs/uploads/');
  const location = String(post.headers.location);
  const patch = await raw(base, 'PATCH', location, { body: data, headers: { 'Content-Type': 'application/octet-stream' } });
  assert.equal(patch.status, 202);
  const put = await raw(base, 'PUT', `${location}?digest=${wrong}`);
  assert.equal(put.status, 400);
  assert.equal(errorCode(put), 'DIGEST_INVALID');
  assert.deepEqual(await blobFiles(), []);
});

test('a chunk out of order is refused with 416 and the session keeps its bytes', async () => {
  const data = randomBytes(3000);
  const post = await raw(base, 'POST', '/v2/chunks/blobs/uploads/');
  assert.equal(post.status, 202);
  const location = String(post.headers.location);
  const first = await raw(base, 'PATCH', location, { body: data.subarray(0, 1000), headers: { 'Content-Range': '0-999', 'Content-Length': '1000' } });
  assert.equal(first.status, 202);
  assert.equal(first.headers.range, '0-999');
  const skip = await raw(base, 'PATCH', location, { body: data.subarray(2000), headers: { 'Content-Range': '2000-2999', 'Content-Length': '1000' } });
  assert.equal(skip.status, 416);
  const status = await raw(base, 'GET', location);
  assert.equal(status.status, 204);
  assert.equal(status.headers.range, '0-999');
  const second = await raw(base, 'PATCH', location, { body: data.subarray(1000, 2000), headers: { 'Content-Range': '1000-1999', 'Content-Length': '1000' } });
  assert.equal(second.status, 202);
  const last = await raw(base, 'PUT', `${location}?digest=${sha256(data)}`, { body: data.subarray(2000), headers: { 'Content-Range': '2000-2999', 'Content-Length': '1000' } });
  assert.equal(last.status, 201);
  assert.equal(last.headers['docker-content-digest'], sha256(data));
  const get = await raw(base, 'GET', `/v2/chunks/blobs/${sha256(data)}`);
  assert.ok(get.body.equals(data));
});

test('blob GET honours Range', async () => {
  const data = randomBytes(5000);
  const { status, digest } = await pushBlob(base, 'ranges', data);
  assert.equal(status, 201);
  const part = await raw(base, 'GET', `/v2/ranges/blobs/${digest}`, { headers: { Range: 'bytes=100-199' } });
  assert.equal(part.status, 206);
  assert.equal(part.headers['content-range'], 'bytes 100-199/5000');
  assert.ok(part.body.equals(data.subarray(100, 200)));
  const bad = await raw(base, 'GET', `/v2/ranges/blobs/${digest}`, { headers: { Range: 'bytes=9000-' } });
  assert.equal(bad.status, 416);
});

test('manifests: unknown blobs, oversized, invalid JSON, media type mismatch are refused', async () => {
  const image = await makeImage(1, 1024, 'refused');
  const unknown = await raw(base, 'PUT', '/v2/manif/manifests/v1', { body: image.manifest, headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' } });
  assert.equal(unknown.status, 400);
  assert.equal(errorCode(unknown), 'MANIFEST_BLOB_UNKNOWN');
  const big = Buffer.alloc(100 * 1024, ' ');
  const oversized = await raw(base, 'PUT', '/v2/manif/manifests/big', { body: big, headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' } });
  assert.equal(oversized.status, 413);
  assert.equal(errorCode(oversized), 'MANIFEST_INVALID');
  const invalid = await raw(base, 'PUT', '/v2/manif/manifests/bad', { body: '{not json', headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' } });
  assert.equal(errorCode(invalid), 'MANIFEST_INVALID');
  const mismatch = await raw(base, 'PUT', '/v2/manif/manifests/mm', { body: image.manifest, headers: { 'Content-Type': 'application/vnd.oci.image.index.v1+json' } });
  assert.equal(errorCode(mismatch), 'MANIFEST_INVALID');
  const wrongDigest = await raw(base, 'PUT', `/v2/manif/manifests/${sha256('other')}`, { body: image.manifest, headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' } });
  assert.equal(errorCode(wrongDigest), 'DIGEST_INVALID');
  assert.equal((await raw(base, 'GET', '/v2/manif/manifests/v1')).status, 404);
  assert.equal(errorCode(await raw(base, 'GET', '/v2/manif/manifests/v1')), 'MANIFEST_UNKNOWN');

  assert.equal(await pushImage(base, 'manif', 'v1', image), 201);
  const get = await raw(base, 'GET', '/v2/manif/manifests/v1');
  assert.equal(get.status, 200);
  assert.equal(get.headers['docker-content-digest'], image.manifestDigest);
  assert.equal(get.headers['content-type'], 'application/vnd.oci.image.manifest.v1+json');
  assert.ok(get.body.equals(image.manifest));
});

test('tags list paginates with n, last and Link', async () => {
  const image = await makeImage(1, 512, 'tags');
  assert.equal(await pushImage(base, 'paged', 'a', image), 201);
  for (const tag of ['b', 'c', 'd', 'e']) {
    const res = await raw(base, 'PUT', `/v2/paged/manifests/${tag}`, { body: image.manifest, headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(res.status, 201);
  }
  const page1 = await raw(base, 'GET', '/v2/paged/tags/list?n=2');
  assert.deepEqual(page1.json().tags, ['a', 'b']);
  assert.match(String(page1.headers.link), /<\/v2\/paged\/tags\/list\?n=2&last=b>; rel="next"/);
  const page2 = await raw(base, 'GET', '/v2/paged/tags/list?n=2&last=b');
  assert.deepEqual(page2.json().tags, ['c', 'd']);
  const page3 = await raw(base, 'GET', '/v2/paged/tags/list?n=2&last=d');
  assert.deepEqual(page3.json().tags, ['e']);
  assert.equal(page3.headers.link, undefined);
  assert.equal(errorCode(await raw(base, 'GET', '/v2/never/pushed/tags/list')), 'NAME_UNKNOWN');
  const catalog = await raw(base, 'GET', '/v2/_catalog?n=100');
  assert.ok(catalog.json().repositories.includes('paged'));
});

test('referrers list subjects, filter by artifactType, and answer OCI-Subject', async () => {
  const image = await makeImage(1, 512, 'subject');
  assert.equal(await pushImage(base, 'refs', 'v1', image), 201);
  const empty = Buffer.from('{}');
  assert.equal((await pushBlob(base, 'refs', empty)).status, 201);
  const artifact = (type: string) =>
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        artifactType: type,
        config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256(empty), size: 2 },
        layers: [{ mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256(empty), size: 2 }],
        subject: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: image.manifestDigest, size: image.manifest.length },
        annotations: { kind: type },
      }),
    );
  for (const type of ['application/x.sbom', 'application/x.sig']) {
    const body = artifact(type);
    const res = await raw(base, 'PUT', `/v2/refs/manifests/${sha256(body)}`, { body, headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(res.status, 201);
    assert.equal(res.headers['oci-subject'], image.manifestDigest);
  }
  const all = await raw(base, 'GET', `/v2/refs/referrers/${image.manifestDigest}`);
  assert.equal(all.headers['content-type'], 'application/vnd.oci.image.index.v1+json');
  assert.equal(all.json().manifests.length, 2);
  const sbom = await raw(base, 'GET', `/v2/refs/referrers/${image.manifestDigest}?artifactType=application%2Fx.sbom`);
  assert.equal(sbom.headers['oci-filters-applied'], 'artifactType');
  assert.deepEqual(sbom.json().manifests.map((m: { artifactType: string }) => m.artifactType), ['application/x.sbom']);
  assert.equal(sbom.json().manifests[0].annotations.kind, 'application/x.sbom');
  // deleting a referrer removes it from the list
  const sig = artifact('application/x.sig');
  assert.equal((await raw(base, 'DELETE', `/v2/refs/manifests/${sha256(sig)}`)).status, 202);
  assert.equal((await raw(base, 'GET', `/v2/refs/referrers/${image.manifestDigest}`)).json().manifests.length, 1);
});

test('cross-repository mount: 201 when the source has the blob, 202 session otherwise', async () => {
  const data = randomBytes(2048);
  const { digest } = await pushBlob(base, 'mount/src', data);
  const mounted = await raw(base, 'POST', `/v2/mount/dst/blobs/uploads/?mount=${digest}&from=mount/src`);
  assert.equal(mounted.status, 201);
  assert.equal(mounted.headers['docker-content-digest'], digest);
  assert.ok((await raw(base, 'GET', `/v2/mount/dst/blobs/${digest}`)).body.equals(data));
  const missing = await raw(base, 'POST', `/v2/mount/dst/blobs/uploads/?mount=${sha256('nope')}&from=mount/src`);
  assert.equal(missing.status, 202);
  assert.match(String(missing.headers.location), /^\/v2\/mount\/dst\/blobs\/uploads\//);
  // blob delete removes it from one repository only
  assert.equal((await raw(base, 'DELETE', `/v2/mount/dst/blobs/${digest}`)).status, 202);
  assert.equal((await raw(base, 'HEAD', `/v2/mount/dst/blobs/${digest}`)).status, 404);
  assert.equal((await raw(base, 'HEAD', `/v2/mount/src/blobs/${digest}`)).status, 200);
});

test('upload sessions: status, cancel, unknown ids, and idle sessions are purged', async () => {
  const post = await raw(base, 'POST', '/v2/sessions/blobs/uploads/');
  const location = String(post.headers.location);
  assert.equal((await raw(base, 'DELETE', location)).status, 204);
  assert.equal(errorCode(await raw(base, 'GET', location)), 'BLOB_UPLOAD_UNKNOWN');
  assert.equal(errorCode(await raw(base, 'PATCH', '/v2/sessions/blobs/uploads/not-a-uuid', { body: 'x' })), 'BLOB_UPLOAD_UNKNOWN');

  // a session that never finishes: the registry was started with a 400 ms upload timeout
  const idle = String((await raw(base, 'POST', '/v2/sessions/blobs/uploads/')).headers.location);
  assert.equal((await raw(base, 'PATCH', idle, { body: 'partial' })).status, 202);
  let purged = false;
  for (let i = 0; i < 100 && !purged; i++) {
    await new Promise((r) => setTimeout(r, 100));
    purged = (await raw(base, 'GET', idle)).status === 404;
  }
  assert.ok(purged, 'idle upload session was never purged');
});

test('many concurrent clients push and read back the same and different blobs', async () => {
  const shared = randomBytes(200_000);
  const distinct = Array.from({ length: 16 }, () => randomBytes(50_000 + Math.floor(Math.random() * 50_000)));
  const results = await Promise.all([
    ...Array.from({ length: 8 }, (_, i) => pushBlob(base, `many/r${i}`, shared)),
    ...distinct.map((d, i) => (i % 2 ? pushBlob(base, 'many/mixed', d) : pushChunked(base, 'many/mixed', d, 16_384))),
  ]);
  for (const r of results) assert.equal(r.status, 201);
  for (const d of distinct) assert.ok((await raw(base, 'GET', `/v2/many/mixed/blobs/${sha256(d)}`)).body.equals(d));
  assert.ok((await raw(base, 'GET', `/v2/many/r7/blobs/${sha256(shared)}`)).body.equals(shared));
});

test('a read-only registry answers DENIED; an overloaded one TOOMANYREQUESTS with Retry-After', async () => {
  const other = await tempDir('registry-limits');
  const readOnly = await startRegistry({ root: join(other.path, 'ro'), logLevel: 'silent', readOnly: true });
  const tiny = await startRegistry({ root: join(other.path, 'tiny'), logLevel: 'silent', maxConcurrentUploads: 1 });
  try {
    const denied = await raw(readOnly.url, 'POST', '/v2/ro/blobs/uploads/');
    assert.equal(denied.status, 403);
    assert.equal(errorCode(denied), 'DENIED');
    assert.equal((await raw(readOnly.url, 'GET', '/v2/')).status, 200);

    // one upload holds the only slot (its body is still arriving); a second is told to retry
    const location = String((await raw(tiny.url, 'POST', '/v2/busy/blobs/uploads/')).headers.location);
    const url = new URL(tiny.url);
    const { request } = await import('node:http');
    const slow = request({ host: url.hostname, port: url.port, method: 'PATCH', path: location, headers: { 'Content-Length': '10' }, agent: false });
    slow.on('error', () => undefined);
    slow.write('12345');
    // wait (without assuming how long) until the server has taken the slow PATCH in
    let busy = await raw(tiny.url, 'POST', '/v2/busy/blobs/uploads/');
    for (let i = 0; i < 100 && busy.status !== 429; i++) {
      await new Promise((r) => setTimeout(r, 50));
      busy = await raw(tiny.url, 'POST', '/v2/busy/blobs/uploads/');
    }
    assert.equal(busy.status, 429);
    assert.equal(errorCode(busy), 'TOOMANYREQUESTS');
    assert.equal(busy.headers['retry-after'], '1');
    slow.end('67890');
  } finally {
    await readOnly.close();
    await tiny.close();
    await other.cleanup();
  }
});

test('a PATCH cut off by the client is rolled back: the session continues from its last good byte', async () => {
  const data = randomBytes(6000);
  const location = String((await raw(base, 'POST', '/v2/aborted/blobs/uploads/')).headers.location);
  assert.equal((await raw(base, 'PATCH', location, { body: data.subarray(0, 1000), headers: { 'Content-Range': '0-999' } })).status, 202);
  // a second chunk that dies half way
  const url = new URL(base);
  const { request } = await import('node:http');
  const cut = request({ host: url.hostname, port: url.port, method: 'PATCH', path: location, headers: { 'Content-Range': '1000-5999', 'Content-Length': '5000' }, agent: false });
  cut.on('error', () => undefined);
  cut.write(data.subarray(1000, 3000));
  // Cut once the server is taking it in: the session is held by that PATCH (another writer is refused
  // as such; a probe that starts at 0 would be refused for its offset otherwise, and changes nothing).
  await waitFor('the server to take the second chunk in', async () => {
    const probe = await raw(base, 'PATCH', location, { body: 'x', headers: { 'Content-Range': '0-0' } });
    return probe.status === 416 && probe.body.toString().includes('another request is writing');
  }, 30_000);
  cut.destroy();
  // resend the chunk once the server has let go of the session (416 while it still holds it)
  let res = await raw(base, 'PATCH', location, { body: data.subarray(1000), headers: { 'Content-Range': '1000-5999' } });
  for (let i = 0; i < 100 && res.status === 416; i++) {
    await new Promise((r) => setTimeout(r, 50));
    res = await raw(base, 'PATCH', location, { body: data.subarray(1000), headers: { 'Content-Range': '1000-5999' } });
  }
  assert.equal(res.status, 202);
  assert.equal(res.headers.range, '0-5999');
  const done = await raw(base, 'PUT', `${location}?digest=${sha256(data)}`);
  assert.equal(done.status, 201, done.body.toString());
  assert.ok((await raw(base, 'GET', `/v2/aborted/blobs/${sha256(data)}`)).body.equals(data));
});
