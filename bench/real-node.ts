// What the benchmarks on the test control plane's real node share: the repository's paths
// (they run compiled, from dist/bench) and the environment the test set-up exports.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The weft command as the compiled tree has it. */
export const weftMain = join(repo, 'dist', 'src', 'cli', 'main.js');

/** KUBECONFIG and WEFT_NODE_REGISTRY, or an error naming the script that starts the environment. */
export function realNodeEnvironment(script: string): { kubeconfig: string; registry: string } {
  const kubeconfig = process.env.KUBECONFIG;
  const registry = process.env.WEFT_NODE_REGISTRY;
  if (!kubeconfig || !registry) throw new Error(`KUBECONFIG and WEFT_NODE_REGISTRY must be set: run ${script}, which starts the test environment`);
  return { kubeconfig, registry };
}
