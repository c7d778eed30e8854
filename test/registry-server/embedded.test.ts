// The default embedded registry: started in the background on demand, reused
// when it answers, and `weft registry serve` stopping cleanly on SIGTERM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureEmbeddedRegistry } from '../../src/registry/server/index.js';
import { pushBlob, raw, tempDir } from './helpers.js';
import { freePort } from '../support/net.js';
import { isAlive } from '../support/process.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));



test('ensureEmbeddedRegistry starts `weft registry serve` in the background once and reuses it', { timeout: 60_000 }, async () => {
  const dir = await tempDir('registry-embedded');
  const addr = `127.0.0.1:${await freePort()}`;
  const saved = { addr: process.env.WEFT_REGISTRY_ADDR, state: process.env.XDG_STATE_HOME };
  process.env.WEFT_REGISTRY_ADDR = addr;
  process.env.XDG_STATE_HOME = join(dir.path, 'state');
  let pid: number | undefined;
  try {
    const first = await ensureEmbeddedRegistry({ root: join(dir.path, 'root') });
    assert.equal(first.started, true);
    assert.equal(first.url, `http://${addr}`);
    pid = first.pid;
    assert.ok(pid && isAlive(pid));
    assert.equal(readFileSync(join(dir.path, 'state', 'weft', 'registry.pid'), 'utf8').trim(), String(pid));
    const pushed = await pushBlob(first.url, 'embedded/app', Buffer.from('hello'));
    assert.equal(pushed.status, 201);
    assert.ok(existsSync(join(dir.path, 'root', 'blobs', 'sha256', pushed.digest.slice(7, 9), pushed.digest.slice(7))), 'stored under the given root');

    const second = await ensureEmbeddedRegistry();
    assert.equal(second.started, false);
    assert.equal(second.url, first.url);
  } finally {
    if (pid && isAlive(pid)) process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 100 && pid && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 50));
    if (pid && isAlive(pid)) process.kill(pid, 'SIGKILL');
    process.env.WEFT_REGISTRY_ADDR = saved.addr;
    process.env.XDG_STATE_HOME = saved.state;
    if (saved.addr === undefined) delete process.env.WEFT_REGISTRY_ADDR;
    if (saved.state === undefined) delete process.env.XDG_STATE_HOME;
    await dir.cleanup();
  }
});

test('`weft registry serve` prints its address and exits 0 on SIGTERM', { timeout: 60_000 }, async () => {
  const dir = await tempDir('registry-serve');
  const child = spawn(process.execPath, [cli, 'registry', 'serve', '--root', join(dir.path, 'root'), '--addr', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const line = out.split('\n')[0];
        if (out.includes('\n')) resolve(line.trim());
      });
      child.once('exit', (code) => reject(new Error(`exited early with ${code}`)));
    });
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal((await raw(url, 'GET', '/v2/')).status, 200);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await dir.cleanup();
  }
});

test('`weft registry serve` refuses bad options with a clear error', async () => {
  const dir = await tempDir('registry-badopts');
  try {
    const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [cli, 'registry', 'serve', '--root', join(dir.path, 'root'), '--addr', 'nonsense'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      child.once('exit', (code) => resolve({ code, stderr }));
    });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /invalid address "nonsense": use host:port/);
    const missing = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [cli, 'registry', 'serve', '--root', join(dir.path, 'root'), '--addr', '127.0.0.1:0', '--htpasswd', join(dir.path, 'nope')], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      child.once('exit', (code) => resolve({ code, stderr }));
    });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /cannot read htpasswd file/);
  } finally {
    await dir.cleanup();
  }
});
