// The local backend: the same app specs and images as the Kubernetes runtime,
// run on this machine with runc (or as host processes where runc cannot run).
// See docs/twill-on-kubernetes.md.
import type { LocalRuntimeOptions, Runtime } from '../api.js';
import { LocalRuntime, type LocalOptions } from './runtime.js';

export { LocalRuntime, LocalRuntimeError, defaultStateDir, formatAnnotations, parseAnnotations, portEnvName, type LocalMode, type LocalNetwork, type LocalOptions } from './runtime.js';
export { instanceVerdict, runObservation, type InstanceFacts, type InstanceVerdict, type ObservedInstance } from './observe.js';
export type { InstanceRecord, RunnableRecord, RunRecord } from './records.js';
export { ImageError, ImageStore, normaliseImageRef, type UnpackedImage } from './images.js';
export { applyLayer, applyLayerFile, entryComponents, makeDirectoryInRoot, resolveInRoot, UnpackError, type UnpackStats } from './unpack.js';
export { defaultSeccomp } from './seccomp.js';
export { resolveImageUser, ImageUserError, type ImageUser } from './image-user.js';
export { runcConfig, hostProcess, processArgs, memoryBytes, cpuMillicores, PODINFO_PATH, FILES_PATH, MASKED_PATHS, READONLY_PATHS, CONTAINER_CAPABILITIES } from './bundle.js';

/** The factory src/runtime/index.ts imports for `createRunner({ runtime: 'local' })`. */
export async function createRuntime(options: LocalRuntimeOptions): Promise<Runtime> {
  return new LocalRuntime(options);
}

/** Same, typed as the local runtime (for its extras: mode, remove, stateDir). */
export async function createLocalRuntime(options: Omit<LocalOptions, 'runtime'> = {}): Promise<LocalRuntime> {
  return new LocalRuntime({ runtime: 'local', ...options });
}
