// Tests of the real Kubernetes control plane started by `scripts/k8s-testenv up`
// (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok), and of the
// kwok stage contract in docs/kubernetes-testenv.md that weft's runtime tests rely on.
// Needs KUBECONFIG (scripts/test sets it through scripts/test.d/50-k8s-up.sh).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { waitFor as waitUntil } from '../support/wait.js';

const run = promisify(execFile);
const testenvScript = fileURLToPath(new URL('../../../scripts/k8s-testenv', import.meta.url));
const STAGE = 'stage.kwok.x-k8s.io';
const FAILED = `pod-container-running-failed.${STAGE}`;
const CRASH = `pod-container-crash-loop.${STAGE}`;
const PULL = `pod-container-image-pull-failed.${STAGE}`;

let core: k8s.CoreV1Api;
let batch: k8s.BatchV1Api;
let apps: k8s.AppsV1Api;
const ns = `testenv-${randomBytes(4).toString('hex')}`;

/** Polls `probe` until it returns a value (not undefined); fails with the last error. */
const waitFor = <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 180_000): Promise<T> => waitUntil(what, probe, { timeoutMs, intervalMs: 250 });

async function podsOf(selector: string): Promise<k8s.V1Pod[]> {
  return (await core.listNamespacedPod({ namespace: ns, labelSelector: selector })).items;
}

function jobSpec(name: string, podLabels: Record<string, string> = {}, podAnnotations: Record<string, string> = {}): k8s.V1Job {
  return {
    metadata: { name },
    spec: {
      backoffLimit: 0,
      template: {
        metadata: { labels: { test: name, ...podLabels }, annotations: podAnnotations },
        spec: {
          restartPolicy: 'Never',
          containers: [{ name: 'main', image: 'example.invalid/app:1', resources: { requests: { cpu: '100m', memory: '64Mi' } } }],
        },
      },
    },
  };
}

function deploymentSpec(name: string, replicas: number, podLabels: Record<string, string> = {}, podAnnotations: Record<string, string> = {}): k8s.V1Deployment {
  return {
    metadata: { name },
    spec: {
      replicas,
      selector: { matchLabels: { test: name } },
      template: {
        metadata: { labels: { test: name, ...podLabels }, annotations: podAnnotations },
        spec: { containers: [{ name: 'main', image: 'example.invalid/svc:1' }] },
      },
    },
  };
}

function mainStatus(pod: k8s.V1Pod): k8s.V1ContainerStatus | undefined {
  return pod.status?.containerStatuses?.find((c) => c.name === 'main');
}

before(async () => {
  const path = process.env.KUBECONFIG;
  if (!path) {
    throw new Error('KUBECONFIG is not set: start the cluster with `eval "$(scripts/k8s-testenv up | tail -n1)"` or run scripts/test');
  }
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(path);
  core = kc.makeApiClient(k8s.CoreV1Api);
  batch = kc.makeApiClient(k8s.BatchV1Api);
  apps = kc.makeApiClient(k8s.AppsV1Api);
  await core.createNamespace({ body: { metadata: { name: ns } } });
  // The service-account controller creates `default` in every namespace; pods need it.
  await waitFor('the default service account', async () =>
    (await core.readNamespacedServiceAccount({ name: 'default', namespace: ns })).metadata?.name);
});

after(async () => {
  if (core) await core.deleteNamespace({ name: ns }).catch(() => undefined);
});

describe('k8s-testenv control plane', () => {
  test('the kwok nodes (3 by default) are Ready, untainted, with 32 cpu and 110 pods by default', async () => {
    // scripts/k8s-testenv's knobs; the defaults are what docs/kubernetes-testenv.md promises.
    const count = Number(process.env.WEFT_K8S_NODES ?? 3);
    const nodes = await waitFor('untainted Ready kwok nodes', async () => {
      const items = (await core.listNode({ labelSelector: 'type=kwok' })).items;
      const ok = items.filter(
        (n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') && !(n.spec?.taints?.length),
      );
      return ok.length === count ? items : undefined;
    });
    for (const n of nodes) {
      assert.equal(n.metadata?.annotations?.['kwok.x-k8s.io/node'], 'fake');
      assert.equal(n.status?.allocatable?.cpu, process.env.WEFT_K8S_NODE_CPU ?? '32');
      assert.equal(n.status?.allocatable?.pods, process.env.WEFT_K8S_NODE_PODS ?? '110');
    }
  });

  test('a Job pod is scheduled, runs, and the Job completes', async () => {
    await batch.createNamespacedJob({ namespace: ns, body: jobSpec('ok') });
    const job = await waitFor('job ok to complete', async () => {
      const j = await batch.readNamespacedJob({ name: 'ok', namespace: ns });
      return j.status?.conditions?.some((c) => c.type === 'Complete' && c.status === 'True') ? j : undefined;
    });
    assert.equal(job.status?.succeeded, 1);
    const [pod] = await podsOf('test=ok');
    assert.ok(pod, 'the job pod still exists');
    assert.match(pod.spec?.nodeName ?? '', /^kwok-node-\d$/, 'the scheduler bound the pod to a kwok node');
    assert.equal(pod.status?.phase, 'Succeeded');
    assert.equal(mainStatus(pod)?.state?.terminated?.exitCode, 0);
    assert.equal(mainStatus(pod)?.state?.terminated?.reason, 'Completed');
    assert.ok(pod.status?.podIP, 'kwok gave the pod an IP');
  });

  test('a Deployment of 3 replicas becomes available; its containers are running', async () => {
    await apps.createNamespacedDeployment({ namespace: ns, body: deploymentSpec('svc', 3) });
    await waitFor('deployment svc to have 3 available replicas', async () => {
      const d = await apps.readNamespacedDeployment({ name: 'svc', namespace: ns });
      return d.status?.availableReplicas === 3 ? d : undefined;
    });
    const pods = await podsOf('test=svc');
    assert.equal(pods.length, 3);
    for (const p of pods) {
      assert.equal(p.status?.phase, 'Running');
      assert.ok(mainStatus(p)?.state?.running?.startedAt, 'state.running.startedAt is set');
      assert.equal(mainStatus(p)?.ready, true);
      assert.ok(p.metadata?.ownerReferences?.some((o) => o.kind === 'ReplicaSet'), 'owned by the ReplicaSet');
    }
  });

  test('the failure stage fails the container with the given exit code, reason and message', async () => {
    await batch.createNamespacedJob({
      namespace: ns,
      body: jobSpec('fail', { [FAILED]: 'true' }, {
        [`${FAILED}/exit-code`]: '3',
        [`${FAILED}/reason`]: 'Error',
        [`${FAILED}/message`]: 'boom: the input file is missing',
      }),
    });
    const pod = await waitFor('the failing pod to fail', async () => {
      const [p] = await podsOf('test=fail');
      return p?.status?.phase === 'Failed' ? p : undefined;
    });
    const t = mainStatus(pod)?.state?.terminated;
    assert.equal(t?.exitCode, 3);
    assert.equal(t?.reason, 'Error');
    assert.equal(t?.message, 'boom: the input file is missing');
    await waitFor('job fail to be marked Failed', async () => {
      const j = await batch.readNamespacedJob({ name: 'fail', namespace: ns });
      return j.status?.conditions?.some((c) => c.type === 'Failed' && c.status === 'True') ? j : undefined;
    });
  });

  test('the failure stage can report OOMKilled with exit code 137', async () => {
    await batch.createNamespacedJob({
      namespace: ns,
      body: jobSpec('oom', { [FAILED]: 'true' }, { [`${FAILED}/exit-code`]: '137', [`${FAILED}/reason`]: 'OOMKilled' }),
    });
    const pod = await waitFor('the OOMKilled pod to fail', async () => {
      const [p] = await podsOf('test=oom');
      return p?.status?.phase === 'Failed' ? p : undefined;
    });
    assert.equal(mainStatus(pod)?.state?.terminated?.exitCode, 137);
    assert.equal(mainStatus(pod)?.state?.terminated?.reason, 'OOMKilled');
  });

  test('the image-pull stage leaves the pod Pending in ImagePullBackOff', async () => {
    await batch.createNamespacedJob({ namespace: ns, body: jobSpec('pull', { [PULL]: 'true' }) });
    const pod = await waitFor('ImagePullBackOff', async () => {
      const [p] = await podsOf('test=pull');
      return mainStatus(p ?? {})?.state?.waiting?.reason === 'ImagePullBackOff' ? p : undefined;
    });
    assert.equal(pod.status?.phase, 'Pending');
    assert.equal(mainStatus(pod)?.state?.running, undefined);
    assert.match(mainStatus(pod)?.state?.waiting?.message ?? '', /Back-off pulling image "example\.invalid\/app:1"/);
  });

  test('the crash-loop stage keeps a service pod in CrashLoopBackOff with the last exit code', async () => {
    await apps.createNamespacedDeployment({
      namespace: ns,
      body: deploymentSpec('crash', 1, { [CRASH]: 'true' }, { [`${CRASH}/exit-code`]: '2', [`${CRASH}/message`]: 'no config' }),
    });
    const pod = await waitFor('CrashLoopBackOff', async () => {
      const [p] = await podsOf('test=crash');
      return mainStatus(p ?? {})?.state?.waiting?.reason === 'CrashLoopBackOff' ? p : undefined;
    });
    const s = mainStatus(pod);
    assert.equal(s?.lastState?.terminated?.exitCode, 2);
    assert.equal(s?.lastState?.terminated?.message, 'no config');
    assert.equal(s?.restartCount, 1);
    assert.equal(s?.ready, false);
  });

  test('a pod asking for more CPU than any node has is Unschedulable with the scheduler message', async () => {
    await core.createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: 'huge', labels: { test: 'huge' } },
        spec: { containers: [{ name: 'main', image: 'example.invalid/app:1', resources: { requests: { cpu: '64' } } }] },
      },
    });
    const cond = await waitFor('PodScheduled=False', async () => {
      const p = await core.readNamespacedPod({ name: 'huge', namespace: ns });
      return p.status?.conditions?.find((c) => c.type === 'PodScheduled' && c.status === 'False');
    });
    assert.equal(cond.reason, 'Unschedulable');
    assert.match(cond.message ?? '', /Insufficient cpu/);
  });

  test('deleting a Job garbage-collects its pods through ownerReferences', async () => {
    await batch.createNamespacedJob({ namespace: ns, body: jobSpec('gc', {}, { [`pod-complete.${STAGE}/delay`]: '1h' }) });
    const [pod] = await waitFor('the gc job pod to run', async () => {
      const ps = await podsOf('test=gc');
      return ps.length === 1 && ps[0].status?.phase === 'Running' ? ps : undefined;
    });
    assert.ok(pod.metadata?.ownerReferences?.some((o) => o.kind === 'Job' && o.name === 'gc'));
    await batch.deleteNamespacedJob({ name: 'gc', namespace: ns, propagationPolicy: 'Background' });
    await waitFor('the garbage collector to delete the pod', async () => ((await podsOf('test=gc')).length === 0 ? true : undefined));
  });

  test('restarting kube-apiserver keeps the state, and controllers carry on afterwards', async () => {
    const before = await core.createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: 'survivor' }, data: { k: 'v' } },
    });
    const { stderr } = await run('bash', [testenvScript, 'restart-apiserver'], { timeout: 180_000 });
    assert.match(stderr, /kube-apiserver restarted/);
    const cm = await waitFor('the configmap after the restart', async () =>
      core.readNamespacedConfigMap({ name: 'survivor', namespace: ns }));
    assert.equal(cm.data?.k, 'v');
    assert.equal(cm.metadata?.uid, before.metadata?.uid);
    // The scheduler, controllers and kwok reconnect: a new Job still completes.
    await batch.createNamespacedJob({ namespace: ns, body: jobSpec('after-restart') });
    await waitFor('job after-restart to complete', async () => {
      const j = await batch.readNamespacedJob({ name: 'after-restart', namespace: ns });
      return j.status?.succeeded === 1 ? j : undefined;
    });
  });
});
