// The coordination scenarios against a REAL Kubernetes control plane
// (scripts/k8s-testenv, KUBECONFIG from scripts/test.d/50-k8s-up.sh), with
// candidates as real processes and coordination.k8s.io/v1 Leases.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { CoordinationV1Api, CoreV1Api } from '@kubernetes/client-node';
import { createCoordination, type LeaseTimings } from '../../src/coord/index.js';
import { loadKubeConfig } from '../../src/kube-client/index.js';
import { waitFor } from '../support/wait.js';
import { requireEnv } from './harness.js';
import { discovery, failover, locks, partition, uniq, type BackendUnderTest } from './scenarios.js';

// Short timings for tests (Lease durations are whole seconds).
const timings: LeaseTimings = { leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 500 };
// Every run gets its own namespace, deleted at the end (with every Lease and ConfigMap in it).
const namespace = uniq('weft-coord-test');

before(async () => {
  const kubeconfig = process.env.KUBECONFIG;
  if (!kubeconfig) return; // each test fails with the reason
  await loadKubeConfig({ kubeconfig }).makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
});

after(async () => {
  const kubeconfig = process.env.KUBECONFIG;
  if (!kubeconfig) return;
  await loadKubeConfig({ kubeconfig }).makeApiClient(CoreV1Api).deleteNamespace({ name: namespace }).catch(() => undefined);
});

function backend(): BackendUnderTest {
  const kubeconfig = requireEnv('KUBECONFIG', 'run the tests with scripts/test, or start the control plane with scripts/k8s-testenv up and export the KUBECONFIG it prints');
  const server = new URL(loadKubeConfig({ kubeconfig }).getCurrentCluster()!.server);
  return {
    target: { host: server.hostname, port: Number(server.port || 443) },
    timings,
    options: (proxyPort) => ({ backend: 'kubernetes', kubeconfig, namespace, ...(proxyPort ? { server: `https://${server.hostname}:${proxyPort}` } : {}), timings }),
  };
}

test('kubernetes: three candidates, the leader SIGKILLed twice: another leads, never two at once', async (t) => {
  const r = await failover(backend(), 2, (m) => t.diagnostic(m));
  assert.equal(r.failoversMs.length, 2);
  assert.ok(r.writers >= 3, `three different leaders wrote to the fenced log (saw ${r.writers})`);
  assert.deepEqual(r.problems, []);
});

test('kubernetes: a partitioned leader steps down before another leads', async (t) => {
  await partition(backend(), (m) => t.diagnostic(m));
});

test('kubernetes: discovery sees instances come and go', async (t) => {
  await discovery(backend(), (m) => t.diagnostic(m));
});

test('kubernetes: lock mutual exclusion with increasing fencing tokens', async () => {
  await locks(backend());
});

test('kubernetes: the election Lease looks like client-go\'s', async () => {
  const b = backend();
  const kubeconfig = requireEnv('KUBECONFIG', 'see above');
  const coord = await createCoordination(b.options());
  const name = uniq('shape');
  try {
    let token = -1;
    const h = await coord.elector.electLeader(name, 'pod-a', { onElected: (t) => (token = t) });
    await waitFor('the only candidate to lead', () => h.isLeader, 30_000);
    const api = loadKubeConfig({ kubeconfig }).makeApiClient(CoordinationV1Api);
    const lease = await api.readNamespacedLease({ name: `weft-leader-${name}`, namespace });
    assert.equal(lease.spec?.holderIdentity, 'pod-a');
    assert.equal(lease.spec?.leaseDurationSeconds, 3);
    assert.ok(lease.spec?.acquireTime && lease.spec?.renewTime, 'acquireTime and renewTime are set');
    assert.equal(lease.spec?.leaseTransitions, token);
    assert.equal(h.fencingToken, token);
    await h.resign();
    const released = await api.readNamespacedLease({ name: `weft-leader-${name}`, namespace });
    assert.equal(released.spec?.holderIdentity ?? '', '', 'resign releases the lease (empty holder, as client-go ReleaseOnCancel)');
  } finally {
    await coord.close();
  }
});

test('kubernetes: a missing kubeconfig fails clearly', async () => {
  await assert.rejects(createCoordination({ backend: 'kubernetes', kubeconfig: '/nonexistent/kubeconfig' }), /cannot load the kubeconfig/);
});
