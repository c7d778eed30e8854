// Coordination without ZooKeeper: Discovery, LeaderElector and Lock on memory,
// etcd or Kubernetes Leases. See docs/coordination.md.
import { createEtcdCoordination } from './etcd.js';
import { createMemoryCoordination, MemoryCluster, type MemoryCoordination } from './memory.js';
import { checkTimings, DEFAULT_TIMINGS, type Coordination, type LeaseTimings } from './types.js';

export * from './types.js';
export { MemoryCluster, type MemoryCoordination } from './memory.js';
export { runWhileLeader, type LeaderCommandEvent, type LeaderCommandOptions, type LeaderCommandResult } from './leader-command.js';

export type CoordinationOptions =
  | { backend: 'memory'; cluster?: MemoryCluster; timings?: Partial<LeaseTimings> }
  | { backend: 'etcd'; endpoints: string[]; prefix?: string; timings?: Partial<LeaseTimings> }
  | { backend: 'kubernetes'; namespace?: string; kubeconfig?: string; server?: string; timings?: Partial<LeaseTimings> };

export function resolveTimings(partial: Partial<LeaseTimings> | undefined): LeaseTimings {
  return checkTimings({ ...DEFAULT_TIMINGS, ...Object.fromEntries(Object.entries(partial ?? {}).filter(([, v]) => v !== undefined)) });
}

export function createCoordination(options: { backend: 'memory'; cluster?: MemoryCluster; timings?: Partial<LeaseTimings> }): Promise<MemoryCoordination>;
export function createCoordination(options: CoordinationOptions): Promise<Coordination>;
export async function createCoordination(options: CoordinationOptions): Promise<Coordination> {
  const timings = resolveTimings(options.timings);
  switch (options.backend) {
    case 'memory':
      return createMemoryCoordination({ cluster: options.cluster, timings });
    case 'etcd':
      return createEtcdCoordination({ endpoints: options.endpoints, prefix: options.prefix, timings });
    case 'kubernetes': {
      const { createKubeCoordination } = await import('./kube.js');
      return createKubeCoordination({ namespace: options.namespace, kubeconfig: options.kubeconfig, server: options.server, timings });
    }
    default:
      throw new Error(`unknown coordination backend "${(options as { backend: string }).backend}": use memory, etcd or kubernetes`);
  }
}
