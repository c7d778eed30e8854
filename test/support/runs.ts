// The runs a test file starts, so that its `after` ends whatever is left of them.
import { parseAppSpec, type AppSpecInput, type Controller, type Runtime, type TwillRunner } from '../../src/runtime/index.js';

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
