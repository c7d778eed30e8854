// LeaderElector and Locks for backends that store one lease record per name
// (Kubernetes Lease objects, the memory store).
import { randomUUID } from 'node:crypto';
import { LeaseCampaign, type LeaseRecordStore } from './lease-campaign.js';
import { acquireLock } from './lock-handle.js';
import {
  checkName,
  type LeaderCallbacks,
  type LeaderElector,
  type LeaderHandle,
  type LeaseTimings,
  type LockHandle,
  type LockOptions,
  type Locks,
} from './types.js';

export class CampaignRegistry {
  readonly active = new Set<LeaseCampaign>();
  async closeAll(): Promise<void> {
    await Promise.all([...this.active].map((c) => c.stop(true, 'coordination closed')));
    this.active.clear();
  }
  abandonAll(): void {
    for (const c of this.active) c.abandon();
    this.active.clear();
  }
}

export function leaseElector(store: LeaseRecordStore, timings: LeaseTimings, registry: CampaignRegistry, prefix = 'weft-leader-'): LeaderElector {
  return {
    async electLeader(name: string, candidateId: string, callbacks: LeaderCallbacks = {}): Promise<LeaderHandle> {
      checkName('election name', name);
      if (!candidateId) throw new Error('candidateId must not be empty: use a stable, unique id such as the pod name');
      const campaign = new LeaseCampaign({ store, name: prefix + name, identity: candidateId, timings, callbacks });
      registry.active.add(campaign);
      campaign.start();
      return {
        name,
        candidateId,
        get isLeader() { return campaign.isLeader; },
        get fencingToken() { return campaign.fencingToken; },
        async resign() {
          registry.active.delete(campaign);
          await campaign.stop(true);
        },
      };
    },
  };
}

export function leaseLocks(store: LeaseRecordStore, timings: LeaseTimings, registry: CampaignRegistry, prefix = 'weft-lock-'): Locks {
  return {
    async acquire(name: string, options: LockOptions = {}): Promise<LockHandle> {
      checkName('lock name', name);
      return acquireLock(name, options, {
        active: registry.active,
        create: (onStepDown) =>
          new LeaseCampaign({ store, name: prefix + name, identity: options.owner ?? randomUUID(), timings, once: true, callbacks: { onStepDown } }),
        stop: (campaign, released) => (released ? campaign.stop(true, 'released') : campaign.stop(false)),
      });
    },
  };
}
