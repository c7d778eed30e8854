// The local backend's records: one run.json per run under the state directory,
// the only state the backend keeps (a restarted weft process reads them again).
import type { AppSpec } from '../spec.js';
import type { RunState } from '../state.js';

export type LocalMode = 'runc' | 'host';
export type LocalNetwork = 'host' | 'private';

export interface InstanceRecord {
  id: string;
  /** Instance directory, relative to the run directory. */
  dir: string;
  containerId: string;
  ports: Record<string, number>;
  supervisorPid?: number;
  supervisorStart?: string;
  createdAt: string;
  /** Set when scaled down: the instance is stopped and dropped from the status once gone. */
  removed?: boolean;
  /**
   * Set while weft restarts the instance (restartInstances): its old attempt's exit is
   * weft's own doing, not a failure. Cleared, in the same save, when the new supervisor starts.
   */
  restarting?: { at: string; gracePeriodMs: number };
}

export interface RunnableRecord {
  desired: number;
  instances: InstanceRecord[];
  nextId: number;
  image: { reference: string; digest: string; rootfs: string };
}

export interface RunRecord {
  version: 1;
  runId: string;
  app: string;
  spec: AppSpec;
  mode: LocalMode;
  modeNote?: string;
  /** runc mode's network (absent in records of older versions: host). */
  network?: LocalNetwork;
  createdAt: string;
  startDeadline: number;
  reachedRunning?: boolean;
  suspended?: boolean;
  stopRequested?: { at: string; kind: 'stop' | 'kill'; gracePeriodMs: number };
  final?: { state: RunState; message?: string; reason?: string; exitCode?: number; finishedAt: string };
  runnables: Record<string, RunnableRecord>;
}
