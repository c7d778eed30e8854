// The shared plumbing (src/common): atomic writes, default directories, durations.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { DurationError, formatDuration, parseDurationMs, weftStateDir, writeFileAtomic } from '../../src/common/index.js';
import { tempDir } from '../support/temp.js';

test('writeFileAtomic replaces the whole file with the asked mode and leaves no temporary file', async () => {
  const dir = await tempDir('weft-common-');
  try {
    const file = path.join(dir, 'run.json');
    await fs.writeFile(file, 'old content that is longer');
    await writeFileAtomic(file, '{"new":true}', 0o600);
    assert.equal(await fs.readFile(file, 'utf8'), '{"new":true}');
    assert.equal((await fs.stat(file)).mode & 0o777, 0o600);
    await writeFileAtomic(file, 'readable', 0o644);
    assert.equal((await fs.stat(file)).mode & 0o777, 0o644);
    assert.deepEqual(await fs.readdir(dir), ['run.json']);
    await assert.rejects(writeFileAtomic(path.join(dir, 'missing', 'x'), 'y'));
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('weftStateDir follows XDG_STATE_HOME', () => {
  const saved = process.env.XDG_STATE_HOME;
  try {
    process.env.XDG_STATE_HOME = '/xdg/state';
    assert.equal(weftStateDir('local'), '/xdg/state/weft/local');
    assert.equal(weftStateDir('master', 'master.db'), '/xdg/state/weft/master/master.db');
  } finally {
    if (saved === undefined) delete process.env.XDG_STATE_HOME;
    else process.env.XDG_STATE_HOME = saved;
  }
});

test('durations: every accepted form, a bare number is seconds, and mistakes say how to write them', () => {
  assert.equal(parseDurationMs('500ms'), 500);
  assert.equal(parseDurationMs('60s'), 60_000);
  assert.equal(parseDurationMs('1h30m'), 5_400_000);
  assert.equal(parseDurationMs('1.5'), 1_500);
  assert.equal(parseDurationMs(2), 2_000);
  assert.throws(() => parseDurationMs('5 minutes'), (e: unknown) => e instanceof DurationError && /write it like 500ms/.test((e as Error).message));
  assert.throws(() => parseDurationMs(-1), DurationError);
  assert.equal(formatDuration(5_400_000), '90m');
  assert.equal(formatDuration(250), '250ms');
});
