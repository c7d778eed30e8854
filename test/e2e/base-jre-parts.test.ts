// The parts of `weft base jre` that can be checked without jlink: symlink
// chains of host files, jlink flags per JDK version, JDK discovery errors, and
// the shared libraries ldd reports for a real ELF file.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { findJdk, hostFileEntries, jlinkFlags, readRelease, sharedLibraries } from '../../src/image/base-jre.js';
import { tempDir } from './harness.js';

describe('base-jre parts', () => {
  let work: { dir: string; remove: () => Promise<void> };
  before(async () => {
    work = await tempDir('jre-parts');
  });
  after(async () => {
    await work?.remove();
  });

  test('host files keep their symlink chains, and every link target is added as well', async () => {
    const d = work.dir;
    await fs.mkdir(path.join(d, 'lib'));
    await fs.writeFile(path.join(d, 'lib', 'libz.so.1.2.13'), 'elf');
    await fs.symlink('libz.so.1.2.13', path.join(d, 'lib', 'libz.so.1'));
    await fs.mkdir(path.join(d, 'lib64'));
    await fs.symlink(path.join(d, 'lib', 'libz.so.1'), path.join(d, 'lib64', 'abs-link'));
    const { entries, paths } = await hostFileEntries([path.join(d, 'lib64', 'abs-link')]);
    assert.deepEqual(paths, [path.join(d, 'lib', 'libz.so.1'), path.join(d, 'lib', 'libz.so.1.2.13'), path.join(d, 'lib64', 'abs-link')]);
    const byPath = new Map(entries.map((e) => [e.path, e]));
    assert.deepEqual(byPath.get(path.join(d, 'lib64', 'abs-link')), { type: 'symlink', path: path.join(d, 'lib64', 'abs-link'), target: path.join(d, 'lib', 'libz.so.1') });
    assert.deepEqual(byPath.get(path.join(d, 'lib', 'libz.so.1')), { type: 'symlink', path: path.join(d, 'lib', 'libz.so.1'), target: 'libz.so.1.2.13' });
    assert.equal(byPath.get(path.join(d, 'lib', 'libz.so.1.2.13'))?.type, 'file');
  });

  test('a symlink loop is an error, not a hang', async () => {
    const a = path.join(work.dir, 'loop-a');
    const b = path.join(work.dir, 'loop-b');
    await fs.symlink(b, a);
    await fs.symlink(a, b);
    await assert.rejects(hostFileEntries([a]), /too many levels of symlinks/);
  });

  test('jlink flags: --compress=2 before JDK 21, zip-6 from 21 on', () => {
    assert.ok(jlinkFlags('17.0.15').includes('--compress=2'));
    assert.ok(jlinkFlags('21.0.2').includes('--compress=zip-6'));
    for (const v of ['17.0.15', '21']) {
      for (const f of ['--strip-debug', '--no-header-files', '--no-man-pages']) assert.ok(jlinkFlags(v).includes(f));
    }
  });

  test('findJdk: the machine JDK is found, a non-JDK is refused with a hint', async () => {
    const jdk = await findJdk();
    const release = await readRelease(jdk);
    assert.match(release.JAVA_VERSION ?? '', /^\d+/);
    await assert.rejects(findJdk(work.dir), /is not a JDK: it has no bin\/jlink/);
    await assert.rejects(findJdk(undefined, { PATH: work.dir }), /no JDK found/);
  });

  test('ldd on a real runtime library reports libc and the loader from the host', async () => {
    const jdk = await findJdk();
    const libs = await sharedLibraries(path.join(jdk, 'lib', 'server'));
    assert.ok(libs.some((l) => /\/libc\.so\.6$/.test(l)), libs.join(' '));
    assert.ok(libs.some((l) => /ld-linux/.test(l)), libs.join(' '));
    assert.ok(!libs.some((l) => l.startsWith(jdk)), 'the runtime’s own libraries are not copied as host libraries');
  });
});
