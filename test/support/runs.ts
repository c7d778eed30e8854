// The runs a test file starts, so that its `after` ends whatever is left of them.
import { isTerminal, parseAppSpec, type AppSpecInput, type Controller, type Runtime, type RunStatus, type TwillRunner } from '../../src/runtime/index.js';
import { StopWaiting, waitFor } from './wait.js';

export class StartedRuns {
  readonly controllers: Controller[] = [];

  /** `runner` is asked for at each start (test files create theirs in `before`). */
  constructor(private readonly runner: () => TwillRunner) {}

  async start(input: AppSpecInput): Promise<Controller> {
    return this.track(await this.runner().prepare(parseAppSpec(input)).start());
  }

  /** Adds a run started some other way (withFiles, ...). */
  track(controller: Controller): Controller {
    this.controllers.push(controller);
    return controller;
  }

  /** Kills every run (a finished one too: kill also ends leftovers) and waits for each to end. */
  async endAll(runtime: Runtime): Promise<void> {
    for (const c of this.controllers) await runtime.kill(c.runId).catch(() => undefined);
    for (const c of this.controllers) await c.awaitTerminated(30_000).catch(() => undefined);
  }
}

/**
 * Polls a runtime until the run's status satisfies `predicate`; fails at once when the run ends
 * without it (unless `predicate` accepts ended runs), and with the last status seen on timeout.
 */
export async function waitForRunStatus(
  runtime: Pick<Runtime, 'status'>,
  runId: string,
  what: string,
  predicate: (s: RunStatus) => boolean,
  options: { timeoutMs?: number; fallback?: () => RunStatus } = {},
): Promise<RunStatus> {
  let last: RunStatus | undefined;
  try {
    return await waitFor(what, async () => {
      last = (await runtime.status(runId)) ?? options.fallback?.();
      if (!last) return undefined;
      if (predicate(last)) return last;
      if (isTerminal(last.state)) throw new StopWaiting(`run ${runId} ended ${last.state} (${last.message ?? ''}) while waiting for ${what}`);
      return undefined;
    }, { timeoutMs: options.timeoutMs ?? 60_000, intervalMs: 200 });
  } catch (error) {
    if (error instanceof StopWaiting) throw error;
    throw new Error(`${(error as Error).message}; last status: ${JSON.stringify(last)}`);
  }
}
