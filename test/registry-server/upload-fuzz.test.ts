// Property test of the upload protocol: workers push blobs with random chunk
// boundaries, streamed and ranged PATCHes, retries, out-of-order chunks, chunks
// cut off mid-body, wrong or premature digests, cancels and abandoned sessions,
// while a checker HEADs and GETs every digest involved. The property: a digest
// becomes visible only after a complete upload of exactly its bytes was sent
// with that digest, and whatever is visible hashes to its digest; a cut chunk
// leaves the session at its last acknowledged byte. Seeded (WEFT_FUZZ_SEED) so a
// failure reproduces; bounded by a scenario count and a deadline.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startRegistry } from '../../src/registry/server/index.js';
import { prng } from '../support/prng.js';
import { sha256, tempDir } from './helpers.js';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One request; with `cutAfter`, only that many body bytes are sent, then the connection is dropped. */
function send(base: string, method: string, path: string, headers: Record<string, string>, body?: Buffer, cutAfter?: number): Promise<Reply | 'cut'> {
  const url = new URL(base);
  return new Promise((resolve) => {
    const req = request({ host: url.hostname, port: url.port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', () => resolve('cut'));
    });
    req.on('error', () => resolve('cut'));
    if (cutAfter === undefined) {
      req.end(body);
      return;
    }
    req.write(body!.subarray(0, cutAfter));
    setTimeout(() => req.destroy(), 5);
  });
}

function rangeEnd(reply: Reply): number {
  const match = /^0-(\d+)$/.exec(String(reply.headers.range ?? ''));
  assert.ok(match, `no Range header in ${reply.status} answer`);
  return Number(match[1]);
}

test('upload protocol property: only complete, verified blobs ever become visible', { timeout: 300_000 }, async (t) => {
  const seed = Number(process.env.WEFT_FUZZ_SEED ?? 0x13b);
  const scenariosPerWorker = Number(process.env.WEFT_FUZZ_SCENARIOS ?? 40);
  const deadline = Date.now() + Number(process.env.WEFT_FUZZ_MS ?? 60_000);
  t.diagnostic(`seed ${seed} (reproduce with WEFT_FUZZ_SEED=${seed})`);
  const dir = await tempDir('registry-fuzz');
  const registry = await startRegistry({ root: join(dir.path, 'root'), logLevel: 'silent', bodyIdleTimeoutMs: 2000 });
  const base = registry.url;
  const repos = ['fuzz/a', 'fuzz/b'];
  /** repo|digest pairs for which a complete, correct upload has been sent: only these may be visible. */
  const armed = new Set<string>();
  /** repo|digest pairs acknowledged with 201: these must stay visible. */
  const acknowledged = new Set<string>();
  /** Digests the checker watches: every content digest and every wrong digest used. */
  const watched = new Set<string>();
  const shared = Array.from({ length: 3 }, (_, i) => randomBytes(1000 * (i + 1)));
  const violations: string[] = [];
  const stats = { scenarios: 0, chunks: 0, cut: 0, outOfOrder: 0, retried: 0, wrongDigest: 0, premature: 0, cancelled: 0, abandoned: 0, completed: 0, checks: 0 };

  async function check(repo: string, digest: string): Promise<void> {
    const key = `${repo}|${digest}`;
    const head = await send(base, 'HEAD', `/v2/${repo}/blobs/${digest}`, {});
    stats.checks++;
    if (head === 'cut') return;
    if (head.status === 200) {
      if (!armed.has(key)) violations.push(`HEAD ${key} is 200 but no complete, correct upload of it was sent`);
      const get = await send(base, 'GET', `/v2/${repo}/blobs/${digest}`, {});
      if (get !== 'cut' && get.status === 200 && sha256(get.body) !== digest) violations.push(`GET ${key} served bytes hashing to ${sha256(get.body)}`);
    } else if (acknowledged.has(key)) {
      violations.push(`HEAD ${key} is ${head.status} after its upload was acknowledged`);
    }
  }

  async function worker(index: number): Promise<void> {
    const random = prng(seed + index * 7919);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
    for (let n = 0; n < scenariosPerWorker && Date.now() < deadline; n++) {
      stats.scenarios++;
      const repo = pick(repos);
      // mostly fresh content (so an incomplete upload of it is the only one), sometimes shared by all workers
      const size = pick([0, 1, 2, 100, 4096, 65_536, 150_000, Math.floor(random() * 200_000)]);
      const data = random() < 0.2 ? pick(shared) : randomBytes(size);
      const digest = sha256(data);
      const decoy = sha256(randomBytes(16)); // never uploaded
      watched.add(digest);
      watched.add(decoy);
      const key = `${repo}|${digest}`;
      const mode = random();

      if (mode < 0.25) {
        // monolithic POST ?digest=: correct, wrong digest, or cut off mid-body
        const variant = random();
        if (variant < 0.5) {
          armed.add(key);
          const reply = await send(base, 'POST', `/v2/${repo}/blobs/uploads/?digest=${digest}`, { 'Content-Length': String(data.length) }, data);
          if (reply !== 'cut' && reply.status === 201) {
            acknowledged.add(key);
            stats.completed++;
          } else violations.push(`monolithic push of ${key} answered ${reply === 'cut' ? 'cut' : reply.status}`);
        } else if (variant < 0.8) {
          stats.wrongDigest++;
          const reply = await send(base, 'POST', `/v2/${repo}/blobs/uploads/?digest=${decoy}`, { 'Content-Length': String(data.length) }, data);
          if (reply === 'cut' || reply.status !== 400) violations.push(`wrong-digest monolithic push answered ${reply === 'cut' ? 'cut' : reply.status}`);
        } else if (data.length > 1) {
          stats.cut++;
          await send(base, 'POST', `/v2/${repo}/blobs/uploads/?digest=${digest}`, { 'Content-Length': String(data.length) }, data, Math.floor(random() * data.length));
        }
        await check(repo, digest);
        await check(repo, decoy);
        continue;
      }

      // a session: POST, chunks, then finish, fail, cancel or abandon
      const post = await send(base, 'POST', `/v2/${repo}/blobs/uploads/`, {});
      if (post === 'cut' || post.status !== 202) {
        violations.push(`POST session answered ${post === 'cut' ? 'cut' : post.status}`);
        continue;
      }
      const location = String(post.headers.location);
      let confirmed = 0; // bytes acknowledged by the server
      const ranged = random() < 0.8;
      let stopAt = data.length;
      const ending = random();
      if (ending < 0.15 && data.length > 1) stopAt = Math.floor(random() * data.length); // incomplete upload
      for (let guard = 0; confirmed < stopAt && guard < 200; guard++) {
        const length = Math.max(1, Math.min(stopAt - confirmed, Math.floor(random() * 70_000) + 1));
        const action = random();
        if (action < 0.08 && confirmed > 0 && ranged) {
          // a retry of a chunk already taken, or a chunk ahead of the session: 416, session unchanged
          const start = random() < 0.5 ? Math.max(0, confirmed - length) : Math.min(confirmed + 1, data.length - 1);
          if (start === confirmed) continue;
          const end = Math.min(start + length, data.length);
          if (end <= start) continue;
          start < confirmed ? stats.retried++ : stats.outOfOrder++;
          const reply = await send(base, 'PATCH', location, { 'Content-Range': `${start}-${end - 1}`, 'Content-Length': String(end - start) }, data.subarray(start, end));
          if (reply === 'cut' || reply.status !== 416) violations.push(`chunk ${start}-${end - 1} with ${confirmed} confirmed answered ${reply === 'cut' ? 'cut' : reply.status}`);
          continue;
        }
        const chunk = data.subarray(confirmed, confirmed + length);
        const headers: Record<string, string> = ranged ? { 'Content-Range': `${confirmed}-${confirmed + chunk.length - 1}`, 'Content-Length': String(chunk.length) } : { 'Content-Length': String(chunk.length) };
        if (action < 0.2) {
          // cut mid-chunk: the server must roll the session back to `confirmed`
          stats.cut++;
          await send(base, 'PATCH', location, headers, chunk, Math.floor(random() * chunk.length));
          let status: Reply | 'cut' = 'cut';
          for (let i = 0; i < 50; i++) {
            status = await send(base, 'GET', location, {});
            if (status !== 'cut' && status.status === 204) break;
          }
          if (status === 'cut' || status.status !== 204) {
            violations.push(`status of ${location} after a cut chunk: ${status === 'cut' ? 'cut' : status.status}`);
            break;
          }
          const end = rangeEnd(status);
          // "0-0" means 0 or 1 bytes (the spec's inclusive ranges cannot say 0)
          if (!(end === confirmed - 1 || (end === 0 && confirmed <= 1))) violations.push(`after a cut chunk the session holds 0-${end}, expected ${confirmed} bytes`);
          await check(repo, digest);
          continue;
        }
        stats.chunks++;
        let reply: Reply | 'cut' = 'cut';
        // the session may still be busy with a cut chunk the server has not noticed yet: retry on 416
        for (let i = 0; i < 50; i++) {
          reply = await send(base, 'PATCH', location, headers, chunk);
          if (reply === 'cut' || reply.status !== 416) break;
          await new Promise((r) => setTimeout(r, 20));
        }
        if (reply === 'cut' || reply.status !== 202) {
          violations.push(`PATCH ${confirmed}+${chunk.length} answered ${reply === 'cut' ? 'cut' : reply.status}: ${reply === 'cut' ? '' : reply.body.toString()}`);
          break;
        }
        confirmed += chunk.length;
        if (rangeEnd(reply) !== Math.max(confirmed - 1, 0)) violations.push(`PATCH answered Range ${String(reply.headers.range)} with ${confirmed} bytes sent`);
        if (random() < 0.3) await check(repo, digest);
      }
      const complete = confirmed === data.length;
      const finish = random();
      if (finish < 0.1) {
        stats.cancelled++;
        const reply = await send(base, 'DELETE', location, {});
        if (reply === 'cut' || reply.status !== 204) violations.push(`cancel answered ${reply === 'cut' ? 'cut' : reply.status}`);
      } else if (finish < 0.2) {
        stats.abandoned++;
      } else if (finish < 0.35) {
        stats.wrongDigest++;
        const reply = await send(base, 'PUT', `${location}?digest=${decoy}`, { 'Content-Length': '0' });
        if (reply === 'cut' || reply.status !== 400) violations.push(`PUT with a wrong digest answered ${reply === 'cut' ? 'cut' : reply.status}`);
      } else {
        if (complete) armed.add(key);
        else stats.premature++;
        let reply: Reply | 'cut' = 'cut';
        for (let i = 0; i < 50; i++) {
          reply = await send(base, 'PUT', `${location}?digest=${digest}`, { 'Content-Length': '0' });
          if (reply === 'cut' || reply.status !== 416) break;
          await new Promise((r) => setTimeout(r, 20));
        }
        const expected = complete ? 201 : 400;
        if (reply === 'cut' || reply.status !== expected) violations.push(`final PUT with ${confirmed}/${data.length} bytes answered ${reply === 'cut' ? 'cut' : reply.status}, expected ${expected}`);
        else if (complete) {
          acknowledged.add(key);
          stats.completed++;
        }
      }
      await check(repo, digest);
      await check(repo, decoy);
    }
  }

  let checking = true;
  const checker = (async () => {
    while (checking) {
      for (const digest of [...watched]) for (const repo of repos) await check(repo, digest);
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  try {
    await Promise.all([0, 1, 2, 3].map((i) => worker(i)));
    checking = false;
    await checker;
    for (const digest of watched) for (const repo of repos) await check(repo, digest);
    // on disk: every blob file hashes to its name
    const blobsDir = join(registry.root, 'blobs', 'sha256');
    for (const prefix of await readdir(blobsDir).catch(() => [] as string[])) {
      for (const hex of await readdir(join(blobsDir, prefix))) {
        const bytes = await readFile(join(blobsDir, prefix, hex));
        if (sha256(bytes) !== `sha256:${hex}`) violations.push(`blob file ${hex} holds other bytes`);
      }
    }
    t.diagnostic(`fuzz: ${JSON.stringify(stats)}`);
    assert.ok(stats.completed > 10 && stats.cut > 5 && stats.wrongDigest > 5 && stats.checks > 100, `too little was exercised: ${JSON.stringify(stats)}`);
    assert.deepEqual(violations, []);
  } finally {
    checking = false;
    await checker.catch(() => undefined);
    await registry.close();
    await dir.cleanup();
  }
});
