// The in-container contract (docs/contract.md) is the same on both runtimes:
// the Kubernetes pod template and the local instance environment carry the
// same WEFT_* names with the same shared values, the same labels and
// annotations, and commands are encoded once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAppSpecYaml } from '../../src/runtime/index.js';
import { commandAnnotation, ENV, formatAnnotations, instanceAnnotations, instanceEnvironment, parseAnnotations, runLabels, type CommandMessage } from '../../src/runtime/contract/index.js';
import { renderRun } from '../../src/runtime/kube/index.js';

const spec = parseAppSpecYaml(`
name: demo
runnables:
  - { name: web, kind: service, image: r/web:1, instances: 2, ports: [{ name: admin-http, port: 8080 }], env: { WEFT_APP: mine } }
`);
const rendered = renderRun({ runId: 'demo-1', spec, files: [] }, { namespace: 'ns', now: 0 });
const pod = rendered.deployments[0].spec!.template;
const kubeEnv = pod.spec!.containers[0].env!;
const localEnv = instanceEnvironment(
  { runtime: 'local', runId: 'demo-1', app: 'demo', runnable: 'web', instanceCount: 2, commandsFile: '/etc/weft/podinfo/annotations', filesDir: '/etc/weft/files' },
  { instanceId: '0', podName: 'weft-demo-1-web-0', namespace: '/state/runs', ports: { 'admin-http': 8080 } },
);

test('both runtimes set the same WEFT_* variables', () => {
  const weftNames = (names: string[]) => [...new Set(names.filter((n) => n.startsWith('WEFT_')))].sort();
  const expected = [...Object.values(ENV), 'WEFT_PORT_ADMIN_HTTP'].sort();
  assert.deepEqual(weftNames(kubeEnv.map((e) => e.name)), expected);
  assert.deepEqual(weftNames(Object.keys(localEnv)), expected);
});

test('values known before the pod exists are equal; per-pod ones come from the downward API', () => {
  const kube = new Map(kubeEnv.filter((e) => e.value !== undefined).map((e) => [e.name, e.value]));
  for (const name of [ENV.runId, ENV.runnable, ENV.instanceCount, ENV.commandsFile, ENV.filesDir, 'WEFT_PORT_ADMIN_HTTP']) {
    assert.equal(kube.get(name), localEnv[name], name);
  }
  assert.equal(localEnv[ENV.instanceCount], '2', 'the count the spec asks for');
  assert.equal(kube.get(ENV.runtime), 'kubernetes');
  assert.equal(localEnv[ENV.runtime], 'local');
  const fieldOf = (name: string) => kubeEnv.find((e) => e.name === name)?.valueFrom?.fieldRef?.fieldPath;
  assert.equal(fieldOf(ENV.podName), 'metadata.name');
  assert.equal(fieldOf(ENV.namespace), 'metadata.namespace');
  assert.equal(fieldOf(ENV.instanceId), 'metadata.name', "a Deployment's instance id is its pod's name");
});

test("the spec's env comes after weft's (it wins on Kubernetes, where the last definition counts)", () => {
  const names = kubeEnv.map((e) => e.name);
  assert.ok(names.lastIndexOf('WEFT_APP') > names.indexOf('WEFT_APP'));
  assert.equal(kubeEnv[names.lastIndexOf('WEFT_APP')].value, 'mine');
});

test('instances carry the contract labels and annotations', () => {
  for (const [k, v] of Object.entries(runLabels('demo-1', 'demo', 'web'))) assert.equal(pod.metadata!.labels![k], v, k);
  assert.deepEqual(instanceAnnotations('service'), { 'weft.io/kind': 'service' });
  for (const [k, v] of Object.entries(instanceAnnotations('service'))) assert.equal(pod.metadata!.annotations![k], v, k);
});

test('a command is one annotation whose ids sort by time, readable back from the annotations file', () => {
  const at = Date.parse('2026-01-01T00:00:00Z');
  const first = commandAnnotation('reload', 'x', at);
  const second = commandAnnotation('reload', undefined, at + 1_000);
  assert.match(first.key, /^weft\.io\/command-/);
  assert.ok(first.key < second.key, 'a later command sorts after an earlier one');
  const message = JSON.parse(parseAnnotations(formatAnnotations({ [first.key]: first.value, 'weft.io/kind': 'service' }))[first.key]) as CommandMessage;
  assert.deepEqual(message, { command: 'reload', payload: 'x', sentAt: new Date(at).toISOString() });
});
