// The runtime capability: app spec, run states, the Twill-style API, and the
// factory that picks a backend.
import type { RunnerOptions, Runtime, RuntimeFactory, TwillRunner } from './api.js';
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
      const mod = (await import('./kube/index.js')) as { createRuntime: RuntimeFactory<typeof options> };
      return mod.createRuntime(options);
    }
    case 'local': {
      // The local backend lives in ./local (see src/runtime/local/index.ts); it exports createRuntime.
      const path = './local/index.js';
      let mod: { createRuntime?: RuntimeFactory<typeof options> };
      try {
        mod = (await import(path)) as typeof mod;
      } catch (error) {
        throw new Error(`the local runtime is not available in this build (${(error as Error).message}); use --runtime kubernetes`);
      }
      if (typeof mod.createRuntime !== 'function') throw new Error('src/runtime/local/index.ts must export createRuntime(options)');
      return mod.createRuntime(options);
    }
    default:
      throw new Error(`unknown runtime "${(options as { runtime: string }).runtime}": use kubernetes or local`);
  }
}

/** createRunner({ runtime: 'kubernetes' | 'local', ... }) returns a TwillRunner on that backend. */
export async function createRunner(options: RunnerOptions): Promise<TwillRunner> {
  return new Runner(await createRuntime(options));
}
