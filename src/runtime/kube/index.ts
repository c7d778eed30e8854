// The Kubernetes backend: Job / Deployment / StatefulSet + Service per run,
// tracked by shared informers. See docs/runtime-kubernetes.md.
import type { KubernetesRuntimeOptions, Runtime } from '../api.js';
import { createKubeRuntime } from './runtime.js';

export { KubeRuntime, KubeError, createKubeRuntime, loadKubeConfig, kubeImage, apiMessage } from './runtime.js';
export { renderRun, adopt, workloadName, runLabels } from './render.js';
export * as labels from './render.js';
export { deriveRun, podInstance } from './derive.js';
export { Informer } from '../../kube-client/index.js';
export { Tracker } from './tracker.js';

export async function createRuntime(options: KubernetesRuntimeOptions): Promise<Runtime> {
  return createKubeRuntime(options);
}
