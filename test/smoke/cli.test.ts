import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { parseImageReference } from '../../src/image/index.js';

test('weft --help names the command', () => {
  const out = execFileSync(process.execPath, ['dist/src/cli/main.js', '--help'], { encoding: 'utf8' });
  assert.match(out, /Usage: weft/);
});

test('image references parse in skopeo syntax', () => {
  assert.deepEqual(parseImageReference('oci:out/img:v1'), { transport: 'oci', dir: 'out/img', tag: 'v1' });
  assert.deepEqual(parseImageReference('docker://localhost:5000/a/b:c').transport, 'docker');
  assert.throws(() => parseImageReference('docker://localhost:5000/A/b'), /invalid repository name/);
});
