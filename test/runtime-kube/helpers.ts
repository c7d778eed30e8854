// Shared helpers for the tests against the real control plane (scripts/k8s-testenv up).
import { randomBytes } from 'node:crypto';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { createKubeRuntime, type KubeRuntime } from '../../src/runtime/kube/index.js';
import type { RunStatus } from '../../src/runtime/index.js';

export function requireKubeconfig(): string {
  const file = process.env.KUBECONFIG;
  if (!file) {
    throw new Error('KUBECONFIG is not set: start the test control plane with `eval "$(scripts/k8s-testenv up | tail -1)"` (scripts/test does it), then run these tests');
  }
  return file;
}

/** A fresh namespace for one test file; `drop()` deletes it (and everything in it). */
export async function testNamespace(prefix: string): Promise<{ name: string; drop: () => Promise<void> }> {
  requireKubeconfig();
  const kc = new KubeConfig();
  kc.loadFromDefault();
  const core = kc.makeApiClient(CoreV1Api);
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  try {
    await core.createNamespace({ body: { metadata: { name, labels: { 'weft.io/test': 'runtime-kube' } } } });
  } catch (error) {
    throw new Error(`cannot create namespace ${name} on the test cluster (${kc.getCurrentCluster()?.server}): ${(error as Error).message}`);
  }
  return {
    name,
    drop: async () => {
      await core.deleteNamespace({ name, propagationPolicy: 'Background' }).catch(() => undefined);
    },
  };
}

export function runtimeFor(namespace: string, resyncMs = 30_000): Promise<KubeRuntime> {
  requireKubeconfig();
  return createKubeRuntime({ runtime: 'kubernetes', namespace, resyncMs });
}

/** Waits until the run's status satisfies `pred`; fails with the last status seen. */
export function waitForStatus(runtime: KubeRuntime, runId: string, pred: (s: RunStatus) => boolean, timeoutMs = 60_000, what = 'condition'): Promise<RunStatus> {
  return new Promise((resolve, reject) => {
    let last: RunStatus | undefined;
    const check = (s: RunStatus | undefined) => {
      if (!s || s.runId !== runId) return;
      last = s;
      if (pred(s)) {
        clearTimeout(timer);
        off();
        resolve(s);
      }
    };
    const timer = setTimeout(() => {
      off();
      reject(new Error(`run ${runId}: ${what} not reached within ${timeoutMs} ms; last status: ${JSON.stringify(last)}`));
    }, timeoutMs);
    const off = runtime.watch(check);
    runtime.status(runId).then(check, reject);
  });
}

export const KWOK = {
  failed: 'pod-container-running-failed.stage.kwok.x-k8s.io',
  crashLoop: 'pod-container-crash-loop.stage.kwok.x-k8s.io',
  imagePull: 'pod-container-image-pull-failed.stage.kwok.x-k8s.io',
  readyDelay: 'pod-ready.stage.kwok.x-k8s.io/delay',
  completeDelay: 'pod-complete.stage.kwok.x-k8s.io/delay',
};
