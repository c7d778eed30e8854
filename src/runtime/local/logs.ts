// Following instance log files: what is there (or its last N lines), then what
// is appended, until the run ends (one more pass, so the last lines are not lost).
import { promises as fs } from 'node:fs';
import type { LogLine, LogOptions, RunStatus } from '../api.js';
import { isTerminal } from '../state.js';

/** A run's log files and status: what following its logs needs of the runtime. */
export interface LogSource {
  logFiles(runId: string, options: LogOptions): Promise<Array<{ runnable: string; instance: string; file: string }>>;
  status(runId: string): Promise<RunStatus | undefined>;
}

export async function* streamLogs(runtime: LogSource, runId: string, options: LogOptions): AsyncIterable<LogLine> {
  const files = await runtime.logFiles(runId, options);
  const offsets = new Map<string, number>();
  const partial = new Map<string, string>();
  // Initial content (tail N lines per instance when asked).
  for (const f of files) {
    let text = '';
    try {
      text = await fs.readFile(f.file, 'utf8');
    } catch {
      // not written yet
    }
    offsets.set(f.file, Buffer.byteLength(text));
    let lines = text.split('\n');
    partial.set(f.file, lines.pop() ?? '');
    if (options.tail !== undefined) lines = lines.slice(Math.max(0, lines.length - options.tail));
    for (const line of lines) yield { runnable: f.runnable, instance: f.instance, line };
  }
  if (!options.follow) {
    for (const f of files) {
      const rest = partial.get(f.file);
      if (rest) yield { runnable: f.runnable, instance: f.instance, line: rest };
    }
    return;
  }
  let known = files;
  let finalRounds = 0;
  while (!options.signal?.aborted) {
    let progressed = false;
    for (const f of known) {
      if (!offsets.has(f.file)) {
        offsets.set(f.file, 0);
        partial.set(f.file, '');
      }
      let size: number;
      try {
        size = (await fs.stat(f.file)).size;
      } catch {
        continue;
      }
      const offset = offsets.get(f.file)!;
      if (size <= offset) continue;
      const handle = await fs.open(f.file, 'r');
      const buf = Buffer.alloc(size - offset);
      try {
        await handle.read(buf, 0, buf.length, offset);
      } finally {
        await handle.close();
      }
      offsets.set(f.file, size);
      progressed = true;
      const lines = (partial.get(f.file)! + buf.toString('utf8')).split('\n');
      partial.set(f.file, lines.pop() ?? '');
      for (const line of lines) yield { runnable: f.runnable, instance: f.instance, line };
    }
    if (progressed) continue;
    const status = await runtime.status(runId);
    if (!status || isTerminal(status.state)) {
      // One more pass after the end, so the last lines written are not lost.
      if (++finalRounds > 1) break;
    }
    known = await runtime.logFiles(runId, options).catch(() => known);
    await new Promise<void>((resolve) => {
      const onAbort = () => {
        clearTimeout(t);
        resolve();
      };
      const t = setTimeout(() => {
        options.signal?.removeEventListener('abort', onAbort);
        resolve();
      }, 200);
      options.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
  for (const f of known) {
    const rest = partial.get(f.file);
    if (rest) yield { runnable: f.runnable, instance: f.instance, line: rest };
  }
}
