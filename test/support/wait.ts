// Waiting in tests for a real condition, never for a fixed time: poll until the
// probe gives a value, and say what was awaited (and the last error) when it never does.

export interface WaitOptions {
  /** Default 60 s. */
  timeoutMs?: number;
  /** Pause between probes (default 100 ms). */
  intervalMs?: number;
}

/** Thrown by a probe to end the wait at once with this error (e.g. the run ended while a state was awaited). */
export class StopWaiting extends Error {}

/**
 * Polls `probe` until it returns a value other than undefined (false counts as
 * "not yet" too), and returns that value. A probe that throws counts as "not yet";
 * the last error is in the timeout's message; a StopWaiting ends the wait with it.
 */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, options: WaitOptions | number = {}): Promise<T> {
  const { timeoutMs = 60_000, intervalMs = 100 } = typeof options === 'number' ? { timeoutMs: options } : options;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      if (error instanceof StopWaiting) throw error;
      last = error;
    }
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `; last error: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** The steps a long test went through, with their times, so that a test that runs out of time says where it was. */
export class Progress {
  private readonly started = Date.now();
  private readonly steps: string[] = [];

  step(what: string): void {
    this.steps.push(`${((Date.now() - this.started) / 1000).toFixed(1)} s: ${what}`);
  }

  toString(): string {
    return this.steps.join('\n');
  }
}

/**
 * Runs `body`, failing with what `explain` says (where it was, what it saw) when it has not ended within
 * `timeoutMs` (set it below the test's own timeout, whose failure says only that the time ran out) or when it
 * fails: the failure's message is followed by the explanation.
 */
export async function withDeadline<T>(timeoutMs: number, body: () => Promise<T>, explain: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not done within ${timeoutMs / 1000} s`)), timeoutMs);
  });
  try {
    return await Promise.race([body(), expired]);
  } catch (error) {
    throw new Error(`${(error as Error).message}\nso far:\n${explain()}`, { cause: error });
  } finally {
    clearTimeout(timer);
  }
}
