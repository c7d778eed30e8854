// Layer unpacking: whiteouts, opaque directories, links, and hostile entries
// (absolute names, "..", writes through symlinks that point outside the root).
// The last test compares weft's rootfs with umoci's for a real image.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { pack } from 'tar-stream';
import { applyLayer, ImageStore, UnpackError } from '../../src/runtime/local/index.js';
import { buildProbeImage, type ProbeImage } from '../twill/fixtures/probe-image.js';

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
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-unpack-'));
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
});

describe('unpacking a real image: weft and umoci agree', () => {
  let probe: ProbeImage;
  let dir: string;
  before(async () => {
    probe = await buildProbeImage();
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-unpack-umoci-'));
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
