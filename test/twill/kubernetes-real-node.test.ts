// The Twill scenarios on the Kubernetes runtime with a real node (kubelet + containerd + runc):
// the probe image is pushed to the weft registry the node pulls from, every pod is placed on the
// real node, and what the program saw and did is checked in its real output.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { createRunner } from '../../src/runtime/index.js';
import { nodeRegistry, onRealNode, pushToNode } from '../support/real-node.js';
import { buildProbeImage, weftMain } from './fixtures/probe-image.js';
import { readLine, waitForLogs } from './local-target.js';
import { twillScenarios } from './scenarios.js';

twillScenarios('Kubernetes (real control plane, real node)', async () => {
  nodeRegistry();
  const probe = await buildProbeImage();
  const image = await pushToNode(weftMain, probe.reference, `weft/probe:${randomBytes(4).toString('hex')}`);
  await probe.remove();
  const kc = new KubeConfig();
  kc.loadFromFile(process.env.KUBECONFIG!);
  const core = kc.makeApiClient(CoreV1Api);
  const namespace = `twill-real-${randomBytes(3).toString('hex')}`;
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  const runner = await createRunner({ runtime: 'kubernetes', kubeconfig: process.env.KUBECONFIG, namespace, resyncMs: 60_000 });
  return {
    runner,
    image,
    servicePort: 18080,
    live: true,
    // The test environment has no metrics API, and the API server refuses to proxy to a kubelet
    // on loopback: the report must say so (checked in the scenario).
    usageMeasured: false,
    appKubernetes: onRealNode,
    failBatch(runnable) {
      runnable.args = ['fail', '3'];
    },
    async checkCommandReceived(c, command, payload) {
      const status = (await runner.runtime.status(c.runId))!;
      const ids = status.runnables[0].instances.map((i) => i.id);
      await waitForLogs(
        c,
        `command ${command} in every instance`,
        (lines) => ids.every((id) => lines.some((l) => l.startsWith(`[web/${id}] command received: weft.io/command-`) && l.includes(`\\"command\\":\\"${command}\\"`) && l.includes(payload))),
        60_000,
      );
    },
    async checkEndpoints(c, endpoints, instances) {
      const status = (await runner.runtime.status(c.runId))!;
      assert.equal(endpoints.length, instances);
      // Pod addresses are inside the node's pod network namespaces; the host reaches them over the bridge.
      const answers = await Promise.all(endpoints.map((e) => readLine(e.host, e.port)));
      assert.deepEqual(answers.sort(), status.runnables[0].instances.map((i) => `instance ${i.id}`).sort());
    },
    async close() {
      await runner.close();
      await core.deleteNamespace({ name: namespace }).catch(() => undefined);
    },
  };
});
