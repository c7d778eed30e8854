// Property test of layer unpacking: random layers of files, directories,
// symlinks, hard links and whiteouts (absolute and relative, nested, replaced
// within one layer and across layers) are applied to a root that sits beside
// a sentinel tree. Whatever the layers hold and whether or not the unpack
// refuses them, nothing outside the root is created, changed or read.
// Seeded: a failure prints the seed and the case, and WEFT_FUZZ_SEED=<seed>
// WEFT_FUZZ_CASES=<n> replays it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pack } from 'tar-stream';
import { applyLayer, makeDirectoryInRoot } from '../../src/runtime/local/index.js';
import { prng } from '../support/prng.js';
import { tempDir } from '../support/temp.js';

const SEED = Number(process.env.WEFT_FUZZ_SEED ?? 1301);
const CASES = Number(process.env.WEFT_FUZZ_CASES ?? 300);
const SECRET = 'sentinel-secret-7f3a';

type Kind = 'file' | 'directory' | 'symlink' | 'link';
interface Entry {
  name: string;
  type: Kind;
  mode: number;
  mtime: Date;
  linkname?: string;
  body?: string;
}

function generateLayers(random: () => number, sentinel: string): Entry[][] {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
  const names = ['a', 'b', 's', 'etc', 'x'];
  const somePath = (): string => Array.from({ length: 1 + Math.floor(random() * 3) }, () => pick(names)).join('/');
  const linkTarget = (): string =>
    pick([
      sentinel,
      `${sentinel}/dir`,
      `${sentinel}/file`,
      `${sentinel}/link-to-file`,
      `${sentinel}/fifo`,
      `${'../'.repeat(1 + Math.floor(random() * 6))}sentinel`,
      `${'../'.repeat(1 + Math.floor(random() * 6))}sentinel/file`,
      '/',
      '..',
      '.',
      `/${somePath()}`,
      somePath(),
      `../${somePath()}`,
    ]);
  const modes = [0o755, 0o644, 0o4777, 0o2755, 0o1777, 0o700, 0o600, 0o6755];
  const layers: Entry[][] = [];
  const files: string[] = [];
  for (let l = 1 + Math.floor(random() * 3); l > 0; l--) {
    const entries: Entry[] = [];
    for (let n = 1 + Math.floor(random() * 10); n > 0; n--) {
      const name = somePath();
      const mtime = new Date(Math.floor(random() * 2e9) * 1000);
      const mode = pick(modes);
      const r = random();
      const prefix = random() < 0.1 ? './' : random() < 0.01 ? '/' : '';
      if (r < 0.2) entries.push({ name: `${prefix}${name}/`, type: 'directory', mode, mtime });
      else if (r < 0.4) {
        entries.push({ name: `${prefix}${name}`, type: 'file', mode, mtime, body: `layer ${l} ${name}` });
        files.push(name);
      }
      else if (r < 0.6) entries.push({ name: `${prefix}${name}`, type: 'symlink', mode: 0o777, mtime, linkname: linkTarget() });
      else if (r < 0.7) {
        // Mostly a file written earlier (possibly replaced since), sometimes a path through a symlink or out of the root.
        const linkname = files.length > 0 && random() < 0.85 ? pick(files) : random() < 0.8 ? pick([somePath(), 's/file', 'x/file']) : pick(['../sentinel/file', `${sentinel}/file`]);
        entries.push({ name: `${prefix}${name}`, type: 'link', mode, mtime, linkname });
      } else if (r < 0.8) {
        const dir = random() < 0.3 ? '' : `${somePath()}/`;
        entries.push({ name: `${prefix}${dir}.wh.${pick([...names, 'file', 'dir', 'sentinel'])}`, type: 'file', mode: 0o644, mtime });
      } else if (r < 0.87) {
        entries.push({ name: `${prefix}${somePath()}/.wh..wh..opq`, type: 'file', mode: 0o644, mtime });
      } else {
        // The shape of issue 13 finding 1: a directory with a mode, then a symlink in its place in the same layer.
        entries.push({ name: `${name}/`, type: 'directory', mode: pick([0o4777, 0o6777, 0o777]), mtime });
        if (random() < 0.5) entries.push({ name: `${name}/file`, type: 'file', mode: 0o4755, mtime, body: 'x' });
        entries.push({ name, type: 'symlink', mode: 0o777, mtime, linkname: linkTarget() });
      }
    }
    layers.push(entries);
  }
  return layers;
}

async function tarOf(entries: Entry[]): Promise<Readable> {
  const p = pack();
  for (const e of entries) {
    await new Promise<void>((resolve, reject) =>
      p.entry({ name: e.name, type: e.type, mode: e.mode, mtime: e.mtime, linkname: e.linkname }, e.type === 'file' ? (e.body ?? '') : '', (err) =>
        err ? reject(err) : resolve(),
      ),
    );
  }
  p.finalize();
  // A plain Node stream of the bytes, as applyLayerFile gives (a tar-stream pack re-emits the unpack's refusal as an uncaught error).
  const chunks: Buffer[] = [];
  for await (const chunk of p) chunks.push(chunk as Buffer);
  return Readable.from([Buffer.concat(chunks)]);
}

/** Everything observable about a tree without reading through it: lstat of each entry, file hashes, link targets. */
async function snapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  async function walk(rel: string): Promise<void> {
    const full = path.join(dir, rel);
    const st = await fs.lstat(full);
    const facts = [st.mode.toString(8), st.uid, st.gid, st.size, st.nlink, st.ino, st.mtimeMs, st.ctimeMs];
    if (st.isSymbolicLink()) facts.push(await fs.readlink(full));
    if (st.isFile()) facts.push(createHash('sha256').update(await fs.readFile(full)).digest('hex'));
    out.set(rel || '.', facts.join(' '));
    if (st.isDirectory()) for (const name of (await fs.readdir(full)).sort()) await walk(path.join(rel, name));
  }
  await walk('');
  return out;
}

/** Files under the root whose content holds the sentinel's secret: data read from outside. */
async function leakedSecrets(root: string): Promise<string[]> {
  const leaks: string[] = [];
  async function walk(rel: string): Promise<void> {
    const full = path.join(root, rel);
    const st = await fs.lstat(full).catch(() => null);
    if (!st) return;
    if (st.isFile() && (await fs.readFile(full, 'utf8')).includes(SECRET)) leaks.push(rel);
    if (st.isDirectory()) for (const name of await fs.readdir(full).catch(() => [] as string[])) await walk(path.join(rel, name));
  }
  await walk('');
  return leaks;
}

let workDir: string;
let sentinel: string;
let sentinelBefore: Map<string, string>;

before(async () => {
  workDir = await tempDir('weft-unpack-fuzz-');
  sentinel = path.join(workDir, 'sentinel');
  await fs.mkdir(path.join(sentinel, 'dir'), { recursive: true });
  await fs.writeFile(path.join(sentinel, 'file'), SECRET, { mode: 0o640 });
  await fs.writeFile(path.join(sentinel, 'dir', 'inner'), SECRET, { mode: 0o600 });
  await fs.symlink('file', path.join(sentinel, 'link-to-file'));
  await fs.symlink(path.join(sentinel, 'dir'), path.join(sentinel, 'link-to-dir'));
  // A FIFO: anything that opens it for reading would hang, so a read through a link cannot go unnoticed.
  execFileSync('mkfifo', [path.join(sentinel, 'fifo')]);
  for (const f of ['file', 'dir/inner', 'dir', '.']) await fs.utimes(path.join(sentinel, f), new Date(1e9 * 1000), new Date(1e9 * 1000));
  sentinelBefore = await snapshot(sentinel);
});

after(async () => {
  if (workDir) await fs.rm(workDir, { recursive: true, force: true });
});

test(`random layers never touch anything outside the root (${CASES} cases, seed ${SEED})`, { timeout: 300_000 }, async () => {
  const random = prng(SEED);
  let applied = 0;
  let refused = 0;
  for (let i = 0; i < CASES; i++) {
    const layers = generateLayers(random, sentinel);
    const caseDir = path.join(workDir, 'cases', String(i));
    const root = path.join(caseDir, 'rootfs');
    await fs.mkdir(root, { recursive: true });
    // The sentinel is reachable from the root both by absolute path and as ../../../sentinel.
    await fs.symlink('../../sentinel', path.join(caseDir, 'sentinel'));
    let outcome = 'applied';
    try {
      for (const layer of layers) await applyLayer(root, await tarOf(layer));
      await makeDirectoryInRoot(root, ['etc', 'weft', 'podinfo']).catch(() => undefined);
      applied++;
    } catch (error) {
      outcome = `refused: ${(error as Error).message}`;
      if (process.env.WEFT_FUZZ_VERBOSE) console.log(outcome);
      refused++;
    }
    const replay = `case ${i} (WEFT_FUZZ_SEED=${SEED} WEFT_FUZZ_CASES=${i + 1}), ${outcome}, layers: ${JSON.stringify(layers.map((l) => l.map((e) => [e.type, e.name, e.linkname, e.mode.toString(8)])))}`;
    assert.deepEqual(await snapshot(sentinel), sentinelBefore, `the sentinel tree changed: ${replay}`);
    assert.deepEqual((await fs.readdir(caseDir)).sort(), ['rootfs', 'sentinel'], `something was created beside the root: ${replay}`);
    assert.deepEqual((await fs.readdir(workDir)).sort(), ['cases', 'sentinel'], `something was created outside the case: ${replay}`);
    assert.deepEqual(await leakedSecrets(root), [], `sentinel content was copied into the root: ${replay}`);
    await fs.rm(caseDir, { recursive: true, force: true });
  }
  // The property is only meaningful if most cases really unpack rather than being refused.
  assert.ok(applied >= CASES / 3, `${applied} of ${CASES} cases applied, ${refused} refused`);
});
