// The provisioner SPI, modelled on CDAP's: create the cluster (or find it), poll its
// status with a polling strategy, run idempotent initialize hooks once it is up (safe to
// run again), delete. What was asked is kept in the journal with the steps.
import type { KubeConfig } from '@kubernetes/client-node';

export interface TenantSpec {
  /** The tenant's namespace name. */
  name: string;
  /** ResourceQuota hard limits (Kubernetes quantities). */
  quota?: { pods?: number; cpu?: string; memory?: string };
  /** LimitRange defaults for containers that set none. */
  defaults?: { cpu?: string; memory?: string };
}

export interface RegistryHookConfig {
  /** weft's own image (`weft self-image`), pullable by the nodes. */
  image: string;
  /** A fixed ClusterIP for the registry Service, known before the pod exists (nodes' pull config names it). */
  clusterIP?: string;
  /** A StorageClass for the registry's volume claim; without one the data lives in an emptyDir. */
  storageClass?: string;
  storageSize?: string;
  /** Where the registry pod may run (e.g. the nodes that pull from it, or the test environment's real node). */
  nodeSelector?: Record<string, string>;
  tolerations?: Array<{ key: string; operator?: 'Exists' | 'Equal'; value?: string; effect?: string }>;
}

export interface ClusterConfig {
  provisioner: ProvisionerName;
  kubeconfig?: string;
  context?: string;
  /** testenv: the environment's state dir (recorded so that status and deprovision find the same one). */
  testenvState?: string;
  /** weft's own ServiceAccount and roles (namespace weft-system). */
  rbac: boolean;
  tenants: TenantSpec[];
  registry?: RegistryHookConfig;
}

export type ProvisionerName = 'existing' | 'testenv';

export interface ClusterHealth {
  state: 'READY' | 'NOT_READY' | 'ABSENT';
  message: string;
  /** The API server's version when it answered. */
  version?: string;
}

/** How status is polled while waiting: first interval, growth factor, cap, total timeout (ms). */
export interface PollingStrategy {
  intervalMs: number;
  factor: number;
  maxIntervalMs: number;
  timeoutMs: number;
}

export const DEFAULT_POLLING: PollingStrategy = { intervalMs: 500, factor: 1.5, maxIntervalMs: 5_000, timeoutMs: 180_000 };

export interface Provisioner {
  readonly name: ProvisionerName;
  /** Brings the cluster up (testenv) or checks that it answers (existing); returns its kubeconfig. */
  create(config: ClusterConfig, log: (line: string) => void): Promise<KubeConfig>;
  /** The cluster's kubeconfig without creating anything. */
  kubeConfig(config: ClusterConfig): KubeConfig;
  status(config: ClusterConfig): Promise<ClusterHealth>;
  /** Lets the nodes pull over plain HTTP from an in-cluster registry at host:port; returns what was done. */
  configureNodePull(config: ClusterConfig, address: string): Promise<string>;
  /** Removes what configureNodePull wrote. */
  removeNodePull(config: ClusterConfig, address: string): Promise<void>;
  /** Deletes the cluster itself (testenv: stops it; existing: nothing, it is not weft's). */
  delete(config: ClusterConfig, log: (line: string) => void): Promise<void>;
}
