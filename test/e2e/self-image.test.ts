// weft as an image (`weft self-image`): reproducible (the same digest from a cached and an
// uncached build), only production packages, and it really runs weft with runc: the CLI,
// the native SQLite addon the master needs, and the registry serving a push from outside.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { planSelfImage, productionPackages } from '../../src/image/index.js';
import { registryAddress } from '../support/registry-serve.js';
import { helloBuild, mustRun, mustWeft, prepareBundle, repoRoot, requireExampleBuild, runcRun, tempDir, umociUnpack } from './harness.js';

interface SelfResult {
  digest: string;
  weftVersion: string;
  nodeVersion: string;
  packages: number;
  nativeAddons: string[];
  layers: Array<{ name: string; digest: string; cached: boolean }>;
}

const NODE = '/usr/local/bin/node';
const MAIN = '/app/weft/dist/src/cli/main.js';

describe('weft self-image: weft packaged as a reproducible image', () => {
  let work: { dir: string; remove: () => Promise<void> };
  let layout: string;
  let first: SelfResult;
  let bundle: Bundle;

  before(async () => {
    requireExampleBuild();
    work = await tempDir('self-image');
    layout = path.join(work.dir, 'weft');
    first = JSON.parse((await mustWeft(['self-image', '--output', `oci:${layout}:weft`, '--json'])).stdout) as SelfResult;
    // Unpacked once (200 MB): every run below starts a container from the same bundle.
    bundle = await unpack(layout, path.join(work.dir, 'bundle'));
  });

  after(async () => {
    await work?.remove();
  });

  test('the same inputs give the same digest, with or without the layer cache', async () => {
    const again = JSON.parse((await mustWeft(['self-image', '--output', `oci:${path.join(work.dir, 'again')}:weft`, '--no-cache', '--json'])).stdout) as SelfResult;
    assert.ok(again.layers.every((l) => !l.cached), 'the second build wrote every layer');
    assert.equal(again.digest, first.digest);
    assert.deepEqual(
      first.layers.map((l) => l.name),
      ['os', 'node', 'deps', 'weft'],
    );
    const inspect = JSON.parse((await mustRun('skopeo', ['inspect', `oci:${layout}:weft`])).stdout) as { Digest: string; Labels: Record<string, string> };
    assert.equal(inspect.Digest, first.digest, 'skopeo reads the layout');
    assert.equal(inspect.Labels['io.weft.version'], first.weftVersion);
  });

  test('only production packages go in: no dev dependency from package-lock.json', async () => {
    const lock = JSON.parse(await fs.readFile(path.join(repoRoot, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
    const dev = Object.entries(lock.packages).filter(([k, v]) => k.startsWith('node_modules/') && v.dev).map(([k]) => k);
    assert.ok(dev.includes('node_modules/typescript'), 'typescript is a dev dependency (the check below means something)');
    const plan = await planSelfImage();
    const deps = plan.layers.find((l) => l.name === 'deps')!.entries.map((e) => `/${e.path.replace(/^\/+/, '')}`);
    for (const key of dev) assert.ok(!deps.some((p) => p === `/app/weft/${key}` || p.startsWith(`/app/weft/${key}/`)), `${key} is left out`);
    assert.equal(plan.packages.length, productionPackages(lock).length);
    assert.equal(first.packages, plan.packages.length);
    const app = plan.layers.find((l) => l.name === 'weft')!.entries.map((e) => e.path);
    assert.ok(app.some((p) => p.endsWith('dist/src/cli/main.js')));
    assert.ok(!app.some((p) => p.includes('/dist/test/') || p.includes('/dist/bench/')), 'no tests or benchmarks');
  });

  test('runs with runc: weft --version, and the native SQLite addon loads', async () => {
    const version = await bundle.run([NODE, MAIN, '--version']);
    assert.equal(version.code, 0, version.stderr);
    assert.equal(version.stdout.trim(), first.weftVersion);
    const sqlite = await bundle.run([NODE, '-e', "const D=require('/app/weft/node_modules/better-sqlite3');console.log(new D(':memory:').prepare('select 40+2 as x').get().x)"]);
    assert.equal(sqlite.code, 0, sqlite.stderr);
    assert.equal(sqlite.stdout.trim(), '42');
  });

  test("the image's registry serves a push from outside (weft build) and skopeo reads it back", { timeout: 300_000 }, async () => {
    const registry = await bundle.start([NODE, MAIN, 'registry', 'serve', '--root', '/tmp/registry', '--addr', '127.0.0.1:0', '--json']);
    try {
      const { host } = await registryAddress(registry.child);
      const built = JSON.parse(
        (await mustWeft(['build', path.join(helloBuild, 'hello.jar'), '--base', 'scratch', '--output', `docker://${host}/hello:1`, '--json'])).stdout,
      ) as { digest: string };
      const inspect = JSON.parse((await mustRun('skopeo', ['inspect', '--tls-verify=false', `docker://${host}/hello:1`])).stdout) as { Digest: string };
      assert.equal(inspect.Digest, built.digest);
    } finally {
      await registry.stop();
    }
  });
});

interface Bundle {
  /** Runs `args` in a container of the image (its own network namespace); waits for the exit. */
  run(args: string[]): ReturnType<typeof runcRun>;
  /** Starts `args` in a container in the host's network namespace (to listen on 127.0.0.1). */
  start(args: string[]): Promise<{ child: ChildProcess; stop(): Promise<void> }>;
}

async function unpack(layout: string, dir: string): Promise<Bundle> {
  await umociUnpack(layout, 'weft', dir);
  const file = path.join(dir, 'config.json');
  const pristine = await fs.readFile(file, 'utf8');
  const configure = async (args: string[], hostNetwork: boolean): Promise<void> => {
    await fs.writeFile(file, pristine);
    const config = await prepareBundle(dir, { args });
    if (hostNetwork) config.linux.namespaces = (config.linux.namespaces as Array<{ type: string }>).filter((n) => n.type !== 'network');
    await fs.writeFile(file, JSON.stringify(config));
  };
  return {
    async run(args) {
      await configure(args, false);
      return runcRun(dir, 120_000);
    },
    async start(args) {
      await configure(args, true);
      return startBundle(dir);
    },
  };
}

async function startBundle(bundle: string) {
  const state = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-runc-state-'));
  const id = `weft-self-${process.pid}-${randomBytes(4).toString('hex')}`;
  const child = spawn('runc', ['--root', state, 'run', '--bundle', bundle, id], { stdio: ['ignore', 'pipe', 'pipe'] });
  const closed = new Promise<void>((resolve) => child.on('close', () => resolve()));
  return {
    child,
    async stop(): Promise<void> {
      await mustRun('runc', ['--root', state, 'kill', id, 'KILL']).catch(() => undefined);
      await Promise.race([closed, new Promise((r) => setTimeout(r, 10_000))]);
      await mustRun('runc', ['--root', state, 'delete', '--force', id]).catch(() => undefined);
      await fs.rm(state, { recursive: true, force: true });
    },
  };
}
