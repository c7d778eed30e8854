// The one Kubernetes client module: kubeconfig loading and the shared informer,
// used by the Kubernetes runtime (src/runtime/kube) and coordination (src/coord).
export { contextNamespace, KubeConfigError, loadKubeConfig, type KubeConfigOptions } from './kubeconfig.js';
export { Informer, type InformerEvent, type InformerHandler, type InformerOptions, type ListPage } from './informer.js';
