// The run lock across processes: a holder killed at any point never blocks a run for good.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fs, utimesSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { withFileLock } from '../../src/runtime/local/run-lock.js';
import { waitFor } from '../support/wait.js';

async function tempDir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'weft-run-lock-'));
}

test('an empty lock file (a writer killed between create and write, as older weft could leave) is taken over once it is old', async () => {
  const dir = await tempDir();
  try {
    const file = path.join(dir, 'lock');
    await fs.writeFile(file, '');
    const old = new Date(Date.now() - 60_000);
    utimesSync(file, old, old);
    const started = Date.now();
    assert.equal(await withFileLock(file, async () => 'held', 30_000), 'held');
    assert.ok(Date.now() - started < 20_000, 'taken over, not waited out');
    assert.deepEqual((await fs.readdir(dir)).sort(), [], 'no lock, temp or stale file left');
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('a lock naming a dead process is taken over; a live holder makes the next one wait until it lets go', async () => {
  const dir = await tempDir();
  try {
    const file = path.join(dir, 'lock');
    const child = spawn(process.execPath, ['-e', '0']);
    await new Promise((r) => child.on('exit', r));
    await fs.writeFile(file, `${child.pid} 1`);
    assert.equal(await withFileLock(file, async () => 'taken', 30_000), 'taken');
    const order: string[] = [];
    let release!: () => void;
    const first = withFileLock(file, async () => {
      order.push('first in');
      await new Promise<void>((r) => (release = r));
      order.push('first out');
    });
    await waitFor('the first to hold the lock', () => order.includes('first in'));
    const second = withFileLock(file, async () => void order.push('second in'));
    // The second is in its wait loop: its claim (a hard link source named <lock>.<pid>-<random>.new) is staged and stays while it waits.
    await waitFor('the second to stage its claim', async () => (await fs.readdir(dir)).some((n) => n.startsWith('lock.') && n.endsWith('.new')));
    assert.deepEqual(order, ['first in'], 'the second waits while the first holds it');
    release();
    await Promise.all([first, second]);
    assert.deepEqual(order, ['first in', 'first out', 'second in']);
    assert.equal(await withFileLock(file, async () => (await fs.readFile(file, 'utf8')).split(' ')[0]), String(process.pid), 'the lock names its holder from the moment it exists');
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});
