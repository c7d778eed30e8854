// The real node of the test environment (scripts/k8s-testenv up --real-node): how a test reaches
// it, and the registry it pulls from. scripts/test starts both and exports WEFT_NODE_REGISTRY.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { AppSpecInput } from '../../src/runtime/index.js';

const execFileAsync = promisify(execFile);

/** App-level Kubernetes extras that put every pod on the real node (label and taint weft.io/real-node). */
export const onRealNode: NonNullable<AppSpecInput['kubernetes']> = {
  nodeSelector: { 'weft.io/real-node': 'true' },
  tolerations: [{ key: 'weft.io/real-node', operator: 'Exists', effect: 'NoSchedule' }],
};

/** host:port of the weft registry the real node pulls from (plain HTTP on loopback). */
export function nodeRegistry(): string {
  const registry = process.env.WEFT_NODE_REGISTRY;
  if (!process.env.KUBECONFIG || !registry) {
    throw new Error('the real node is not up: run the suite with scripts/test, or start it with WEFT_NODE_REGISTRIES=127.0.0.1:<port> scripts/k8s-testenv up --real-node, serve a weft registry on that port, and export KUBECONFIG and WEFT_NODE_REGISTRY=127.0.0.1:<port>');
  }
  return registry;
}

/** Pushes an image (any transport weft copies from) to the node's registry; returns the pullable reference. */
export async function pushToNode(weftMain: string, source: string, repoAndTag: string): Promise<string> {
  const target = `${nodeRegistry()}/${repoAndTag}`;
  try {
    await execFileAsync(process.execPath, [weftMain, 'copy', source, `docker://${target}`, '--json'], { maxBuffer: 16 << 20 });
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new Error(`weft copy ${source} docker://${target} failed: ${e.message}\n${e.stderr ?? ''}`);
  }
  return target;
}
