// Push and pull of the same image with weft vs skopeo vs crane against Debian's
// docker-registry (CNCF distribution) on loopback. Cases:
//   cold push     OCI layout -> new repository
//   re-push       the image with one changed (class) layer -> the repository holding v1; bytes counted by a proxy
//   pull          registry -> OCI layout directory
//   copy          registry -> another registry (streamed, no disk)
// plus weft's two upload strategies (POST+PUT vs POST+PATCH+PUT), in-process.
// Usage: node dist/bench/push-pull.js [--runs 5] [--mb 32] [--baseline <another weft.cjs>]
// --baseline adds a column for another build of weft (e.g. main's dist/bin/weft.cjs copied
// aside), run interleaved with the others: before/after in one run.
// Prints a markdown table of medians and ratios (weft time / peer time: <= 1 means weft is as fast or faster),
// with the CPU time (user + system) each process used.
import { execFileSync, spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { copyImage, createRemoteTransport } from '../src/registry/client/index.js';
import { readOciLayout } from '../src/image/index.js';
import { parseDockerReference } from '../src/image/reference.js';
import { craneBinary, startDistribution, startProxy, syntheticImage, tempDir, writeLayoutByHand } from '../test/registry-client/helpers.js';
import { median } from './stats.js';
import { countFlag, flag } from './args.js';

const runs = countFlag('runs', 5);
const totalMb = countFlag('mb', 32);
// The weft command as installed (package.json bin: the bundle scripts/bundle-cli.mjs writes).
const weftMain = path.resolve('dist/bin/weft.cjs');
const baselineFlag = flag('baseline', '');
const baselineMain = baselineFlag ? path.resolve(baselineFlag) : undefined;

interface Run {
  ms: number;
  /** CPU seconds of the process (user + system), from /usr/bin/time. */
  cpu: number;
  /** CPU milliseconds the registries used meanwhile (see registriesCpuMs). */
  registryCpu?: number;
}

const clockTicksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/**
 * CPU milliseconds (user + system) the registry processes have used so far, from
 * /proc/<pid>/stat: what they spent serving an operation shows whether the client
 * or the registry set its pace (a cold push's registry hashes and writes every byte).
 */
async function registriesCpuMs(pids: number[]): Promise<number> {
  let total = 0;
  for (const pid of pids) {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    total += ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicksPerSecond;
  }
  return total;
}

/** Runs a command (see exec) and records the registries' CPU time during it. */
async function execWithRegistryCpu(pids: number[], cmd: string, argv: string[]): Promise<Run> {
  const before = await registriesCpuMs(pids);
  const run = await exec(cmd, argv);
  run.registryCpu = (await registriesCpuMs(pids)) - before;
  return run;
}

/** Runs a command under /usr/bin/time; wall time measured here, CPU time from the child's rusage. */
async function exec(cmd: string, argv: string[]): Promise<Run> {
  const timeFile = path.join(os.tmpdir(), `weft-bench-time-${process.pid}`);
  const ms = await new Promise<number>((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn('/usr/bin/time', ['-o', timeFile, '-f', '%U %S', cmd, ...argv], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`${cmd} ${argv.join(' ')} failed (${code}): ${err}`));
      else resolve(Number(process.hrtime.bigint() - started) / 1e6);
    });
  });
  const [user, sys] = (await fs.readFile(timeFile, 'utf8')).trim().split('\n').pop()!.split(' ').map(Number);
  return { ms, cpu: user! + sys! };
}

type Tool = 'weft' | 'skopeo' | 'crane' | 'baseline';
/** The four operations, with their labels in the tables. */
const cases = [['cold', 'cold push'], ['repush', 're-push, one layer changed'], ['pull', 'pull to OCI layout'], ['copy', 'copy registry to registry']] as const;
const tools: Tool[] = baselineMain ? ['weft', 'skopeo', 'crane', 'baseline'] : ['weft', 'skopeo', 'crane'];
const empty = <T>(): Record<Tool, T[]> => ({ weft: [], skopeo: [], crane: [], baseline: [] });
/** The weft command file for 'weft' or 'baseline'. */
const weftFor = (tool: Tool): string => (tool === 'baseline' ? baselineMain! : weftMain);

function pushCmd(tool: Tool, layout: string, tag: string, target: string): [string, string[]] {
  switch (tool) {
    case 'weft':
    case 'baseline':
      return [process.execPath, [weftFor(tool), 'copy', '-q', `oci:${layout}:${tag}`, `docker://${target}`]];
    case 'skopeo':
      return ['skopeo', ['copy', '-q', '--dest-tls-verify=false', `oci:${layout}:${tag}`, `docker://${target}`]];
    case 'crane':
      return [craneBinary(), ['push', '--insecure', layout, target]];
  }
}

function copyCmd(tool: Tool, source: string, target: string): [string, string[]] {
  switch (tool) {
    case 'weft':
    case 'baseline':
      return [process.execPath, [weftFor(tool), 'copy', '-q', `docker://${source}`, `docker://${target}`]];
    case 'skopeo':
      return ['skopeo', ['copy', '-q', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${source}`, `docker://${target}`]];
    case 'crane':
      return [craneBinary(), ['copy', '--insecure', source, target]];
  }
}

function pullCmd(tool: Tool, source: string, out: string): [string, string[]] {
  switch (tool) {
    case 'weft':
    case 'baseline':
      return [process.execPath, [weftFor(tool), 'copy', '-q', `docker://${source}`, `oci:${out}:v1`]];
    case 'skopeo':
      return ['skopeo', ['copy', '-q', '--src-tls-verify=false', `docker://${source}`, `oci:${out}:v1`]];
    case 'crane':
      return [craneBinary(), ['pull', '--insecure', '--format=oci', source, out]];
  }
}

/**
 * The four operations through weft's library in this process, a new client each (as the
 * command makes), hashing thread on; their times go into `record` when given (else a warm-up).
 */
async function libraryRound(
  hosts: { registry: string; repush: string; other: string; repository: string; out: string; pids: number[] },
  layouts: { v1: string; v2: string },
  record?: Record<string, number[]>,
  registryCpu?: Record<string, number[]>,
): Promise<void> {
  const timed = async (name: string, op: (client: ReturnType<typeof createRemoteTransport>) => Promise<unknown>): Promise<void> => {
    const client = createRemoteTransport({ hashThread: true });
    const registriesBefore = await registriesCpuMs(hosts.pids);
    const started = process.hrtime.bigint();
    try {
      await op(client);
    } finally {
      client.close();
    }
    record?.[name]!.push(Number(process.hrtime.bigint() - started) / 1e6);
    registryCpu?.[name]!.push((await registriesCpuMs(hosts.pids)) - registriesBefore);
  };
  const repo = `${hosts.registry}/${hosts.repository}`;
  await timed('cold', (c) => copyImage(c, `oci:${layouts.v1}:v1`, `docker://${repo}:v1`));
  await timed('repush', (c) => copyImage(c, `oci:${layouts.v2}:v1`, `docker://${hosts.repush}/${hosts.repository}:v2`));
  await timed('pull', (c) => copyImage(c, `docker://${repo}:v1`, `oci:${hosts.out}:v1`));
  await fs.rm(hosts.out, { recursive: true, force: true });
  await timed('copy', (c) => copyImage(c, `docker://${repo}:v1`, `docker://${hosts.other}/copy/${hosts.repository}:v1`));
}

async function main(): Promise<void> {
  await fs.access(craneBinary()).catch(() => {
    throw new Error(`crane missing at ${craneBinary()}: run WEFT_SETUP_MODE=--test bash scripts/setup.d/35-crane.sh`);
  });
  const work = await tempDir('weft-bench-pp-');
  const registry = await startDistribution();
  try {
    // A JVM-shaped image: dependencies dominate, classes are small and change.
    const mb = 1024 * 1024;
    const spec = [
      { name: 'release-deps.jar', size: Math.round(totalMb * 0.6 * mb), seed: 'deps' },
      { name: 'snapshot-deps.jar', size: Math.round(totalMb * 0.25 * mb), seed: 'snap' },
      { name: 'project-deps.jar', size: Math.round(totalMb * 0.1 * mb), seed: 'proj' },
      { name: 'resources', size: Math.round(totalMb * 0.04 * mb), seed: 'res' },
      { name: 'classes', size: Math.round(totalMb * 0.01 * mb), seed: 'classes-v1' },
    ];
    const v1 = await syntheticImage(spec, 'v1');
    const v2 = await syntheticImage(spec.map((s) => (s.name === 'classes' ? { ...s, seed: 'classes-v2' } : s)), 'v2');
    const layout1 = path.join(work, 'v1');
    const layout2 = path.join(work, 'v2');
    await writeLayoutByHand(layout1, v1, 'v1');
    await writeLayoutByHand(layout2, v2, 'v1');
    const layouts = { v1: layout1, v2: layout2 };
    const imageBytes = [...v1.blobs.values()].reduce((s, b) => s + b.length, 0);
    const changedBytes = v2.manifest.layers[4]!.size + v2.manifest.config.size;
    const times: Record<string, Record<Tool, Run[]>> = { cold: empty(), repush: empty(), pull: empty(), copy: empty() };
    const repushBytes = empty<number>();
    const repushRequests = empty<number>();
    // The same four operations through weft's library in this (long-lived) process, as a
    // long-lived process would use it (its hashing thread on): no process start-up per operation.
    const library: Record<string, number[]> = { cold: [], repush: [], pull: [], copy: [] };
    const libraryRegistryCpu: Record<string, number[]> = { cold: [], repush: [], pull: [], copy: [] };
    // A long-lived process has run its code before: warm the library's code (V8 compiles it
    // optimised only after some runs) with unmeasured rounds against another registry.
    const warmups = 5;
    const warmOther = await startDistribution();
    for (let i = 0; i < warmups; i++) await libraryRound({ registry: registry.host, repush: registry.host, other: warmOther.host, repository: `warm/${i}`, out: path.join(work, `warm-${i}`), pids: [registry.pid, warmOther.pid] }, layouts);
    await warmOther.close();
    for (let i = 0; i < runs; i++) {
      // A fresh registry per round, so "cold" is cold for everyone (skopeo's blob-info
      // cache is keyed by host:port and would otherwise mount blobs from earlier rounds).
      const fresh = await startDistribution();
      const counting = await startProxy(fresh);
      const other = await startDistribution();
      const pids = [fresh.pid, other.pid];
      const measured = (cmd: string, argv: string[]): Promise<Run> => execWithRegistryCpu(pids, cmd, argv);
      try {
        // Rotate the order each round so no tool always runs first.
        const order = tools.map((_, k) => tools[(k + i) % tools.length]!);
        for (const tool of order) {
          const repo = `${fresh.host}/bench/${tool}`;
          const [c1, a1] = pushCmd(tool, layout1, 'v1', `${repo}:v1`);
          times.cold![tool].push(await measured(c1, a1));
          // Re-push after one layer changed, through the counting proxy.
          counting.reset();
          const [c2, a2] = pushCmd(tool, layout2, 'v1', `${counting.host}/bench/${tool}:v2`);
          times.repush![tool].push(await measured(c2, a2));
          repushBytes[tool].push(counting.requests.reduce((sum, r) => sum + r.requestBytes, 0));
          repushRequests[tool].push(counting.requests.length);
          const out = path.join(work, `pull-${tool}-${i}`);
          const [c3, a3] = pullCmd(tool, `${repo}:v1`, out);
          times.pull![tool].push(await measured(c3, a3));
          await fs.rm(out, { recursive: true, force: true });
          const [c4, a4] = copyCmd(tool, `${repo}:v1`, `${other.host}/copy/${tool}:v1`);
          times.copy![tool].push(await measured(c4, a4));
        }
        await libraryRound({ registry: fresh.host, repush: counting.host, other: other.host, repository: 'bench/library', out: path.join(work, `pull-library-${i}`), pids }, layouts, library, libraryRegistryCpu);
      } finally {
        await counting.close();
        await fresh.close();
        await other.close();
      }
    }

    // Start-up: node itself, and weft answering --version and --help (interleaved).
    const startup: Record<string, Run[]> = { node: [], version: [], help: [] };
    for (let i = 0; i < runs * 3; i++) {
      startup.node!.push(await exec(process.execPath, ['-e', '0']));
      startup.version!.push(await exec(process.execPath, [weftMain, '--version']));
      startup.help!.push(await exec(process.execPath, [weftMain, '--help']));
    }
    // Upload strategy, in-process (no process start-up in the numbers).
    const modes: Record<string, number[]> = { put: [], patch: [] };
    const image = await readOciLayout(layout1, 'v1');
    for (let i = 0; i < runs; i++) {
      for (const mode of i % 2 ? (['patch', 'put'] as const) : (['put', 'patch'] as const)) {
        const client = createRemoteTransport({ uploadMode: mode });
        const started = process.hrtime.bigint();
        await client.push(image, parseDockerReference(`${registry.host}/bench/mode-${mode}-${i}:v1`));
        modes[mode]!.push(Number(process.hrtime.bigint() - started) / 1e6);
        client.close();
      }
    }

    const lines: string[] = [];
    lines.push(`image: 5 layers, ${(imageBytes / mb).toFixed(1)} MiB compressed; changed layer + config: ${(changedBytes / 1024).toFixed(1)} KiB; ${runs} runs each, medians`);
    lines.push('');
    const ms = (list: Run[]): number => median(list.map((r) => r.ms));
    const cpu = (list: Run[]): number => median(list.map((r) => r.cpu * 1000));
    lines.push('| case | weft ms | skopeo ms | crane ms | weft / crane | weft / skopeo | weft CPU ms | skopeo CPU ms | crane CPU ms |');
    lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const [name, label] of cases) {
      const t = times[name]!;
      const [w, sk, c] = [ms(t.weft), ms(t.skopeo), ms(t.crane)];
      lines.push(`| ${label} | ${w.toFixed(0)} | ${sk.toFixed(0)} | ${c.toFixed(0)} | ${(w / c).toFixed(2)} | ${(w / sk).toFixed(2)} | ${cpu(t.weft).toFixed(0)} | ${cpu(t.skopeo).toFixed(0)} | ${cpu(t.crane).toFixed(0)} |`);
    }
    if (baselineMain) {
      lines.push('');
      lines.push(`baseline: ${baselineMain}`);
      lines.push('');
      lines.push('| case | baseline ms | weft ms | crane ms | baseline / crane | weft / crane | baseline CPU ms | weft CPU ms |');
      lines.push('|---|---:|---:|---:|---:|---:|---:|---:|');
      for (const [name, label] of cases) {
        const t = times[name]!;
        const [b, w, c] = [ms(t.baseline), ms(t.weft), ms(t.crane)];
        lines.push(`| ${label} | ${b.toFixed(0)} | ${w.toFixed(0)} | ${c.toFixed(0)} | ${(b / c).toFixed(2)} | ${(w / c).toFixed(2)} | ${cpu(t.baseline).toFixed(0)} | ${cpu(t.weft).toFixed(0)} |`);
      }
    }
    lines.push('');
    lines.push('| re-push: bytes sent (requests) | weft | skopeo | crane |');
    lines.push('|---|---:|---:|---:|');
    lines.push(
      `| median | ${median(repushBytes.weft)} (${median(repushRequests.weft)}) | ${median(repushBytes.skopeo)} (${median(repushRequests.skopeo)}) | ${median(repushBytes.crane)} (${median(repushRequests.crane)}) |`,
    );
    lines.push('');
    const n = ms(startup.node!);
    lines.push('In-process: the same operations through weft\'s library (copyImage, a new client each, hashThread: true) in this long-lived process, beside');
    lines.push(`the same run\'s crane, after ${warmups} unmeasured rounds of each; and \`node -e 0\`, the floor under any weft command, against crane\'s whole command:`);
    lines.push('');
    // (node -e 0 + library) / crane: a command that started as fast as Node itself and then ran as
    // fast as the warm library would still take this long, against crane's whole command.
    lines.push('| case | weft library ms | crane ms | library / crane | node -e 0 / crane | (node -e 0 + library) / crane |');
    lines.push('|---|---:|---:|---:|---:|---:|');
    for (const [name, label] of cases) {
      const [l, c] = [median(library[name]!), ms(times[name]!.crane)];
      lines.push(`| ${label} | ${l.toFixed(0)} | ${c.toFixed(0)} | ${(l / c).toFixed(2)} | ${(n / c).toFixed(2)} | ${((n + l) / c).toFixed(2)} |`);
    }
    lines.push('');
    // The registries' share: when their CPU during an operation is close to its wall time,
    // the registry (hashing and writing what it receives) set the pace, not the client.
    const registryCpu = (list: Run[]): number => median(list.map((r) => r.registryCpu ?? 0));
    lines.push(`Registries' CPU during each operation (user + system of the registry processes, ms; ${1000 / clockTicksPerSecond} ms clock ticks), and crane's wall time beside it:`);
    lines.push('');
    lines.push(`| case | registry CPU: weft | skopeo | crane${baselineMain ? ' | baseline' : ''} | weft library | crane wall ms |`);
    lines.push(`|---|---:|---:|---:|${baselineMain ? '---:|' : ''}---:|---:|`);
    for (const [name, label] of cases) {
      const t = times[name]!;
      const base = baselineMain ? ` | ${registryCpu(t.baseline).toFixed(0)}` : '';
      lines.push(`| ${label} | ${registryCpu(t.weft).toFixed(0)} | ${registryCpu(t.skopeo).toFixed(0)} | ${registryCpu(t.crane).toFixed(0)}${base} | ${median(libraryRegistryCpu[name]!).toFixed(0)} | ${ms(t.crane).toFixed(0)} |`);
    }
    lines.push('');
    lines.push(
      `start-up (${runs * 3} runs each, interleaved): node -e 0 ${n.toFixed(0)} ms (CPU ${cpu(startup.node!).toFixed(0)}); ` +
        `weft --version ${ms(startup.version!).toFixed(0)} ms (${(ms(startup.version!) / n).toFixed(2)}x, CPU ${cpu(startup.version!).toFixed(0)}); ` +
        `weft --help ${ms(startup.help!).toFixed(0)} ms (${(ms(startup.help!) / n).toFixed(2)}x, CPU ${cpu(startup.help!).toFixed(0)})`,
    );
    lines.push(`load average at the end: ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
    lines.push(`weft upload strategy, in-process cold push: POST+PUT ${median(modes.put!).toFixed(0)} ms, POST+PATCH+PUT ${median(modes.patch!).toFixed(0)} ms (ratio ${(median(modes.patch!) / median(modes.put!)).toFixed(2)})`);
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await registry.close();
    await fs.rm(work, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
});
