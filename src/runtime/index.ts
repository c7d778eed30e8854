// The runtime capability: app spec, run states, the Twill-style API, and the
// factory that picks a backend.
import type { KubernetesRuntimeOptions, LocalRuntimeOptions, RunnerOptions, Runtime, RunStatus, TwillRunner } from './api.js';
import { Runner } from './runner.js';

export * from './api.js';
export * from './spec.js';
export * from './state.js';
export { Runner, RunError, type RunIdOptions } from './runner.js';
export { createRunIdGenerator, isValidRunId, newRunId, RUN_ID_MAX_LENGTH, RunIdTakenError, runIdTime, type RunIdGenerator, type RunIdSource } from './runid.js';

/** Creates the backend alone (for code that wants the SPI directly). */
export async function createRuntime(options: RunnerOptions): Promise<Runtime> {
  switch (options.runtime) {
    case 'kubernetes': {
      // Loaded on demand: a local-only user never loads the Kubernetes client, and the reverse.
      const backend = await import('./kube/index.js');
      return backend.createRuntime(options);
    }
    case 'local': {
      const backend = await import('./local/index.js');
      return backend.createRuntime(options);
    }
    default:
      throw new Error(`unknown runtime "${(options as { runtime: string }).runtime}": use kubernetes or local`);
  }
}

/** createRunner({ runtime: 'kubernetes' | 'local', ... }) returns a TwillRunner on that backend. */
export async function createRunner(options: RunnerOptions): Promise<TwillRunner> {
  return new Runner(await createRuntime(options));
}

/** A run found on a backend, with that backend (the caller closes it). */
export interface LocatedRun {
  runtime: Runtime;
  status: RunStatus;
}

export class RunNotFoundError extends Error {
  override name = 'RunNotFoundError';
}

/**
 * Finds the backend that holds `runId` when the user named none: this machine's local
 * state first (cheap, no network), then Kubernetes. A Kubernetes that cannot be reached
 * is reported together with where the run was looked for, not as a bare connection error.
 */
export async function locateRun(
  runId: string,
  options: { local?: Omit<LocalRuntimeOptions, 'runtime'>; kubernetes?: Omit<KubernetesRuntimeOptions, 'runtime'> } = {},
): Promise<LocatedRun> {
  let localWhere = 'the local state directory';
  try {
    const local = await createRuntime({ ...options.local, runtime: 'local' });
    localWhere = (local as Runtime & { runsDir?: string }).runsDir ?? localWhere;
    const status = await local.status(runId).catch(() => undefined);
    if (status) return { runtime: local, status };
    await local.close();
  } catch {
    // no usable local runtime here: Kubernetes is the only place left
  }
  let kube: Runtime | undefined;
  try {
    kube = await createRuntime({ ...options.kubernetes, runtime: 'kubernetes' });
    const status = await kube.status(runId);
    if (status) return { runtime: kube, status };
  } catch (error) {
    await kube?.close().catch(() => undefined);
    throw new RunNotFoundError(
      `no run ${runId} in ${localWhere}, and Kubernetes could not be asked (${(error as Error).message}); ` +
        'give --runtime local or --runtime kubernetes (and --kubeconfig/--context) to look in one place',
    );
  }
  await kube.close();
  throw new RunNotFoundError(`no run ${runId}: not in ${localWhere} nor on Kubernetes (weft list --runtime local|kubernetes shows the runs; check --namespace/--context)`);
}
