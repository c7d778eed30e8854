// The base image through a registry: `weft base jre --output docker://` into
// weft's embedded registry (on 127.0.0.1, port 0), read back by skopeo, used
// as `weft build --base docker://...`, and the result run with runc.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { serveRegistry, type ServedRegistry } from '../support/registry-serve.js';
import { expectedHello, helloBuild, mustRun, mustWeft, requireExampleBuild, runImage, tempDir } from './harness.js';

describe('JRE base image through the embedded registry', () => {
  let work: { dir: string; remove: () => Promise<void> };
  let registry: ServedRegistry | undefined;

  before(async () => {
    requireExampleBuild();
    work = await tempDir('e2e-registry');
    registry = await serveRegistry(path.join(work.dir, 'registry'));
  });

  after(async () => {
    await registry?.stop();
    await work?.remove();
  });

  test('push with docker://, read by skopeo, build on it, run with runc', async () => {
    const ref = `${registry?.host}/weft/jre:17`;
    const pushed = JSON.parse((await mustWeft(['base', 'jre', '--output', `docker://${ref}`, '--json'])).stdout) as { digest: string };
    const inspect = JSON.parse((await mustRun('skopeo', ['inspect', '--tls-verify=false', `docker://${ref}`])).stdout) as { Digest: string };
    assert.equal(inspect.Digest, pushed.digest);

    const layout = path.join(work.dir, 'app');
    await mustWeft(['build', path.join(helloBuild, 'hello.jar'), '--base', `docker://${ref}`, '--output', `oci:${layout}:app`]);
    const run = await runImage(layout, 'app', { appendArgs: ['registry'] });
    assert.equal(run.code, 0, `runc exited ${run.code}: ${run.stderr}`);
    assert.match(run.stdout, expectedHello(['registry']));
  });
});
