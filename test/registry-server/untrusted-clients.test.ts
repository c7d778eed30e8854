// The registry keeps serving a good client while hundreds of connections attack
// it: stalled and trickling upload bodies, stalled manifest bodies and half-sent
// headers (one test), and a flood of wrong passwords against bcrypt cost 12
// (another). The registry runs as its own process (`weft registry serve`) so the
// latency the good client sees is the server's, not this test's event loop. The
// good client's latencies are reported (t.diagnostic), never asserted; what is
// asserted is that its pushes succeed and that the attackers were cut off.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { serveRegistry, stopProcess } from '../support/registry-serve.js';
import { waitFor } from '../support/wait.js';
import { makeImage, pushImage, raw, run, tempDir } from './helpers.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await fn();
  return { value, ms: Math.round(performance.now() - started) };
}

function summary(samples: number[]): string {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return `median ${at(0.5)} ms, p90 ${at(0.9)} ms, max ${sorted[sorted.length - 1]} ms (${samples.length} samples)`;
}

/** A raw connection sending `head` and then `body` bytes one write at a time, as told; resolves how it ended. */
function hostileConnection(url: URL, localAddress: string, head: string): { socket: Socket; ended: Promise<string> } {
  const socket = connect({ host: url.hostname, port: Number(url.port), localAddress });
  let received = '';
  socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
  const ended = new Promise<string>((resolve) => {
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(/^HTTP\/1\.1 (\d{3})/.exec(received)?.[1] ?? 'closed without answer'));
  });
  socket.write(head);
  return { socket, ended };
}

test('the registry keeps serving while hundreds of connections stall bodies and headers', { timeout: 180_000 }, async (t) => {
  const dir = await tempDir('registry-untrusted-stall');
  const { url, child } = await serveRegistry(join(dir.path, 'root'), ['--body-idle-timeout', '3s', '--headers-timeout', '3s', '--min-body-rate', '4KiB']);
  const base = new URL(url);
  const sockets: Socket[] = [];
  try {
    const image = await makeImage(2, 256 * 1024, 'good');
    const baseline = await timed(() => pushImage(url, 'good/app', 'v1', image));
    assert.equal(baseline.value, 201);
    const basePings: number[] = [];
    for (let i = 0; i < 10; i++) basePings.push((await timed(() => raw(url, 'GET', '/v2/'))).ms);

    // 300 hostile connections from 8 other addresses
    const sessions: string[] = [];
    for (let i = 0; i < 200; i++) {
      const post = await new Promise<string>((resolve, reject) => {
        const req = request({ host: base.hostname, port: base.port, method: 'POST', path: '/v2/evil/app/blobs/uploads/', agent: false, localAddress: `127.0.0.${2 + (i % 5)}` }, (res) => {
          res.resume();
          resolve(String(res.headers.location));
        });
        req.on('error', reject);
        req.end();
      });
      sessions.push(post);
    }
    const outcomes: Array<Promise<string>> = [];
    const trickling: Socket[] = [];
    sessions.forEach((location, i) => {
      // 100 stalled and 100 trickling upload bodies (announcing 10 MB)
      const conn = hostileConnection(base, `127.0.0.${2 + (i % 5)}`, `PATCH ${location} HTTP/1.1\r\nHost: ${base.host}\r\nContent-Length: 10000000\r\n\r\nx`);
      sockets.push(conn.socket);
      outcomes.push(conn.ended);
      if (i % 2) trickling.push(conn.socket);
    });
    for (let i = 0; i < 50; i++) {
      // 50 stalled manifest bodies and 50 connections that never finish their headers
      const manifest = hostileConnection(base, '127.0.0.8', `PUT /v2/evil/app/manifests/v${i} HTTP/1.1\r\nHost: ${base.host}\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 5000\r\n\r\n{`);
      const headers = hostileConnection(base, '127.0.0.9', `GET /v2/ HTTP/1.1\r\nHost: ${base.host}\r\nX-Slow: `);
      sockets.push(manifest.socket, headers.socket);
      outcomes.push(manifest.ended, headers.ended);
    }
    let trickle = true;
    const trickler = (async () => {
      while (trickle) {
        for (const socket of trickling) if (!socket.destroyed) socket.write('x');
        await sleep(200);
      }
    })();
    // The server has them all: each hostile connection is open and its head sent.
    await waitFor('every hostile connection open with its head sent', () => sockets.every((socket) => !socket.connecting && socket.writableLength === 0), 30_000);

    // the good client, meanwhile (from 127.0.0.1)
    const other = await makeImage(2, 256 * 1024, 'good-under-attack');
    const underAttack = await timed(() => pushImage(url, 'good/app', 'v2', other));
    const attackPings: number[] = [];
    for (let i = 0; i < 10; i++) {
      const ping = await timed(() => raw(url, 'GET', '/v2/'));
      assert.equal(ping.value.status, 200);
      attackPings.push(ping.ms);
    }
    assert.equal(underAttack.value, 201, 'the good client could not push while others stalled');

    // and every hostile connection is cut off by the server (408 for bodies, closed for headers)
    const cutOff = await timed(() => Promise.all(outcomes));
    trickle = false;
    await trickler;
    const counts = cutOff.value.reduce<Record<string, number>>((acc, outcome) => ((acc[outcome] = (acc[outcome] ?? 0) + 1), acc), {});
    assert.equal(cutOff.value.length, 300);
    assert.ok(cutOff.value.every((o) => o === '408' || o === '429' || o === '413' || o === 'closed without answer'), JSON.stringify(counts));
    t.diagnostic(`stall attack: 300 hostile connections (100 stalled + 100 trickling upload bodies from 5 addresses, 50 stalled manifest bodies, 50 unfinished headers)`);
    t.diagnostic(`good client push of 2 x 256 KiB layers: ${baseline.ms} ms alone, ${underAttack.ms} ms under attack`);
    t.diagnostic(`good client GET /v2/: alone ${summary(basePings)}; under attack ${summary(attackPings)}`);
    t.diagnostic(`every hostile connection cut off ${cutOff.ms} ms after the good push; outcomes ${JSON.stringify(counts)}`);
  } finally {
    for (const socket of sockets) socket.destroy();
    await stopProcess(child);
    await dir.cleanup();
  }
});

test('the registry keeps serving while hundreds of connections flood wrong passwords (bcrypt cost 12)', { timeout: 180_000 }, async (t) => {
  const dir = await tempDir('registry-untrusted-auth');
  const file = join(dir.path, 'htpasswd');
  for (const [user, password, create] of [['alice', 's3cret', true], ['bob', 'b0b', false]] as const) {
    const made = await run('htpasswd', ['-B', '-C', '12', '-b', ...(create ? ['-c'] : []), file, user, password]);
    assert.equal(made.code, 0, made.stderr);
  }
  const { url, child } = await serveRegistry(join(dir.path, 'root'), ['--htpasswd', file]);
  const base = new URL(url);
  const alice = { Authorization: `Basic ${Buffer.from('alice:s3cret').toString('base64')}` };
  const bob = { Authorization: `Basic ${Buffer.from('bob:b0b').toString('base64')}` };
  try {
    const first = await timed(() => raw(url, 'GET', '/v2/', { headers: alice }));
    assert.equal(first.value.status, 200);
    const basePings: number[] = [];
    for (let i = 0; i < 10; i++) basePings.push((await timed(() => raw(url, 'GET', '/v2/', { headers: alice }))).ms);
    const image = await makeImage(2, 256 * 1024, 'auth-good');
    const baseline = await timed(() => pushImage(url, 'good/app', 'v1', image, alice));
    assert.equal(baseline.value, 201);

    // 300 connections from 10 addresses, each sending wrong passwords back to back
    let flooding = true;
    const statuses: Record<string, number> = {};
    const flood = Array.from({ length: 300 }, async (_, i) => {
      let n = 0;
      while (flooding) {
        const status = await new Promise<string>((resolve) => {
          const req = request({ host: base.hostname, port: base.port, path: '/v2/', agent: false, localAddress: `127.0.0.${2 + (i % 10)}`, headers: { Authorization: `Basic ${Buffer.from(`alice:guess-${i}-${n++}`).toString('base64')}` } }, (res) => {
            res.resume();
            res.on('end', () => resolve(String(res.statusCode)));
          });
          req.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
          req.end();
        });
        statuses[status] = (statuses[status] ?? 0) + 1;
        if (status === '429') await sleep(50); // a polite-enough attacker: keeps 300 connections busy without spinning the test
      }
    });
    await sleep(1000);
    const attackPings: number[] = [];
    for (let i = 0; i < 10; i++) {
      const ping = await timed(() => raw(url, 'GET', '/v2/', { headers: alice }));
      assert.equal(ping.value.status, 200);
      attackPings.push(ping.ms);
    }
    const other = await makeImage(2, 256 * 1024, 'auth-good-under-attack');
    const underAttack = await timed(() => pushImage(url, 'good/app', 'v2', other, alice));
    // a client whose password was never checked yet waits its turn in the fair queue
    const newcomer = await timed(() => raw(url, 'GET', '/v2/', { headers: bob }));
    flooding = false;
    await Promise.all(flood);
    assert.equal(underAttack.value, 201, 'the good client could not push during the flood');
    assert.equal(newcomer.value.status, 200);
    assert.ok((statuses['429'] ?? 0) > 0, `the flood was never limited: ${JSON.stringify(statuses)}`);
    t.diagnostic(`password flood: 300 connections from 10 addresses, ${Object.values(statuses).reduce((a, b) => a + b, 0)} requests: ${JSON.stringify(statuses)}`);
    t.diagnostic(`good client (cached credentials) GET /v2/: alone ${summary(basePings)}; during the flood ${summary(attackPings)}`);
    t.diagnostic(`good client push of 2 x 256 KiB layers: ${baseline.ms} ms alone, ${underAttack.ms} ms during the flood`);
    t.diagnostic(`first login (bcrypt cost 12): ${first.ms} ms alone; a new user during the flood: ${newcomer.ms} ms`);
  } finally {
    await stopProcess(child);
    await dir.cleanup();
  }
});
