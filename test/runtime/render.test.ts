import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAppSpecYaml } from '../../src/runtime/index.js';
import { adopt, renderRun, labels as L } from '../../src/runtime/kube/index.js';

const spec = parseAppSpecYaml(`
name: demo
startTimeout: 60s
serviceAccount: runner
imagePullSecrets: [regcred]
runnables:
  - name: main
    kind: batch
    image: registry.example/demo:1
    instances: 3
    resources: { cpu: 500m, memory: 256Mi }
    args: ["--input", "x"]
    env: { LEVEL: info }
  - name: web
    kind: service
    image: registry.example/web:1
    instances: 2
    ports: [{ name: http, port: 8080 }]
  - name: db
    kind: stateful
    image: registry.example/db:1
    storage: { size: 2Gi }
`);

test('batch -> Indexed Job, service -> Deployment + Service, stateful -> StatefulSet + headless Service + PVC template', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  const out = renderRun({ runId: 'demo-0123abcd', spec, files: [{ name: 'conf.txt', data: Buffer.from('hi') }] }, { namespace: 'ns1', now });
  assert.equal(out.root.metadata!.name, 'demo-0123abcd');
  assert.equal(out.root.metadata!.labels![L.LABEL_ROLE], 'root');
  assert.equal(out.root.metadata!.annotations![L.ANN_START_DEADLINE], '2026-01-01T00:01:00.000Z');
  assert.equal(JSON.parse(out.root.data![L.SPEC_KEY]).name, 'demo');
  assert.equal(Buffer.from(out.root.binaryData!['file._.conf.txt'], 'base64').toString(), 'hi');

  const [job] = out.jobs;
  assert.equal(job.metadata!.name, 'demo-0123abcd-main');
  assert.equal(job.spec!.backoffLimit, 0);
  assert.equal(job.spec!.completionMode, 'Indexed');
  assert.equal(job.spec!.parallelism, 3);
  assert.equal(job.spec!.completions, 3);
  const pod = job.spec!.template.spec!;
  assert.equal(pod.restartPolicy, 'Never');
  assert.equal(pod.serviceAccountName, 'runner');
  assert.deepEqual(pod.imagePullSecrets, [{ name: 'regcred' }]);
  const c = pod.containers[0];
  assert.equal(c.name, 'main');
  assert.deepEqual(c.args, ['--input', 'x']);
  assert.deepEqual(c.resources, { requests: { cpu: '500m', memory: '256Mi' }, limits: { memory: '256Mi' } });
  const env = Object.fromEntries(c.env!.map((e) => [e.name, e.value ?? e.valueFrom?.fieldRef?.fieldPath]));
  assert.equal(env.WEFT_RUN_ID, 'demo-0123abcd');
  assert.equal(env.WEFT_APP, 'demo');
  assert.equal(env.WEFT_RUNNABLE, 'main');
  assert.equal(env.WEFT_INSTANCE_COUNT, '3');
  assert.equal(env.WEFT_INSTANCE_ID, "metadata.annotations['batch.kubernetes.io/job-completion-index']");
  assert.equal(env.LEVEL, 'info');
  const labels = job.spec!.template.metadata!.labels!;
  assert.equal(labels[L.LABEL_MANAGED_BY], 'weft');
  assert.equal(labels[L.LABEL_RUN_ID], 'demo-0123abcd');
  assert.equal(labels[L.LABEL_RUNNABLE], 'main');
  assert.ok(pod.volumes!.some((v) => v.downwardAPI?.items?.some((i) => i.fieldRef?.fieldPath === 'metadata.annotations')));
  assert.ok(c.volumeMounts!.some((m) => m.mountPath === '/etc/weft/podinfo'));
  assert.ok(c.volumeMounts!.some((m) => m.mountPath === '/etc/weft/files'));

  const [dep] = out.deployments;
  assert.equal(dep.spec!.replicas, 2);
  assert.equal(dep.spec!.template.spec!.restartPolicy, 'Always');
  assert.deepEqual(dep.spec!.selector.matchLabels, { [L.LABEL_RUN_ID]: 'demo-0123abcd', [L.LABEL_RUNNABLE]: 'web' });

  const [sts] = out.statefulSets;
  assert.equal(sts.spec!.serviceName, 'demo-0123abcd-db');
  assert.equal(sts.spec!.volumeClaimTemplates![0].spec!.resources!.requests!.storage, '2Gi');
  const stsEnv = sts.spec!.template.spec!.containers[0].env!.find((e) => e.name === 'WEFT_INSTANCE_ID');
  assert.equal(stsEnv!.valueFrom!.fieldRef!.fieldPath, "metadata.labels['apps.kubernetes.io/pod-index']");

  assert.equal(out.services.length, 2);
  const web = out.services.find((s) => s.metadata!.name === 'demo-0123abcd-web')!;
  assert.deepEqual(web.spec!.ports, [{ name: 'http', port: 8080, targetPort: 8080, protocol: 'TCP' }]);
  const db = out.services.find((s) => s.metadata!.name === 'demo-0123abcd-db')!;
  assert.equal(db.spec!.clusterIP, 'None');

  adopt(out, { ...out.root, metadata: { ...out.root.metadata, uid: 'uid-1' } });
  for (const o of [...out.jobs, ...out.deployments, ...out.statefulSets, ...out.services]) {
    assert.deepEqual(o.metadata!.ownerReferences, [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'demo-0123abcd', uid: 'uid-1', controller: false, blockOwnerDeletion: true }]);
  }
});

test('too many file bytes are refused before anything is created', () => {
  assert.throws(
    () => renderRun({ runId: 'demo-1', spec, files: [{ name: 'big', data: Buffer.alloc(2 * 1024 * 1024) }] }, { namespace: 'x' }),
    /put large files into the image/,
  );
});

test('app-level kubernetes extras apply to every runnable; a runnable adds tolerations and overrides selectors; readiness becomes a probe', () => {
  const s = parseAppSpecYaml(`
name: placed
kubernetes:
  nodeSelector: { weft.io/real-node: "true", zone: a }
  tolerations: [{ key: weft.io/real-node, operator: Exists, effect: NoSchedule }]
  podLabels: { team: x }
runnables:
  - name: web
    kind: service
    image: r/web:1
    ports: [{ name: http, port: 8080 }]
    readiness: { port: http, path: /health, period: 3s }
    kubernetes:
      nodeSelector: { zone: b }
      tolerations: [{ key: gpu, operator: Equal, value: "yes", effect: NoExecute }]
  - name: job
    kind: batch
    image: r/job:1
`);
  const out = renderRun({ runId: 'placed-1', spec: s, files: [] }, { namespace: 'ns' });
  const web = out.deployments[0].spec!.template.spec!;
  assert.deepEqual(web.nodeSelector, { 'weft.io/real-node': 'true', zone: 'b' });
  assert.deepEqual(web.tolerations, [
    { key: 'weft.io/real-node', operator: 'Exists', effect: 'NoSchedule' },
    { key: 'gpu', operator: 'Equal', value: 'yes', effect: 'NoExecute' },
  ]);
  assert.deepEqual(web.containers[0].readinessProbe, { httpGet: { port: 'http', path: '/health' }, periodSeconds: 3, initialDelaySeconds: 0, failureThreshold: 3, timeoutSeconds: 1 });
  assert.equal(out.deployments[0].spec!.template.metadata!.labels!.team, 'x');
  const job = out.jobs[0].spec!.template.spec!;
  assert.deepEqual(job.nodeSelector, { 'weft.io/real-node': 'true', zone: 'a' });
  assert.deepEqual(job.tolerations, [{ key: 'weft.io/real-node', operator: 'Exists', effect: 'NoSchedule' }]);
  assert.equal(job.containers[0].readinessProbe, undefined);
  assert.throws(() => parseAppSpecYaml(`
name: bad
runnables:
  - { name: web, kind: service, image: r/w:1, ports: [{ name: http, port: 80 }], readiness: { port: grpc } }
`), /readiness.port "grpc" is not one of this runnable's ports/);
});
