import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAppSpec, parseAppSpecYaml, parseDuration, parseQuantityBytes, SpecError } from '../../src/runtime/index.js';

const example = `
name: demo
startTimeout: 60s
runnables:
  - name: main
    kind: batch            # batch | service | stateful
    image: registry.example/demo:1
    instances: 1
    resources: { cpu: 500m, memory: 256Mi }
    args: ["--input", "x"]
    env: { LEVEL: info }
    ports: [{ name: http, port: 8080 }]
`;

test('the issue example parses, with durations in ms and defaults filled in', () => {
  const spec = parseAppSpecYaml(example);
  assert.equal(spec.name, 'demo');
  assert.equal(spec.startTimeout, 60_000);
  assert.equal(spec.stopTimeout, 30_000);
  const r = spec.runnables[0];
  assert.deepEqual(r.args, ['--input', 'x']);
  assert.deepEqual(r.env, { LEVEL: 'info' });
  assert.deepEqual(r.ports, [{ name: 'http', port: 8080, protocol: 'TCP' }]);
  assert.deepEqual(r.resources, { cpu: '500m', memory: '256Mi' });
});

test('defaults: one instance, 500m / 256Mi, 5m start timeout', () => {
  const spec = parseAppSpecYaml('name: a\nrunnables: [{ name: w, kind: service, image: x/y:1 }]');
  assert.equal(spec.startTimeout, 300_000);
  assert.equal(spec.runnables[0].instances, 1);
  assert.deepEqual(spec.runnables[0].resources, { cpu: '500m', memory: '256Mi' });
});

test('durations', () => {
  assert.equal(parseDuration('60s'), 60_000);
  assert.equal(parseDuration('5m'), 300_000);
  assert.equal(parseDuration('1h30m'), 5_400_000);
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration(2), 2000);
  assert.throws(() => parseDuration('5 minutes'), /write it like/);
  assert.throws(() => parseDuration('5x'), SpecError);
});

test('errors name the path and what to do', () => {
  const bad = `
name: Demo_App
startTimeout: soon
runnables:
  - name: main
    kind: cron
    instances: -1
    resources: { cpu: lots }
    colour: blue
`;
  let message = '';
  try {
    parseAppSpecYaml(bad, 'weft.yaml');
  } catch (error) {
    assert.ok(error instanceof SpecError);
    message = (error as Error).message;
  }
  assert.match(message, /invalid app spec weft\.yaml/);
  assert.match(message, /name: .*lowercase/);
  assert.match(message, /startTimeout: invalid duration "soon"/);
  assert.match(message, /runnables\[0\]\.kind: kind must be one of batch, service, stateful/);
  assert.match(message, /runnables\[0\]\.instances/);
  assert.match(message, /runnables\[0\]\.resources\.cpu: cpu is cores/);
  assert.match(message, /unknown field\(s\) "colour"/);
});

test('image or build is required, not both; duplicates rejected', () => {
  assert.throws(() => parseAppSpecYaml('name: a\nrunnables: [{ name: w, kind: batch }]'), /runnables\[0\]\.image: give either image/);
  assert.throws(
    () => parseAppSpecYaml('name: a\nrunnables: [{ name: w, kind: batch, image: x, build: { jar: a.jar } }]'),
    /give image or build, not both/,
  );
  assert.throws(
    () => parseAppSpecYaml('name: a\nrunnables: [{ name: w, kind: batch, image: x }, { name: w, kind: service, image: y }]'),
    /duplicate runnable name "w"/,
  );
  assert.throws(() => parseAppSpecYaml('name: a\nrunnables: []'), /at least one runnable/);
  assert.throws(() => parseAppSpecYaml('- a\n- b'), /runnables/);
  assert.throws(() => parseAppSpecYaml('name: [unclosed'), /not valid YAML/);
});

test('a build section is accepted by the schema', () => {
  const spec = parseAppSpecYaml('name: a\nrunnables: [{ name: w, kind: batch, build: { jar: app.jar, libs: [lib/a.jar] } }]');
  assert.deepEqual(spec.runnables[0].build, { jar: 'app.jar', libs: ['lib/a.jar'] });
});

test('issue 13 #9: memory quantities that overflow, or 0 (which would mean no limit), are refused', () => {
  const withMemory = (memory: string) => ({ name: 'a', runnables: [{ name: 'r', kind: 'batch', image: 'x/y:1', resources: { memory } }] });
  for (const memory of ['99999999999999999999999Ti', '0', '1Ki', '2048Ti']) {
    assert.throws(() => parseAppSpec(withMemory(memory)), (e: Error) => e instanceof SpecError && /resources\.memory: memory/.test(e.message), memory);
  }
  assert.equal(parseAppSpec(withMemory('6Mi')).runnables[0].resources.memory, '6Mi');
  assert.equal(parseQuantityBytes('1.5Gi'), 1.5 * 1024 ** 3);
  assert.throws(() => parseQuantityBytes('1e400'), /invalid quantity/);
});
