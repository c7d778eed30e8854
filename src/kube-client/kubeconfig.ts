// Loading a kubeconfig the way kubectl does, for every part of weft that talks
// to Kubernetes (the runtime, coordination, tests).
import { KubeConfig } from '@kubernetes/client-node';

export class KubeConfigError extends Error {
  override name = 'KubeConfigError';
}

export interface KubeConfigOptions {
  /** A kubeconfig file; else KUBECONFIG (a list), else ~/.kube/config, else in-cluster. */
  kubeconfig?: string;
  /** A context of that kubeconfig instead of its current one. */
  context?: string;
  /** Another API server URL for the current cluster (e.g. through a proxy). */
  server?: string;
}

export function loadKubeConfig(options: KubeConfigOptions = {}): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (options.kubeconfig) kc.loadFromFile(options.kubeconfig);
    else kc.loadFromDefault();
  } catch (error) {
    throw new KubeConfigError(
      `cannot load the kubeconfig${options.kubeconfig ? ` ${options.kubeconfig}` : ''}: ${(error as Error).message}; set KUBECONFIG or pass --kubeconfig <file>`,
    );
  }
  if (options.context) {
    if (!kc.getContextObject(options.context)) {
      throw new KubeConfigError(`no context "${options.context}" in the kubeconfig: it has ${kc.getContexts().map((c) => c.name).join(', ') || 'no contexts'}`);
    }
    kc.setCurrentContext(options.context);
  }
  if (!kc.getCurrentCluster()) {
    throw new KubeConfigError('no Kubernetes cluster configured: set KUBECONFIG, pass --kubeconfig <file>, or run inside a cluster');
  }
  if (!options.server) return kc;
  const current = kc.getCurrentContext();
  const clusterName = kc.getContextObject(current)!.cluster;
  const next = new KubeConfig();
  next.loadFromOptions({
    clusters: kc.clusters.map((c) => (c.name === clusterName ? { ...c, server: options.server! } : c)),
    users: kc.users,
    contexts: kc.contexts,
    currentContext: current,
  });
  return next;
}

/** The namespace a kubeconfig's current context names, else "default". */
export function contextNamespace(kc: KubeConfig): string {
  return kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default';
}
