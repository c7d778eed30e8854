// Benchmark of the local runtime: time from submit to COMPLETED for a batch
// that prints a line and exits, on the same image, in one run:
//   weft local (runc)   prepare().start() -> COMPLETED through the Twill API (image already unpacked)
//   weft local (host)   the same in host-process mode
//   runc run (peer)     umoci unpack once, then `runc run` of that bundle (rlimits dropped), no weft
//   first weft run      pull into the content store + unpack + run (cold image store)
// podman would be the natural peer but cannot start containers on this host
// (it sets RLIMIT_NPROC/NOFILE, which the sandbox forbids).
//
//   node dist/bench/local-runtime.js [--runs 7]
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseAppSpec } from '../src/runtime/index.js';
import { createLocalRuntime } from '../src/runtime/local/index.js';
import { Runner } from '../src/runtime/runner.js';
import { buildProbeImage } from '../test/twill/fixtures/probe-image.js';
import { median } from './stats.js';
import { countFlag } from './args.js';

const run = promisify(execFile);
const RUNS = countFlag('runs', 7);

const probe = await buildProbeImage();
const work = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-bench-local-'));
try {
  const spec = parseAppSpec({ name: 'bench', runnables: [{ name: 'job', kind: 'batch', image: probe.reference, args: ['batch'] }] });
  const weftRun = async (mode: 'runc' | 'host', stateDir: string): Promise<number> => {
    const runtime = await createLocalRuntime({ stateDir, mode, pollMs: 20 });
    const runner = new Runner(runtime);
    try {
      const t0 = performance.now();
      const c = await runner.prepare(spec).start();
      const end = await c.awaitTerminated(120_000);
      const ms = performance.now() - t0;
      if (end.state !== 'COMPLETED') throw new Error(`weft run ended ${end.state}: ${end.message}`);
      return ms;
    } finally {
      await runner.close();
    }
  };
  // Cold: a fresh state dir each time (pull + unpack + run).
  const cold: number[] = [];
  for (let i = 0; i < Math.min(RUNS, 3); i++) cold.push(await weftRun('runc', path.join(work, `cold-${i}`)));
  const warmDir = path.join(work, 'warm');
  await weftRun('runc', warmDir);
  const weftRunc: number[] = [];
  const weftHost: number[] = [];
  const peer: number[] = [];
  // The peer's bundle: umoci unpack once, rlimits dropped, no terminal, the same args.
  const bundle = path.join(work, 'bundle');
  await run('umoci', ['unpack', '--image', `${probe.layout}:probe`, bundle]);
  const cfgFile = path.join(bundle, 'config.json');
  const cfg = JSON.parse(await fs.readFile(cfgFile, 'utf8'));
  delete cfg.process.rlimits;
  cfg.process.terminal = false;
  cfg.process.args = [...cfg.process.args, 'batch'];
  await fs.writeFile(cfgFile, JSON.stringify(cfg));
  for (let i = 0; i < RUNS; i++) {
    // Interleaved, so background load hits all three alike.
    weftRunc.push(await weftRun('runc', warmDir));
    weftHost.push(await weftRun('host', warmDir));
    const t0 = performance.now();
    await run('runc', ['--root', path.join(work, 'runc-peer'), 'run', '--bundle', bundle, `bench-peer-${process.pid}-${i}`]);
    peer.push(performance.now() - t0);
    await run('runc', ['--root', path.join(work, 'runc-peer'), 'delete', '--force', `bench-peer-${process.pid}-${i}`]).catch(() => undefined);
  }
  const rows: Array<[string, number[]]> = [
    ['runc run of an unpacked bundle (peer)', peer],
    ['weft local, runc mode (image unpacked)', weftRunc],
    ['weft local, host-process mode', weftHost],
    ['weft local, runc mode, cold store (pull+unpack+run)', cold],
  ];
  const base = median(peer);
  console.log(`submit -> COMPLETED, batch printing one line (${RUNS} runs each; cold ${cold.length}); medians:`);
  for (const [name, xs] of rows) console.log(`  ${name.padEnd(52)} ${median(xs).toFixed(0).padStart(6)} ms   x${(median(xs) / base).toFixed(2)} of runc run`);
} finally {
  await fs.rm(work, { recursive: true, force: true });
  await probe.remove();
}
