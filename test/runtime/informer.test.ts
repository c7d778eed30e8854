// The informer's resync against a loopback watch server: objects the live watch delivers while a
// resync's list is in flight are newer than that list and must survive it (found by the 10,000-run
// benchmark: runs created during a resync were reported KILLED).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig, type V1ConfigMap } from '@kubernetes/client-node';
import { Informer, type ListPage } from '../../src/kube-client/index.js';

const cm = (name: string, rv: string): V1ConfigMap => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'ns', uid: `uid-${name}`, resourceVersion: rv } });

test('a resync list does not delete or overwrite what the watch delivered while it was listing', { timeout: 30_000 }, async () => {
  let watchStream: ServerResponse | undefined;
  let port = 0;
  const after: Array<() => Promise<unknown>> = [];
  const watchOpened = new Promise<void>((resolve) => {
    const server = createServer((req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      watchStream = res;
      resolve();
    });
    server.listen(0, '127.0.0.1');
    after.push(() => new Promise((r) => server.close(() => r(undefined))));
    server.on('listening', () => (port = (server.address() as AddressInfo).port));
  });
  while (!port) await new Promise((r) => setTimeout(r, 5));

  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: 'u' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  let lists = 0;
  let releaseResyncList!: () => void;
  let resyncListStarted!: () => void;
  const resyncListing = new Promise<void>((r) => (resyncListStarted = r));
  const informer = new Informer<V1ConfigMap>({
    kubeConfig: kc,
    path: '/api/v1/namespaces/ns/configmaps',
    resyncMs: 200,
    list: async (): Promise<ListPage<V1ConfigMap>> => {
      lists++;
      if (lists === 1) return { items: [cm('a', '1')], metadata: { resourceVersion: '1' } };
      // The resync: its snapshot (rv 2) is taken before the watch delivers b's creation (rv 3) and a's update (rv 4).
      resyncListStarted();
      await new Promise<void>((r) => (releaseResyncList = r));
      return { items: [cm('a', '2')], metadata: { resourceVersion: '2' } };
    },
  });
  const events: string[] = [];
  informer.on((event, obj) => events.push(`${event} ${obj.metadata!.name} ${obj.metadata!.resourceVersion}`));
  try {
    await informer.start();
    await watchOpened;
    await resyncListing;
    watchStream!.write(`${JSON.stringify({ type: 'ADDED', object: cm('b', '3') })}\n`);
    watchStream!.write(`${JSON.stringify({ type: 'MODIFIED', object: cm('a', '4') })}\n`);
    const deadline = Date.now() + 10_000;
    while (!events.includes('update a 4')) {
      assert.ok(Date.now() < deadline, `watch events not delivered: ${events.join(', ')}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    releaseResyncList();
    while (lists < 3) {
      assert.ok(Date.now() < deadline + 10_000, 'the resync did not finish');
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(!events.some((e) => e.startsWith('delete')), `nothing was deleted: ${events.join(', ')}`);
    assert.deepEqual(
      informer
        .list()
        .map((o) => `${o.metadata!.name} ${o.metadata!.resourceVersion}`)
        .sort(),
      ['a 4', 'b 3'],
      'the store keeps what the watch delivered',
    );
  } finally {
    informer.stop();
    watchStream?.end();
    for (const f of after) await f();
  }
});
