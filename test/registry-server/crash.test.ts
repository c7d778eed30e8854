// Crash safety: `weft registry serve` is SIGKILLed during concurrent pushes,
// restarted on the same root, and must serve only verified blobs and keep every
// push that was acknowledged (201).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { serveRegistry } from '../support/registry-serve.js';
import { makeImage, pushChunked, raw, sha256, tempDir, type TestImage } from './helpers.js';

function killed(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
}

/** A streamed PATCH whose body trickles in, so it is surely in flight when the server dies. */
async function slowUpload(base: string, repo: string, data: Buffer, progress: () => void): Promise<number> {
  const post = await fetch(`${base}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  await post.arrayBuffer();
  const location = new URL(post.headers.get('location')!, base);
  let offset = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (offset >= data.length) {
        controller.close();
        return;
      }
      await new Promise((r) => setTimeout(r, 20));
      controller.enqueue(data.subarray(offset, offset + 32 * 1024));
      offset += 32 * 1024;
      progress();
    },
  });
  const patch = await fetch(location, { method: 'PATCH', body, duplex: 'half', headers: { 'Content-Type': 'application/octet-stream' } } as RequestInit);
  await patch.arrayBuffer();
  const put = new URL(patch.headers.get('location')!, base);
  put.searchParams.set('digest', sha256(data));
  const res = await fetch(put, { method: 'PUT' });
  await res.arrayBuffer();
  return res.status;
}

async function monolithic(base: string, repo: string, data: Buffer): Promise<number> {
  const res = await fetch(`${base}/v2/${repo}/blobs/uploads/?digest=${sha256(data)}`, { method: 'POST', body: data, headers: { 'Content-Type': 'application/octet-stream' } });
  await res.arrayBuffer();
  return res.status;
}

async function imagePush(base: string, repo: string, tag: string, image: TestImage): Promise<number> {
  for (const blob of [...image.layers, image.config]) if ((await monolithic(base, repo, blob)) !== 201) return 0;
  const res = await fetch(`${base}/v2/${repo}/manifests/${tag}`, { method: 'PUT', body: image.manifest, headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' } });
  await res.arrayBuffer();
  return res.status;
}

test('SIGKILL during concurrent pushes: no partial blob is visible and no acknowledged push is lost', { timeout: 180_000 }, async (t) => {
  const dir = await tempDir('registry-crash');
  const root = join(dir.path, 'root');
  let server = await serveRegistry(root);
  try {
    // a chunked upload interrupted by the crash, to be resumed afterwards
    const resumable = randomBytes(300_000);
    const post = await fetch(`${server.url}/v2/crash/resume/blobs/uploads/`, { method: 'POST' });
    await post.arrayBuffer();
    const resumePath = post.headers.get('location')!;
    const first = await fetch(new URL(resumePath, server.url), { method: 'PATCH', body: resumable.subarray(0, 100_000), headers: { 'Content-Range': '0-99999' } });
    await first.arrayBuffer();
    assert.equal(first.status, 202);

    const blobs = Array.from({ length: 36 }, () => randomBytes(100_000 + Math.floor(Math.random() * 1_400_000)));
    const images = await Promise.all(Array.from({ length: 6 }, (_, i) => makeImage(2, 150_000, `crash${i}`)));
    const completedBlobs = new Map<string, { repo: string; data: Buffer }>();
    const completedImages: Array<{ repo: string; tag: string; image: TestImage }> = [];
    const attempted = new Map<string, string>();
    let slowBytes = 0;
    let killedAt = -1;

    const base = server.url;
    const jobs: Array<() => Promise<void>> = [];
    blobs.forEach((data, i) => {
      const repo = `crash/r${i % 4}`;
      attempted.set(sha256(data), repo);
      jobs.push(async () => {
        const status = i % 3 === 0 ? await monolithic(base, repo, data) : i % 3 === 1 ? (await pushChunked(base, repo, data, 64 * 1024)).status : await slowUpload(base, repo, data, () => slowBytes++);
        if (status === 201) completedBlobs.set(sha256(data), { repo, data });
      });
    });
    // image pushes interleaved with the blob pushes, so some finish before the crash
    images.forEach((image, i) =>
      jobs.splice(i * 6, 0, async () => {
        if ((await imagePush(base, 'crash/images', `t${i}`, image)) === 201) completedImages.push({ repo: 'crash/images', tag: `t${i}`, image });
      }),
    );
    // 8 workers over the job list
    let next = 0;
    const workers = Array.from({ length: 8 }, async () => {
      while (next < jobs.length) {
        const job = jobs[next++];
        await job().catch(() => undefined); // requests cut by the crash fail: expected
      }
    });
    // kill once some pushes completed and slow uploads are mid-stream
    const killer = (async () => {
      for (let i = 0; i < 600; i++) {
        if (completedBlobs.size >= 6 && completedImages.length >= 1 && slowBytes >= 3) break;
        await new Promise((r) => setTimeout(r, 25));
      }
      killedAt = completedBlobs.size;
      server.child.kill('SIGKILL');
      await killed(server.child);
    })();
    await Promise.all([...workers, killer]);
    assert.ok(killedAt >= 1, 'no push completed before the crash');
    assert.ok(completedBlobs.size < blobs.length, 'the crash came after every push: nothing was in flight');

    t.diagnostic(`killed with ${completedBlobs.size} blobs and ${completedImages.length} images acknowledged, ${blobs.length - completedBlobs.size} blob pushes cut`);
    // uploads cut mid-stream left their sessions (and partial data) behind, outside the blob store
    const sessions = await readdir(join(root, 'uploads'));
    let partialBytes = 0;
    for (const id of sessions) partialBytes += await readFile(join(root, 'uploads', id, 'data')).then((b) => b.length, () => 0);
    assert.ok(sessions.length >= 1, 'no upload was in flight at the kill');
    t.diagnostic(`${sessions.length} unfinished upload sessions (${partialBytes} bytes) on disk after the kill`);

    server = await serveRegistry(root);
    const after = server.url;

    // 1. every file in the blob store is complete and matches its name
    const storeRoot = join(root, 'blobs', 'sha256');
    let files = 0;
    for (const prefix of await readdir(storeRoot)) {
      for (const name of await readdir(join(storeRoot, prefix))) {
        if (name.startsWith('.')) continue; // a temporary file: never addressable by a digest
        const content = await readFile(join(storeRoot, prefix, name));
        assert.equal(createHash('sha256').update(content).digest('hex'), name, `blob file ${name} does not match its digest`);
        files++;
      }
    }
    assert.ok(files >= completedBlobs.size);
    t.diagnostic(`${files} blob files verified after restart`);

    // 2. every acknowledged blob push is served, verified
    for (const [digest, { repo, data }] of completedBlobs) {
      const res = await raw(after, 'GET', `/v2/${repo}/blobs/${digest}`);
      assert.equal(res.status, 200, `acknowledged blob ${digest} lost`);
      assert.equal(sha256(res.body), digest);
      assert.ok(res.body.equals(data));
    }
    // 3. every acknowledged image push is there
    for (const { repo, tag, image } of completedImages) {
      const res = await raw(after, 'GET', `/v2/${repo}/manifests/${tag}`);
      assert.equal(res.status, 200);
      assert.equal(res.headers['docker-content-digest'], image.manifestDigest);
    }
    // 4. whatever else is visible verifies too (a push may have landed just before the kill)
    for (const [digest, repo] of attempted) {
      if (completedBlobs.has(digest)) continue;
      const res = await raw(after, 'GET', `/v2/${repo}/blobs/${digest}`);
      assert.ok(res.status === 404 || (res.status === 200 && sha256(res.body) === digest), `unacknowledged blob ${digest} served wrong content (${res.status})`);
    }
    // 5. the interrupted chunked upload resumes where it stopped and verifies
    const status = await fetch(new URL(resumePath, after));
    assert.equal(status.status, 204);
    assert.equal(status.headers.get('range'), '0-99999');
    const rest = await fetch(new URL(resumePath, after), { method: 'PATCH', body: resumable.subarray(100_000), headers: { 'Content-Range': `100000-${resumable.length - 1}` } });
    assert.equal(rest.status, 202);
    const done = await fetch(new URL(`${resumePath}?digest=${sha256(resumable)}`, after), { method: 'PUT' });
    assert.equal(done.status, 201);
    assert.ok((await raw(after, 'GET', `/v2/crash/resume/blobs/${sha256(resumable)}`)).body.equals(resumable));
  } finally {
    server.child.kill('SIGKILL');
    await killed(server.child);
    await dir.cleanup();
  }
});
