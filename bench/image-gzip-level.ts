// Benchmark: weft's layer writer at gzip levels 1/6/9 against GNU tar | gzip
// on the same files, for a dependency layer (already-deflated jars) and a
// classes layer (small uncompressed .class files). Prints medians and ratios.
// Usage: node dist/bench/image-gzip-level.js [repeats]
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BlobStore, writeLayer, type LayerEntry } from '../src/image/index.js';
import { copyDistinctSystemJars } from './inputs.js';
import { median } from './stats.js';

const repeats = Number(process.argv[2] ?? 5);
const work = mkdtempSync(path.join(os.tmpdir(), 'weft-bench-gzip-'));

// Inputs: every distinct jar in /usr/share/java, and guava's classes exploded.
const jarsDir = path.join(work, 'jars');
mkdirSync(jarsDir);
copyDistinctSystemJars(jarsDir);
const classesDir = path.join(work, 'classes');
mkdirSync(classesDir);
execFileSync('jar', ['--extract', '--file', '/usr/share/java/guava.jar'], { cwd: classesDir });

function entriesOf(dir: string, prefix: string): LayerEntry[] {
  const out: LayerEntry[] = [];
  const walk = (rel: string): void => {
    for (const name of readdirSync(path.join(dir, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      const full = path.join(dir, r);
      if (statSync(full).isDirectory()) walk(r);
      else out.push({ type: 'file', path: `${prefix}/${r}`, source: full });
    }
  };
  walk('');
  return out;
}

const inputs = [
  { name: 'dependencies (jars)', dir: jarsDir, prefix: 'app/libs' },
  { name: 'classes (guava exploded)', dir: classesDir, prefix: 'app/classes' },
];
console.log(`repeats=${repeats}, cpus=${os.availableParallelism()}, node ${process.version}, zlib ${process.versions.zlib}`);
console.log('| layer | level | weft wall ms | weft CPU ms | weft size | tar\\|gzip wall ms | tar\\|gzip CPU ms | tar\\|gzip size | wall ratio weft/peer | CPU ratio |');
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const input of inputs) {
  const entries = entriesOf(input.dir, input.prefix);
  for (const level of [1, 6, 9]) {
    const weftTimes: number[] = [];
    const peerTimes: number[] = [];
    const weftCpu: number[] = [];
    const peerCpu: number[] = [];
    let weftSize = 0;
    let peerSize = 0;
    for (let i = 0; i < repeats; i++) {
      const storeDir = path.join(work, `store-${level}-${i}`);
      let t0 = process.hrtime.bigint();
      const u = process.cpuUsage();
      const layer = await writeLayer(entries, { store: new BlobStore(storeDir), gzipLevel: level });
      weftTimes.push(Number(process.hrtime.bigint() - t0) / 1e6);
      const d = process.cpuUsage(u);
      weftCpu.push((d.user + d.system) / 1000);
      weftSize = layer.descriptor.size;
      rmSync(storeDir, { recursive: true, force: true });
      const out = path.join(work, 'peer.tar.gz');
      t0 = process.hrtime.bigint();
      const r = spawnSync('bash', ['-c', `tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1 -C "${input.dir}" -cf - . | gzip -n -${level} > "${out}"; times`], { encoding: 'utf8' });
      peerTimes.push(Number(process.hrtime.bigint() - t0) / 1e6);
      if (r.status !== 0) throw new Error(`tar|gzip failed: ${r.stderr}`);
      const [user, sys] = r.stdout.trim().split('\n')[1].split(/\s+/).map((t) => {
        const m = /(\d+)m([\d.]+)s/.exec(t)!;
        return (Number(m[1]) * 60 + Number(m[2])) * 1000;
      });
      peerCpu.push(user + sys);
      peerSize = statSync(out).size;
    }
    const w = median(weftTimes);
    const p = median(peerTimes);
    const wc = median(weftCpu);
    const pc = median(peerCpu);
    console.log(`| ${input.name} | ${level} | ${w.toFixed(0)} | ${wc.toFixed(0)} | ${weftSize} | ${p.toFixed(0)} | ${pc.toFixed(0)} | ${peerSize} | ${(w / p).toFixed(2)} | ${(wc / pc).toFixed(2)} |`);
  }
}
rmSync(work, { recursive: true, force: true });
