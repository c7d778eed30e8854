import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  createRunIdGenerator,
  isValidRunId,
  newRunId,
  parseAppSpec,
  RUN_ID_MAX_LENGTH,
  RunIdTakenError,
  runIdTime,
} from '../../src/runtime/index.js';
import { renderRun } from '../../src/runtime/kube/render.js';

const BASE32 = '[0-9abcdefghjkmnpqrstvwxyz]';
const DNS_1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

test('a run id is the app name, 9 time digits and 8 random digits in lower-case base32', () => {
  const id = newRunId('wordcount');
  assert.match(id, new RegExp(`^wordcount-${BASE32}{17}$`));
  assert.ok(isValidRunId(id));
  const made = runIdTime(id)!.getTime();
  assert.ok(Math.abs(made - Date.now()) < 60_000, `the time part decodes to now: ${new Date(made).toISOString()}`);
});

test('ids of any app name are DNS-1035 labels of at most 31 characters', () => {
  for (const app of ['a', 'x'.repeat(40), 'abcdefghijkl-mnop', 'abcdefghijkl--', 'Big_App.Name', '9lives', '---', '', 'ünïcode']) {
    const id = newRunId(app);
    assert.ok(id.length <= RUN_ID_MAX_LENGTH, `${id} (${id.length} chars)`);
    assert.match(id, DNS_1035_LABEL, `${JSON.stringify(app)} -> ${id}`);
    assert.ok(isValidRunId(id), id);
    assert.ok(!id.includes('--'), `no doubled dash in ${id}`);
  }
  assert.match(newRunId('abcdefghijkl-mnop'), new RegExp(`^abcdefghijkl-${BASE32}{17}$`), 'a cut that ends on "-" drops it');
  assert.match(newRunId('9lives'), /^lives-/);
  assert.match(newRunId('---'), /^run-/);
  for (const bad of ['', 'A-1', '1abc', 'abc-', 'a'.repeat(32), 'a_b']) assert.equal(isValidRunId(bad), false, bad);
});

test('every object name and label derived from the longest id and runnable names is valid Kubernetes', () => {
  const longRunnable = (c: string) => c.repeat(20);
  const spec = parseAppSpec({
    name: 'a'.repeat(40),
    runnables: [
      { name: longRunnable('b'), kind: 'batch', image: 'x/y:1', instances: 3 },
      { name: longRunnable('s'), kind: 'service', image: 'x/y:1', ports: [{ name: 'http', port: 80 }] },
      { name: longRunnable('t'), kind: 'stateful', image: 'x/y:1', storage: { size: '1Gi', mountPath: '/data' } },
    ],
  });
  const runId = newRunId(spec.name);
  const run = renderRun({ runId, spec, files: [] }, { namespace: 'ns' });
  const objects = [run.root, ...run.jobs, ...run.deployments, ...run.statefulSets, ...run.services];
  for (const obj of objects) {
    const name = obj.metadata!.name!;
    assert.match(name, DNS_1035_LABEL, `${obj.kind} ${name}`);
    assert.ok(name.length <= 63, `${obj.kind} ${name} is ${name.length} chars`);
    for (const [key, value] of Object.entries(obj.metadata!.labels ?? {})) assert.ok(value.length <= 63, `label ${key}=${value}`);
  }
  for (const sts of run.statefulSets) {
    // The StatefulSet controller labels pods `controller-revision-hash: <name>-<hash, up to 10 chars>`.
    assert.ok(`${sts.metadata!.name}-${'h'.repeat(10)}`.length <= 63, `StatefulSet ${sts.metadata!.name} leaves room for the revision hash label`);
    assert.ok(`${sts.metadata!.name}-99999`.length <= 63, 'pod names (and hostnames) <name>-<ordinal> stay DNS labels');
  }
  for (const job of run.jobs) assert.ok(`${job.metadata!.name}-99999`.length <= 63, 'indexed Job pod hostnames <name>-<index> stay DNS labels');
});

test('ids sort by creation time and the time decodes back', () => {
  const times = [0, 1, 31, 32, 1_764_000_000_000, 1_764_000_000_001, 32 ** 9 - 1];
  let clock = 0;
  const next = createRunIdGenerator({ now: () => clock, randomBytes: () => new Uint8Array(5).fill(0xff) });
  const ids = times.map((t) => {
    clock = t;
    return next('app');
  });
  assert.deepEqual([...ids].sort(), ids, 'lexicographic order is time order');
  assert.deepEqual(ids.map((id) => runIdTime(id)!.getTime()), times);
  assert.equal(ids[0], 'app-000000000zzzzzzzz');
  assert.equal(ids[ids.length - 1], 'app-zzzzzzzzzzzzzzzzz');
  clock = 32 ** 9;
  assert.throws(() => next('app'), /clock out of range/);
  assert.equal(runIdTime('app-0f3a9c21'), undefined, 'an old-style id has no time part');
});

test('the random source is injectable: the same clock and bytes repeat an id, other bytes do not', () => {
  const bytes = [Uint8Array.of(1, 2, 3, 4, 5), Uint8Array.of(1, 2, 3, 4, 5), Uint8Array.of(1, 2, 3, 4, 6)];
  const next = createRunIdGenerator({ now: () => 1_764_000_000_000, randomBytes: () => bytes.shift()! });
  const [a, b, c] = [next('app'), next('app'), next('app')];
  assert.equal(a, b);
  assert.notEqual(b, c);
  assert.throws(() => createRunIdGenerator({ randomBytes: () => new Uint8Array(4) })('app'), /gave 4 bytes/);
});

test('50,000 ids made as fast as possible (many in the same millisecond) are all different', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 50_000; i++) seen.add(newRunId('app'));
  assert.equal(seen.size, 50_000);
});

test('RunIdTakenError names the id and why', () => {
  const error = new RunIdTakenError('app-x', 'ConfigMap app-x already exists');
  assert.equal(error.runId, 'app-x');
  assert.match(error.message, /run id app-x is taken: ConfigMap app-x already exists/);
});
