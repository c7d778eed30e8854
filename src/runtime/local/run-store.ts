// The run records under <state dir>/runs/<run id>/run.json: read, written atomically, and
// changed one writer at a time (a queue per run in this process, the run's lock file across processes).
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../../common/index.js';
import { LocalRuntimeError } from './errors.js';
import type { RunRecord } from './records.js';
import { withFileLock } from './run-lock.js';
import { privateDir, PRIVATE_FILE } from './state-files.js';

export class RunStore {
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(
    readonly stateDir: string,
    readonly runsDir: string,
  ) {}

  runDir(runId: string): string {
    if (!/^[a-z0-9][-a-z0-9]*$/.test(runId)) throw new LocalRuntimeError(`invalid run id "${runId}"`);
    return path.join(this.runsDir, runId);
  }

  async load(runId: string): Promise<RunRecord | undefined> {
    let text: string;
    try {
      text = await fs.readFile(path.join(this.runDir(runId), 'run.json'), 'utf8');
    } catch {
      return undefined;
    }
    return JSON.parse(text) as RunRecord;
  }

  async mustLoad(runId: string): Promise<RunRecord> {
    const record = await this.load(runId);
    if (!record) throw new LocalRuntimeError(`no local run ${runId} in ${this.runsDir}: see weft list --runtime local`);
    return record;
  }

  save(record: RunRecord): Promise<void> {
    return writeFileAtomic(path.join(this.runDir(record.runId), 'run.json'), JSON.stringify(record, null, 2), PRIVATE_FILE);
  }

  /**
   * Serialises read-modify-write of one run's record: within this process (a queue per run)
   * and across weft processes (the run's lock file), on a record read after the lock is taken.
   */
  async withRun<T>(runId: string, fn: (record: RunRecord) => Promise<T>): Promise<T> {
    const previous = this.locks.get(runId) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(async () => {
      await this.mustLoad(runId);
      return withFileLock(path.join(this.runDir(runId), 'lock'), async () => fn(await this.mustLoad(runId)));
    });
    this.locks.set(runId, next);
    try {
      return await next;
    } finally {
      if (this.locks.get(runId) === next) this.locks.delete(runId);
    }
  }

  /** The state dir and its runs dir, private to weft's user (see PRIVATE_DIR). */
  async privateStateDirs(): Promise<void> {
    await privateDir(this.stateDir);
    await privateDir(this.runsDir);
  }

  /** The ids of every run in the state dir (none when it does not exist yet). */
  async runIds(): Promise<string[]> {
    return fs.readdir(this.runsDir).catch(() => [] as string[]);
  }

  /** Waits for every change in flight. */
  async settle(): Promise<void> {
    await Promise.all([...this.locks.values()].map((p) => p.catch(() => undefined)));
  }
}
