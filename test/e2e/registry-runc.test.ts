// The base image through a registry: `weft base jre --output docker://` into
// weft's embedded registry (on 127.0.0.1, port 0), read back by skopeo, used
// as `weft build --base docker://...`, and the result run with runc.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { expectedHello, helloBuild, mustRun, mustWeft, requireExampleBuild, runImage, tempDir, weftMain } from './harness.js';

/** Starts `weft registry serve` on a free loopback port; resolves with its host:port. */
async function startRegistry(root: string): Promise<{ host: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [weftMain, 'registry', 'serve', '--root', root, '--addr', '127.0.0.1:0', '--json'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const host = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`weft registry serve did not report its address within 60 s: ${out}${err}`)), 60_000);
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /"host":\s*"([^"]+)",\s*"port":\s*(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(`${m[1]}:${m[2]}`);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`weft registry serve exited ${code} before listening: ${out}${err}`));
    });
  });
  return { host, child };
}

describe('JRE base image through the embedded registry', () => {
  let work: { dir: string; remove: () => Promise<void> };
  let registry: { host: string; child: ChildProcess } | undefined;

  before(async () => {
    requireExampleBuild();
    work = await tempDir('e2e-registry');
    registry = await startRegistry(path.join(work.dir, 'registry'));
  });

  after(async () => {
    if (registry && registry.child.exitCode === null) {
      const exited = new Promise((resolve) => registry?.child.once('exit', resolve));
      registry.child.kill('SIGTERM');
      await exited;
    }
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
