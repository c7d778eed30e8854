// The provisioning journal: one JSON file per cluster that records each step before it
// runs and after it finished, so that a provisioner killed in the middle resumes where it
// stopped (CDAP's provisioner records its task state the same way). Written atomically:
// a kill mid-write leaves the previous journal, never a torn one.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { weftStateDir, writeFileAtomic } from '../common/index.js';
import type { ClusterConfig } from './types.js';

export type StepState = 'started' | 'done';

export interface JournalStep {
  name: string;
  state: StepState;
  startedAt: string;
  finishedAt?: string;
}

export type JournalPhase = 'provisioning' | 'ready' | 'deprovisioning' | 'deleted';

export interface JournalRecord {
  version: 1;
  cluster: string;
  config: ClusterConfig;
  phase: JournalPhase;
  /** Steps of the current (or last) provisioning or deprovisioning, in order. */
  steps: JournalStep[];
  updatedAt: string;
}

export class JournalError extends Error {
  override name = 'JournalError';
}

/** ${XDG_STATE_HOME:-~/.local/state}/weft/clusters */
export function defaultJournalDir(): string {
  return weftStateDir('clusters');
}

const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export class Journal {
  private constructor(
    readonly file: string,
    private record: JournalRecord | undefined,
  ) {}

  static async open(dir: string, cluster: string): Promise<Journal> {
    if (!NAME.test(cluster)) throw new JournalError(`cluster name "${cluster}" is not valid: use lower-case letters, digits and '-' (at most 63)`);
    const file = path.join(dir, `${cluster}.json`);
    const text = await fs.readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw new JournalError(`cannot read the provisioning journal ${file}: ${error.message}`);
    });
    if (text === undefined) return new Journal(file, undefined);
    let record: JournalRecord;
    try {
      record = JSON.parse(text) as JournalRecord;
    } catch (error) {
      throw new JournalError(`the provisioning journal ${file} is not valid JSON (${(error as Error).message}): move it away to start over`);
    }
    if (record.version !== 1 || record.cluster !== cluster || !Array.isArray(record.steps)) {
      throw new JournalError(`the provisioning journal ${file} is not one this weft writes: move it away to start over`);
    }
    return new Journal(file, record);
  }

  get current(): JournalRecord | undefined {
    return this.record;
  }

  /** Starts a provisioning or deprovisioning. An unfinished one of the same kind keeps its steps (resume). */
  async begin(cluster: string, config: ClusterConfig, phase: 'provisioning' | 'deprovisioning'): Promise<{ resumed: boolean }> {
    const resumed = this.record?.phase === phase;
    this.record = {
      version: 1,
      cluster,
      config,
      phase,
      steps: resumed ? this.record!.steps : [],
      updatedAt: new Date().toISOString(),
    };
    await this.save();
    return { resumed };
  }

  isDone(step: string): boolean {
    return this.record?.steps.some((s) => s.name === step && s.state === 'done') ?? false;
  }

  /** Runs a step: recorded as started before, done after. A step already done in this phase is skipped. */
  async step(name: string, run: () => Promise<void>): Promise<'ran' | 'skipped'> {
    if (!this.record) throw new JournalError('no provisioning in progress: call begin() first');
    if (this.isDone(name)) return 'skipped';
    const startedAt = new Date().toISOString();
    this.record.steps = [...this.record.steps.filter((s) => s.name !== name), { name, state: 'started', startedAt }];
    await this.save();
    await run();
    this.record.steps = this.record.steps.map((s) => (s.name === name ? { ...s, state: 'done', finishedAt: new Date().toISOString() } : s));
    await this.save();
    return 'ran';
  }

  async finish(phase: 'ready' | 'deleted'): Promise<void> {
    if (!this.record) return;
    this.record.phase = phase;
    await this.save();
  }

  async remove(): Promise<void> {
    await fs.rm(this.file, { force: true });
    this.record = undefined;
  }

  private async save(): Promise<void> {
    this.record!.updatedAt = new Date().toISOString();
    await fs.mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.file, `${JSON.stringify(this.record, null, 2)}\n`);
  }
}
