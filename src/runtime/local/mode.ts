// runc or host-process mode: runc where it can run (installed, and we are root), host processes
// with this machine's JVM where asked for or where runc cannot run.
import { spawnSync } from 'node:child_process';
import { LocalRuntimeError } from './errors.js';
import type { LocalMode } from './records.js';

function probeRunc(runc: string): { ok: boolean; why?: string } {
  const result = spawnSync(runc, ['--version'], { encoding: 'utf8' });
  if (result.error) return { ok: false, why: `runc is not installed (${(result.error as NodeJS.ErrnoException).code})` };
  if (result.status !== 0) return { ok: false, why: `runc --version failed: ${result.stderr.trim()}` };
  if (process.getuid?.() !== 0) return { ok: false, why: 'runc needs root here (weft does not set up rootless runc yet)' };
  return { ok: true };
}

/** The mode to run in for the one `wanted` (auto: runc when it can run here), and a note saying why. */
export function chooseMode(wanted: LocalMode | 'auto', runc: string): { mode: LocalMode; note: string } {
  if (wanted !== 'runc' && wanted !== 'host' && wanted !== 'auto') throw new LocalRuntimeError(`unknown local mode "${wanted}": use runc, host or auto`);
  const probe = probeRunc(runc);
  if (wanted === 'runc') {
    if (!probe.ok) throw new LocalRuntimeError(`runc cannot run here: ${probe.why} (use --local-mode host, or install runc and run as root)`);
    return { mode: 'runc', note: 'containers run with runc' };
  }
  if (wanted === 'host' || !probe.ok) {
    return {
      mode: 'host',
      note:
        wanted === 'host'
          ? "host-process mode (asked for): programs run from the image's layers with this machine's JVM, without container isolation"
          : `host-process mode: ${probe.why}; programs run from the image's layers with this machine's JVM, without container isolation`,
    };
  }
  return { mode: 'runc', note: 'containers run with runc' };
}
