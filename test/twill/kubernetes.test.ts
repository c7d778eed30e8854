// The Twill scenarios on the Kubernetes runtime, against the real control
// plane of scripts/k8s-testenv (KUBECONFIG from the test environment). kwok
// simulates the containers, so what a program would see is checked on the
// objects: the command annotation on every pod and the downward-API volume
// that shows it to the program; the endpoints are the pods' IPs.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { createRunner } from '../../src/runtime/index.js';
import { twillScenarios } from './scenarios.js';

const STAGE = 'pod-container-running-failed.stage.kwok.x-k8s.io';

twillScenarios('Kubernetes (real control plane, kwok nodes)', async () => {
  if (!process.env.KUBECONFIG) {
    throw new Error('KUBECONFIG is not set: run the suite with scripts/test, or start the control plane with scripts/k8s-testenv up and export the KUBECONFIG it prints');
  }
  const kc = new KubeConfig();
  kc.loadFromFile(process.env.KUBECONFIG);
  const core = kc.makeApiClient(CoreV1Api);
  const namespace = `twill-${randomBytes(3).toString('hex')}`;
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  const runner = await createRunner({ runtime: 'kubernetes', kubeconfig: process.env.KUBECONFIG, namespace, resyncMs: 60_000 });
  const podsOf = async (runId: string) =>
    (await core.listNamespacedPod({ namespace, labelSelector: `weft.io/run-id=${runId}` })).items.filter((p) => !p.metadata?.deletionTimestamp && p.status?.phase === 'Running');
  return {
    runner,
    image: '127.0.0.1:5000/weft/probe:1',
    servicePort: 18080,
    live: false,
    usageMeasured: false,
    failBatch(runnable) {
      runnable.kubernetes = {
        podLabels: { [STAGE]: 'true' },
        podAnnotations: { [`${STAGE}/exit-code`]: '3', [`${STAGE}/reason`]: 'Error', [`${STAGE}/message`]: 'probe failing on purpose with code 3' },
      };
    },
    async checkCommandReceived(c, command, payload) {
      const pods = await podsOf(c.runId);
      assert.equal(pods.length, 2, 'both instances');
      for (const pod of pods) {
        const values = Object.entries(pod.metadata?.annotations ?? {})
          .filter(([k]) => k.startsWith('weft.io/command-'))
          .map(([, v]) => JSON.parse(v) as { command: string; payload?: string });
        assert.ok(values.some((v) => v.command === command && v.payload === payload), `pod ${pod.metadata?.name} carries the command annotation`);
        const volume = pod.spec?.volumes?.find((v) => v.downwardAPI?.items?.some((i) => i.fieldRef?.fieldPath === 'metadata.annotations'));
        assert.ok(volume, 'a downward-API volume exposes the annotations');
        const mount = pod.spec?.containers[0].volumeMounts?.find((m) => m.name === volume!.name);
        assert.equal(mount?.mountPath, '/etc/weft/podinfo');
        assert.ok(pod.spec?.containers[0].env?.some((e) => e.name === 'WEFT_COMMANDS_FILE' && e.value === '/etc/weft/podinfo/annotations'));
      }
    },
    async checkEndpoints(c, endpoints, instances) {
      const pods = await podsOf(c.runId);
      assert.equal(endpoints.length, instances);
      assert.deepEqual(endpoints.map((e) => e.host).sort(), pods.map((p) => p.status!.podIP!).sort(), 'the endpoints are the pods');
      assert.ok(endpoints.every((e) => e.port === 18080));
    },
    async close() {
      await runner.close();
      await core.deleteNamespace({ name: namespace }).catch(() => undefined);
    },
  };
});
