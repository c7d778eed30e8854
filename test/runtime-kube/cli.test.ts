// The weft CLI against the real control plane.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { weft as runWeft } from '../support/command.js';
import { KWOK, testNamespace } from './helpers.js';

let ns: { name: string; drop: () => Promise<void> };
let dir: string;

const weft = (args: string[]) => runWeft(args, { timeoutMs: 90_000 });

before(async () => {
  ns = await testNamespace('weft-cli');
  dir = await mkdtemp(join(tmpdir(), 'weft-cli-'));
});
after(async () => {
  await ns?.drop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('run --wait exits 0 for COMPLETED and 1 for FAILED, with JSON', async () => {
  const ok = join(dir, 'ok.yaml');
  await writeFile(ok, `name: demo\nstartTimeout: 60s\nrunnables:\n  - name: main\n    kind: batch\n    image: registry.example/demo:1\n    args: ["--input", "x"]\n    env: { LEVEL: info }\n    ports: [{ name: http, port: 8080 }]\n`);
  const r = await weft(['run', ok, '--runtime', 'kubernetes', '--namespace', ns.name, '--wait', '--json']);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const out = JSON.parse(r.stdout);
  assert.equal(out.state, 'COMPLETED');
  assert.match(out.runId, /^demo-[0-9a-hjkmnp-tv-z]{17}$/);

  const bad = join(dir, 'bad.yaml');
  await writeFile(bad, `name: bad\nrunnables:\n  - name: main\n    kind: batch\n    image: registry.example/demo:1\n    kubernetes:\n      podLabels: { ${KWOK.failed}: "true" }\n      podAnnotations: { ${KWOK.failed}/exit-code: "2" }\n`);
  const f = await weft(['run', bad, '--namespace', ns.name, '--wait', '--json']);
  assert.equal(f.code, 1);
  const fo = JSON.parse(f.stdout);
  assert.equal(fo.state, 'FAILED');
  assert.equal(fo.exitCode, 2);
});

test('run, status, list, scale, logs and kill of a service', async () => {
  const file = join(dir, 'svc.yaml');
  await writeFile(file, 'name: svc\nrunnables:\n  - { name: web, kind: service, image: registry.example/web:1, instances: 2 }\n');
  const r = await weft(['run', file, '--namespace', ns.name, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const { runId, state } = JSON.parse(r.stdout);
  assert.equal(state, 'PENDING');

  let status: { runId: string; state: string; message?: string; runnables: Array<{ name: string; instances: Array<{ id: string; state: string }> }> } | undefined;
  for (let i = 0; i < 60; i++) {
    const s = await weft(['status', runId, '--namespace', ns.name, '--json']);
    assert.equal(s.code, 0, s.stderr);
    status = JSON.parse(s.stdout);
    if (status!.state === 'RUNNING') break;
    await new Promise((res) => setTimeout(res, 500));
  }
  assert.equal(status!.state, 'RUNNING');
  assert.equal(status!.runnables[0].name, 'web');
  assert.equal(status!.runnables[0].instances.length, 2);
  assert.ok(status!.runnables[0].instances.every((i) => typeof i.id === 'string' && i.state === 'RUNNING'));
  assert.ok('message' in status! || status!.message === undefined);

  const list = await weft(['list', '--namespace', ns.name, '--json']);
  assert.ok(JSON.parse(list.stdout).some((x: { runId: string }) => x.runId === runId));

  const sc = await weft(['scale', runId, 'web=3', '--namespace', ns.name]);
  assert.equal(sc.code, 0, sc.stderr);
  const bad = await weft(['scale', runId, 'web:3', '--namespace', ns.name]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /write <runnable>=<count>/);

  const logs = await weft(['logs', runId, '--namespace', ns.name]);
  assert.equal(logs.code, 0, logs.stderr);
  assert.match(logs.stdout, /^\[web\//m, 'every line is prefixed [runnable/instance]');

  const k = await weft(['kill', runId, '--namespace', ns.name, '--json']);
  assert.equal(k.code, 0, k.stderr);
  assert.equal(JSON.parse(k.stdout).state, 'KILLED');
  const gone = await weft(['status', runId, '--namespace', ns.name]);
  assert.equal(gone.code, 1);
});

test('bad input: a clear error and nothing created', async () => {
  const file = join(dir, 'invalid.yaml');
  await writeFile(file, 'name: x\nrunnables:\n  - { name: main, kind: cron, image: a/b:1 }\n');
  const r = await weft(['run', file, '--namespace', ns.name]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /runnables\[0\]\.kind: kind must be one of batch, service, stateful/);
  const missing = await weft(['run', join(dir, 'nope.yaml'), '--namespace', ns.name]);
  assert.match(missing.stderr, /cannot read app spec .*ENOENT/);
  const list = await weft(['list', '--namespace', ns.name, '--json']);
  assert.ok(!JSON.parse(list.stdout).some((x: { app: string }) => x.app === 'x'));
  const ctx = await weft(['list', '--context', 'no-such-context']);
  assert.match(ctx.stderr, /no context "no-such-context"/);
});
