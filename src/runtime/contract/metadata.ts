// The labels and annotations a program (and weft itself) finds on every
// instance: the pod's on Kubernetes, the podinfo files' on the local runtime.
import type { RunnableSpec } from '../spec.js';

export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const LABEL_NAME = 'app.kubernetes.io/name';
export const LABEL_RUN_ID = 'weft.io/run-id';
export const LABEL_APP = 'weft.io/app';
export const LABEL_RUNNABLE = 'weft.io/runnable';
export const MANAGED_BY = 'weft';
/** The runnable's kind (batch, service, stateful). */
export const ANN_KIND = 'weft.io/kind';
/** A command sent to the instance: `weft.io/command-<id>` (see commands.ts). */
export const ANN_COMMAND_PREFIX = 'weft.io/command-';

/** The labels of every object of a run (and of its instances, with `runnable`). */
export function runLabels(runId: string, app: string, runnable?: string): Record<string, string> {
  const labels: Record<string, string> = {
    [LABEL_MANAGED_BY]: MANAGED_BY,
    [LABEL_NAME]: app,
    [LABEL_RUN_ID]: runId,
    [LABEL_APP]: app,
  };
  if (runnable) labels[LABEL_RUNNABLE] = runnable;
  return labels;
}

/** The annotations weft puts on every instance (commands are added later). */
export function instanceAnnotations(kind: RunnableSpec['kind']): Record<string, string> {
  return { [ANN_KIND]: kind };
}
