// Layer unpacking: whiteouts, opaque directories, links, and hostile entries
// (absolute names, "..", writes through symlinks that point outside the root).
// The last test compares weft's rootfs with umoci's for a real image.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { pack } from 'tar-stream';
import { applyLayer, ImageStore, makeDirectoryInRoot, UnpackError } from '../../src/runtime/local/index.js';
import { jsonBytes, MediaType, sha256, StaticImage, writeOciLayout } from '../../src/image/index.js';
import { buildProbeImage, type ProbeImage } from '../twill/fixtures/probe-image.js';
import { tempDir } from '../support/temp.js';

const execFileAsync = promisify(execFile);

type Entry = { name: string; type?: 'file' | 'directory' | 'symlink' | 'link'; body?: string; linkname?: string; mode?: number };

async function tarOf(entries: Entry[]): Promise<Readable> {
  const p = pack();
  for (const e of entries) {
    await new Promise<void>((resolve, reject) =>
      p.entry({ name: e.name, type: e.type ?? 'file', linkname: e.linkname, mode: e.mode ?? (e.type === 'directory' ? 0o755 : 0o644) }, e.body ?? '', (err) => (err ? reject(err) : resolve())),
    );
  }
  p.finalize();
  return p as unknown as Readable;
}

describe('layer unpacking', () => {
  let dir: string;
  let root: string;
  let outside: string;

  before(async () => {
    dir = await tempDir('weft-unpack-');
  });
  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  const fresh = async (name: string) => {
    root = path.join(dir, name, 'rootfs');
    outside = path.join(dir, name, 'outside');
    await fs.mkdir(root, { recursive: true });
    await fs.mkdir(outside, { recursive: true });
  };

  test('layers apply in order; .wh. files delete, .wh..wh..opq empties a directory of lower layers only', async () => {
    await fresh('whiteouts');
    await applyLayer(root, await tarOf([
      { name: 'etc/', type: 'directory' },
      { name: 'etc/keep', body: 'keep' },
      { name: 'etc/gone', body: 'gone' },
      { name: 'opt/', type: 'directory' },
      { name: 'opt/old-1', body: '1' },
      { name: 'opt/sub/old-2', body: '2' },
      { name: 'bin/tool', body: 'v1', mode: 0o755 },
    ]));
    const stats = await applyLayer(root, await tarOf([
      { name: 'etc/.wh.gone' },
      { name: 'opt/.wh..wh..opq' },
      { name: 'opt/new', body: 'new' },
      { name: 'bin/tool', body: 'v2', mode: 0o750 },
    ]));
    assert.equal(stats.whiteouts, 2);
    assert.equal(await fs.readFile(path.join(root, 'etc/keep'), 'utf8'), 'keep');
    assert.equal(existsSync(path.join(root, 'etc/gone')), false);
    assert.deepEqual((await fs.readdir(path.join(root, 'opt'))).sort(), ['new']);
    assert.equal(await fs.readFile(path.join(root, 'bin/tool'), 'utf8'), 'v2');
    assert.equal((await fs.stat(path.join(root, 'bin/tool'))).mode & 0o777, 0o750);
  });

  test('symlinks and hard links are created; a file replaces a directory and vice versa', async () => {
    await fresh('links');
    await applyLayer(root, await tarOf([
      { name: 'usr/bin/java', body: 'jvm', mode: 0o755 },
      { name: 'bin', type: 'symlink', linkname: 'usr/bin' },
      { name: 'usr/bin/java-hard', type: 'link', linkname: 'usr/bin/java' },
      { name: 'x/', type: 'directory' },
    ]));
    await applyLayer(root, await tarOf([{ name: 'x', body: 'now a file' }, { name: 'bin/extra', body: 'through the usr-merge link' }]));
    assert.equal((await fs.lstat(path.join(root, 'bin'))).isSymbolicLink(), true);
    assert.equal(await fs.readFile(path.join(root, 'usr/bin/extra'), 'utf8'), 'through the usr-merge link');
    assert.equal((await fs.stat(path.join(root, 'usr/bin/java-hard'))).ino, (await fs.stat(path.join(root, 'usr/bin/java'))).ino);
    assert.equal(await fs.readFile(path.join(root, 'x'), 'utf8'), 'now a file');
  });

  for (const [what, entries] of [
    ['a name with ..', [{ name: '../escape', body: 'x' }]],
    ['an absolute name', [{ name: '/abs-escape', body: 'x' }]],
    ['a hard link to ../', [{ name: 'h', type: 'link', linkname: '../../outside/secret' }]],
  ] as Array<[string, Entry[]]>) {
    test(`a layer with ${what} is refused with a clear error`, async () => {
      await fresh(`hostile-${what.replace(/\W+/g, '-')}`);
      await assert.rejects(applyLayer(root, await tarOf(entries)), (e: Error) => e instanceof UnpackError && /hostile|outside/.test(e.message));
      assert.deepEqual(await fs.readdir(outside), [], 'nothing written outside the root');
    });
  }

  test('a symlink pointing outside the root cannot be written through: it resolves inside the root', async () => {
    await fresh('symlink-escape');
    await applyLayer(root, await tarOf([
      { name: 'evil', type: 'symlink', linkname: outside },
      { name: 'up', type: 'symlink', linkname: '../../../../../../..' + outside },
    ]));
    await applyLayer(root, await tarOf([{ name: 'evil/pwned', body: 'x' }, { name: 'up/pwned2', body: 'y' }, { name: 'evil/.wh.nothing' }]));
    assert.deepEqual(await fs.readdir(outside), [], 'nothing written outside the root');
    // Both landed inside the root, where the link targets point when the root is /.
    assert.equal(await fs.readFile(path.join(root, outside, 'pwned'), 'utf8'), 'x');
    assert.equal(await fs.readFile(path.join(root, outside, 'pwned2'), 'utf8'), 'y');
  });

  test('issue 13 #1: a directory mode is never applied through a symlink that replaced the directory in the same layer', async () => {
    await fresh('mode-through-symlink');
    const hostFile = path.join(outside, 'host-file');
    await fs.writeFile(hostFile, 'host', { mode: 0o644 });
    await fs.mkdir(path.join(outside, 'host-dir'), { mode: 0o755 });
    await fs.chmod(path.join(outside, 'host-dir'), 0o755);
    const old = new Date('2001-01-01T00:00:00Z');
    await fs.utimes(hostFile, old, old);
    const before = [await fs.stat(hostFile), await fs.stat(path.join(outside, 'host-dir'))];
    const p = pack();
    const when = new Date('2030-01-01T00:00:00Z');
    for (const e of [
      { name: 'a/', type: 'directory' as const, mode: 0o4777, mtime: when },
      { name: 'a', type: 'symlink' as const, linkname: hostFile, mtime: when },
      { name: 'p/q/', type: 'directory' as const, mode: 0o6777, mtime: when },
      { name: 'p', type: 'symlink' as const, linkname: outside, mtime: when }, // the parent of p/q replaced: p/q would be outside/q
      { name: 'r/', type: 'directory' as const, mode: 0o4777, mtime: when },
      { name: 'r', type: 'symlink' as const, linkname: '../../outside/host-dir', mtime: when },
    ]) {
      await new Promise<void>((resolve, reject) => p.entry(e, '', (err) => (err ? reject(err) : resolve())));
    }
    p.finalize();
    const chunks: Buffer[] = [];
    for await (const c of p) chunks.push(c as Buffer);
    await applyLayer(root, Readable.from([Buffer.concat(chunks)]));
    const after = [await fs.stat(hostFile), await fs.stat(path.join(outside, 'host-dir'))];
    for (const [i, st] of after.entries()) {
      assert.equal(st.mode.toString(8), before[i].mode.toString(8), 'the host mode is unchanged (no setuid, not world-writable)');
      assert.equal(st.mtimeMs, before[i].mtimeMs, 'the host mtime is unchanged');
    }
    assert.deepEqual((await fs.readdir(outside)).sort(), ['host-dir', 'host-file']);
    assert.equal((await fs.lstat(path.join(root, 'a'))).isSymbolicLink(), true, 'the later symlink wins, as in other runtimes');
  });

  test('issue 13 #2: directories created under an image symlink (etc -> /host/dir) stay inside the root', async () => {
    await fresh('mkdir-in-root');
    await applyLayer(root, await tarOf([{ name: 'etc', type: 'symlink', linkname: outside }, { name: 'up', type: 'symlink', linkname: '../../outside' }]));
    const made = await makeDirectoryInRoot(root, ['etc', 'weft', 'podinfo']);
    await makeDirectoryInRoot(root, ['up', 'weft', 'files']);
    assert.deepEqual(await fs.readdir(outside), [], 'nothing created on the host');
    assert.equal(made, path.join(root, outside, 'weft', 'podinfo'), 'where runc resolves /etc/weft/podinfo inside the rootfs');
    assert.equal((await fs.stat(path.join(root, 'outside', 'weft', 'files'))).isDirectory(), true);
    await fs.writeFile(path.join(root, 'plain'), 'x');
    await assert.rejects(makeDirectoryInRoot(root, ['plain', 'sub']), (e: Error) => e instanceof UnpackError && /plain is not a directory/.test(e.message));
  });
});

describe('issue 13 #2: ImageStore creates mount points inside the rootfs', () => {
  test('an image whose etc is a symlink to a host directory gets its etc/weft mount points inside the rootfs', async () => {
    const dir = await tempDir('weft-unpack-mounts-');
    try {
      const hostDir = path.join(dir, 'host-etc');
      await fs.mkdir(hostDir);
      const layer = await tarOf([{ name: 'etc', type: 'symlink', linkname: hostDir }, { name: 'app/', type: 'directory' }]);
      const chunks: Buffer[] = [];
      for await (const c of layer) chunks.push(c as Buffer);
      const layerBytes = Buffer.concat(chunks);
      const config = jsonBytes({ architecture: 'amd64', os: 'linux', config: { Cmd: ['/bin/true'] }, rootfs: { type: 'layers', diff_ids: [sha256(layerBytes)] } });
      const manifest = jsonBytes({
        schemaVersion: 2,
        mediaType: MediaType.ociManifest,
        config: { mediaType: MediaType.ociConfig, digest: sha256(config), size: config.length },
        layers: [{ mediaType: MediaType.ociLayer, digest: sha256(layerBytes), size: layerBytes.length }],
      });
      const image = new StaticImage('test', manifest, config, async () => Readable.from([layerBytes]));
      await writeOciLayout(image, path.join(dir, 'layout'), 'hostile');
      const unpacked = await new ImageStore(path.join(dir, 'store')).prepare(`oci:${path.join(dir, 'layout')}:hostile`);
      assert.deepEqual(await fs.readdir(hostDir), [], 'no etc/weft/podinfo or etc/weft/files on the host');
      assert.equal((await fs.stat(path.join(unpacked.rootfs, hostDir, 'weft', 'podinfo'))).isDirectory(), true);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

describe('unpacking a real image: weft and umoci agree', () => {
  let probe: ProbeImage;
  let dir: string;
  before(async () => {
    probe = await buildProbeImage();
    dir = await tempDir('weft-unpack-umoci-');
  });
  after(async () => {
    await probe?.remove();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  async function listing(root: string): Promise<string[]> {
    const out: string[] = [];
    const ignore = new Set(['etc/weft', 'etc/weft/podinfo', 'etc/weft/files', 'tmp', 'proc', 'sys', 'dev']);
    async function walk(rel: string): Promise<void> {
      for (const name of (await fs.readdir(path.join(root, rel))).sort()) {
        const r = rel ? `${rel}/${name}` : name;
        const st = await fs.lstat(path.join(root, r));
        if (!ignore.has(r)) {
          const kind = st.isSymbolicLink() ? `l->${await fs.readlink(path.join(root, r))}` : st.isDirectory() ? 'd' : `f${st.size}`;
          out.push(`${r} ${kind} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`);
        }
        if (st.isDirectory()) await walk(r);
      }
    }
    await walk('');
    return out;
  }

  test('the same files, sizes, modes, owners and links as umoci unpack', async () => {
    const store = new ImageStore(path.join(dir, 'store'));
    const unpacked = await store.prepare(probe.reference);
    assert.ok(unpacked.rootfs.startsWith(path.join(dir, 'store')));
    const again = await store.prepare(probe.reference);
    assert.equal(again.rootfs, unpacked.rootfs, 'unpacked once per manifest digest');
    const bundle = path.join(dir, 'umoci');
    await execFileAsync('umoci', ['unpack', '--image', `${probe.layout}:probe`, bundle]);
    const ours = await listing(unpacked.rootfs);
    const theirs = await listing(path.join(bundle, 'rootfs'));
    assert.ok(ours.length > 20, `a real rootfs (${ours.length} entries)`);
    assert.deepEqual(ours, theirs);
  });
});
