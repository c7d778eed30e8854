// Benchmark: what a rebuild costs. weft build of a thin program jar with every
// distinct jar of /usr/share/java as --lib: cold (empty cache), no-change
// rebuild (every layer cached), and rebuild after a one-class change, against
// the floor `sha256sum` of the same input files (the no-change rebuild must
// read and hash them). Prints medians and ratios.
// Usage: node dist/bench/image-rebuild.js [repeats]
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildJvmImage } from '../src/image/index.js';
import { copyDistinctSystemJars } from './inputs.js';
import { median } from './stats.js';

const repeats = Number(process.argv[2] ?? 5);
const work = mkdtempSync(path.join(os.tmpdir(), 'weft-bench-rebuild-'));
const libs = path.join(work, 'libs');
mkdirSync(libs);
copyDistinctSystemJars(libs);
// The program: guava's classes re-packed as "our" code (about 2000 classes) plus a main class.
const src = path.join(work, 'src');
const classes = path.join(work, 'classes');
mkdirSync(path.join(src, 'bench'), { recursive: true });
mkdirSync(classes);
execFileSync('jar', ['--extract', '--file', '/usr/share/java/guava.jar'], { cwd: classes });
rmSync(path.join(classes, 'META-INF'), { recursive: true, force: true });
const program = path.join(work, 'app.jar');
const compile = (n: number): void => {
  writeFileSync(path.join(src, 'bench', 'Main.java'), `package bench; public class Main { public static void main(String[] a) { System.out.println(${n}); } }`);
  execFileSync('javac', ['-d', classes, path.join(src, 'bench', 'Main.java')]);
  writeFileSync(path.join(work, 'mf'), 'Main-Class: bench.Main\n');
  execFileSync('jar', ['--create', '--file', program, '--manifest', path.join(work, 'mf'), '-C', classes, '.']);
};
compile(0);
const inputs = [program, ...readdirSync(libs).map((n) => path.join(libs, n))];
const totalBytes = inputs.reduce((sum, f) => sum + statSync(f).size, 0);

const cpuOf = new Map<number[], number[]>();
const time = async (fn: () => Promise<unknown> | unknown, cpu?: number[]): Promise<number> => {
  const t0 = process.hrtime.bigint();
  const u = process.cpuUsage();
  await fn();
  const d = process.cpuUsage(u);
  cpu?.push((d.user + d.system) / 1000);
  return Number(process.hrtime.bigint() - t0) / 1e6;
};
const cold: number[] = [];
const noChange: number[] = [];
const oneClass: number[] = [];
const hashing: number[] = [];
const [coldCpu, noChangeCpu, oneClassCpu, hashingCpu]: number[][] = [[], [], [], []];
cpuOf.set(cold, coldCpu).set(noChange, noChangeCpu).set(oneClass, oneClassCpu);
for (let i = 0; i < repeats; i++) {
  const cacheDir = path.join(work, `cache-${i}`);
  const build = () => buildJvmImage({ program, libs: [libs], cacheDir });
  cold.push(await time(build, coldCpu));
  noChange.push(await time(build, noChangeCpu));
  compile(i + 1);
  oneClass.push(await time(build, oneClassCpu));
  // sha256sum's CPU time comes from the shell's `times` (children's user and system time).
  hashing.push(
    await time(() => {
      const r = spawnSync('bash', ['-c', 'sha256sum "$@" > /dev/null; times', 'bench', ...inputs], { encoding: 'utf8' });
      const [user, sys] = r.stdout.trim().split('\n')[1].split(/\s+/).map((t) => {
        const m = /(\d+)m([\d.]+)s/.exec(t)!;
        return (Number(m[1]) * 60 + Number(m[2])) * 1000;
      });
      hashingCpu.push(user + sys);
    }),
  );
  rmSync(cacheDir, { recursive: true, force: true });
}
const floor = median(hashing);
console.log(`inputs: ${inputs.length} files, ${(totalBytes / 1e6).toFixed(1)} MB; repeats=${repeats}; cpus=${os.availableParallelism()}`);
const floorCpu = median(hashingCpu);
console.log('| run | weft wall ms | sha256sum of inputs wall ms | wall ratio | weft CPU ms | sha256sum CPU ms | CPU ratio |');
console.log('|---|---|---|---|---|---|---|');
for (const [name, xs] of [['cold build', cold], ['no-change rebuild', noChange], ['one-class rebuild', oneClass]] as const) {
  const cpu = median(cpuOf.get(xs)!);
  console.log(`| ${name} | ${median(xs).toFixed(0)} | ${floor.toFixed(0)} | ${(median(xs) / floor).toFixed(2)} | ${cpu.toFixed(0)} | ${floorCpu.toFixed(0)} | ${(cpu / floorCpu).toFixed(2)} |`);
}
rmSync(work, { recursive: true, force: true });
