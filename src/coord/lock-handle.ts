// The lock protocol shared by every backend: a one-shot campaign whose election is the
// lock, reported lost only if it steps down while held, and a timeout as LockTimeoutError.
import { LockTimeoutError, type LockHandle, type LockOptions } from './types.js';

/** What a backend's campaign offers the lock protocol. */
export interface LockCampaign {
  acquire(timeoutMs: number | undefined): Promise<number>;
  readonly isLeader: boolean;
}

export interface LockBackend<C extends LockCampaign> {
  /** Campaigns the backend stops when it closes. */
  active: Set<C>;
  /** Creates a one-shot campaign for the lock; `onStepDown` must be wired to its step-down callback. */
  create(onStepDown: (reason: string) => void): C;
  /** Stops a campaign; `released` is true for a holder's own release (not for a timed-out waiter). */
  stop(campaign: C, released: boolean): Promise<void>;
}

export async function acquireLock<C extends LockCampaign>(name: string, options: LockOptions, backend: LockBackend<C>): Promise<LockHandle> {
  let held = false;
  const campaign: C = backend.create((reason) => {
    if (!held) return;
    held = false;
    backend.active.delete(campaign);
    if (reason !== 'released') options.onLost?.(reason);
  });
  backend.active.add(campaign);
  let token: number;
  try {
    token = await campaign.acquire(options.timeoutMs);
  } catch {
    backend.active.delete(campaign);
    await backend.stop(campaign, false);
    throw new LockTimeoutError(name, options.timeoutMs ?? 0);
  }
  held = true;
  return {
    name,
    token,
    get held() { return held && campaign.isLeader; },
    async release() {
      backend.active.delete(campaign);
      await backend.stop(campaign, true);
      held = false;
    },
  };
}
