// The design note's seed path on a real Kubernetes node (scripts/k8s-testenv up --real-node):
// `weft build` of the example program pushed to weft's registry, `weft run --runtime kubernetes`,
// the node pulls the image and the JVM really runs; `weft logs` prints what it printed. Then the
// ways a program ends badly (exit code, memory limit, missing image), the heap the JVM derives
// from its limit, and a service that is RUNNING only once its readiness probe passes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { createRunner, parseAppSpec, type AppSpecInput, type RunStatus, type TwillRunner } from '../../src/runtime/index.js';
import { nodeRegistry, onRealNode, pushToNode } from '../support/real-node.js';
import { buildProbeImage } from '../twill/fixtures/probe-image.js';
import { expectedHello, helloBuild, mustWeft, weft, weftMain } from './harness.js';

const TIMEOUT = 300_000;

describe('the seed path on a real Kubernetes node', () => {
  let work: string;
  let namespace: string;
  let core: CoreV1Api;
  let helloImage: string;
  let probeImage: string;
  let runner: TwillRunner;

  before(async () => {
    const registry = nodeRegistry();
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-real-node-'));
    const kc = new KubeConfig();
    kc.loadFromFile(process.env.KUBECONFIG!);
    core = kc.makeApiClient(CoreV1Api);
    namespace = `seed-${randomBytes(3).toString('hex')}`;
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    runner = await createRunner({ runtime: 'kubernetes', kubeconfig: process.env.KUBECONFIG, namespace, resyncMs: 60_000 });
    await mustWeft(['base', 'jre', '--output', `oci:${path.join(work, 'base')}:jre`, '--json']);
    helloImage = `${registry}/seed/hello:${randomBytes(4).toString('hex')}`;
    await mustWeft(['build', path.join(helloBuild, 'hello.jar'), '--base', `oci:${path.join(work, 'base')}:jre`, '--output', `docker://${helloImage}`, '--json']);
    const probe = await buildProbeImage();
    try {
      probeImage = await pushToNode(weftMain, probe.reference, `seed/probe:${randomBytes(4).toString('hex')}`);
    } finally {
      await probe.remove();
    }
  });

  after(async () => {
    await runner?.close();
    if (namespace) await core.deleteNamespace({ name: namespace }).catch(() => undefined);
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  const kubeFlags = () => ['--runtime', 'kubernetes', '--namespace', namespace];

  async function writeSpec(spec: AppSpecInput): Promise<string> {
    const file = path.join(work, `${spec.name}-${randomBytes(3).toString('hex')}.yaml`);
    await fs.writeFile(file, stringify({ ...spec, kubernetes: onRealNode }));
    return file;
  }

  /** Starts a spec through the API and waits for its end. */
  async function runToEnd(spec: AppSpecInput): Promise<RunStatus & { logs: string[] }> {
    const c = await runner.prepare(parseAppSpec({ ...spec, kubernetes: onRealNode })).start();
    const end = await c.awaitTerminated(TIMEOUT - 20_000);
    const logs: string[] = [];
    for await (const l of c.logs()) logs.push(`[${l.runnable}/${l.instance}] ${l.line}`);
    return { ...end, logs };
  }

  test('weft build, push, weft run --wait: the JVM runs on the node, weft logs shows its output, COMPLETED', { timeout: TIMEOUT }, async () => {
    const spec = await writeSpec({
      name: 'hello-real',
      runnables: [{ name: 'hello', kind: 'batch', image: helloImage, args: ['weft', 'real', 'node'], env: { HELLO_NAME: 'kubelet' }, resources: { cpu: '250m', memory: '256Mi' } }],
    });
    const run = await weft(['run', spec, ...kubeFlags(), '--wait', '--json']);
    assert.equal(run.code, 0, `weft run --wait exits 0 only for COMPLETED:\n${run.stdout}\n${run.stderr}`);
    const final = JSON.parse(run.stdout) as RunStatus;
    assert.equal(final.state, 'COMPLETED', final.message);
    const instance = final.runnables[0].instances[0];
    const realNodes = (await core.listNode({ labelSelector: 'weft.io/real-node=true' })).items.map((n) => n.metadata?.name);
    assert.deepEqual([instance.host], realNodes, 'the pod ran on the real node');
    assert.equal(instance.exitCode ?? 0, 0);
    const logs = await weft(['logs', final.runId, ...kubeFlags()]);
    assert.equal(logs.code, 0, logs.stderr);
    const prefixed = logs.stdout.split('\n').filter((l) => l.startsWith('[hello/0] '));
    assert.equal(prefixed.length, 2, `two lines from the program, prefixed [runnable/instance]:\n${logs.stdout}`);
    assert.match(prefixed.map((l) => l.slice('[hello/0] '.length)).join('\n') + '\n', expectedHello(['weft', 'real', 'node'], 'kubelet'));
  });

  test('weft logs --follow streams a running program and ends when the run ends', { timeout: TIMEOUT }, async () => {
    const spec = await writeSpec({ name: 'ticks-real', runnables: [{ name: 'main', kind: 'batch', image: probeImage, args: ['ticks', '30'], resources: { cpu: '250m', memory: '256Mi' } }] });
    const started = await weft(['run', spec, ...kubeFlags()]);
    assert.equal(started.code, 0, started.stderr);
    const runId = started.stdout.trim();
    const child = spawn(process.execPath, [weftMain, 'logs', '--follow', runId, ...kubeFlags()], { env: { ...process.env, NO_COLOR: '1' } });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    assert.equal(code, 0, `weft logs --follow ends with the run:\n${err}`);
    const ticks = out.split('\n').filter((l) => l.startsWith('[main/0] tick '));
    assert.deepEqual(ticks, Array.from({ length: 30 }, (_, i) => `[main/0] tick ${i + 1}`), `every line once, in order:\n${out}`);
    assert.ok(out.includes('[main/0] batch done'));
    const after = await weft(['logs', runId, ...kubeFlags()]);
    assert.ok(after.stdout.includes('[main/0] tick 30'), 'the logs are still there after the run ended');
  });

  test('a program that exits 3 ends FAILED with exit code 3 and its last log lines', { timeout: TIMEOUT }, async () => {
    const end = await runToEnd({ name: 'exit3-real', runnables: [{ name: 'main', kind: 'batch', image: probeImage, args: ['fail', '3'], resources: { cpu: '250m', memory: '256Mi' } }] });
    assert.equal(end.state, 'FAILED');
    const instance = end.runnables[0].instances[0];
    assert.equal(instance.exitCode, 3, JSON.stringify(instance));
    assert.match(end.message ?? '', /exit code 3/);
    assert.match(end.message ?? '', /probe failing on purpose with code 3/, 'the program\'s last words are in the message');
  });

  test('a program over its memory limit ends FAILED: OOMKilled, with the limit', { timeout: TIMEOUT }, async () => {
    const end = await runToEnd({
      name: 'oom-real',
      runnables: [{ name: 'main', kind: 'batch', image: probeImage, args: ['oom'], env: { JAVA_TOOL_OPTIONS: '-Xmx1g' }, resources: { cpu: '250m', memory: '128Mi' } }],
    });
    assert.equal(end.state, 'FAILED');
    const instance = end.runnables[0].instances[0];
    assert.equal(instance.exitCode, 137, JSON.stringify(instance));
    assert.equal(instance.reason, 'OOMKilled');
    assert.match(end.message ?? '', /OOMKilled/);
    assert.match(end.message ?? '', /128Mi/, 'the message names the limit');
  });

  test('an image that does not exist fails fast with the pull error', { timeout: TIMEOUT }, async () => {
    const missing = `${nodeRegistry()}/seed/does-not-exist:${randomBytes(3).toString('hex')}`;
    const end = await runToEnd({ name: 'nopull-real', startTimeout: '10m', runnables: [{ name: 'main', kind: 'batch', image: missing, resources: { cpu: '100m', memory: '64Mi' } }] });
    assert.equal(end.state, 'FAILED');
    assert.match(end.message ?? '', /ErrImagePull|ImagePullBackOff/);
    assert.ok((end.message ?? '').includes(missing), `the message names the image: ${end.message}`);
    assert.match(end.message ?? '', /not found/, 'the registry\'s answer is in the message');
  });

  test('the JVM sizes its heap from the container memory limit', { timeout: TIMEOUT }, async () => {
    const heapFor = async (memory: string): Promise<number> => {
      const end = await runToEnd({ name: `heap-${memory.toLowerCase()}`, runnables: [{ name: 'main', kind: 'batch', image: probeImage, args: ['heap'], resources: { cpu: '250m', memory } }] });
      assert.equal(end.state, 'COMPLETED', end.message);
      const line = end.logs.find((l) => l.startsWith('[main/0] maxHeapMiB='));
      assert.ok(line, `the program printed its max heap:\n${end.logs.join('\n')}`);
      return Number(line.split('=')[1]);
    };
    const small = await heapFor('256Mi');
    const large = await heapFor('768Mi');
    // weft's entry point sets -XX:MaxRAMPercentage=75: about 3/4 of the limit, never the host's memory.
    assert.ok(small > 256 * 0.5 && small <= 256 * 0.8, `256Mi limit gave a ${small} MiB heap`);
    assert.ok(large > 768 * 0.5 && large <= 768 * 0.8, `768Mi limit gave a ${large} MiB heap`);
    assert.ok(os.totalmem() / 2 ** 20 > 768 * 2, 'the host has far more memory than the limit (else this proves nothing)');
  });

  test('a service with a readiness probe on its port is RUNNING only once it is ready', { timeout: TIMEOUT }, async () => {
    const c = await runner
      .prepare(
        parseAppSpec({
          name: 'ready-real',
          kubernetes: onRealNode,
          runnables: [
            {
              name: 'web',
              kind: 'service',
              image: probeImage,
              args: ['service'],
              env: { LISTEN_DELAY_MS: '6000' },
              ports: [{ name: 'http', port: 18080 }],
              readiness: { port: 'http', period: '1s' },
              resources: { cpu: '250m', memory: '256Mi' },
            },
          ],
        }),
      )
      .start();
    try {
      const seen: RunStatus[] = [];
      c.onChange((s) => seen.push(s));
      await c.onRunning();
      const lines: string[] = [];
      for await (const l of c.logs()) lines.push(l.line);
      assert.ok(lines.some((l) => l.startsWith('listening on 18080')), `RUNNING came after the program listened:\n${lines.join('\n')}`);
      const notReady = seen.filter((s) => s.runnables[0]?.instances[0]?.reason === 'NotReady');
      assert.ok(notReady.length > 0, `the instance was seen running but not ready first: ${seen.map((s) => `${s.state}/${s.runnables[0]?.instances[0]?.reason ?? ''}`).join(' ')}`);
      assert.ok(notReady.every((s) => s.state !== 'RUNNING'), 'never RUNNING while not ready');
    } finally {
      await c.kill();
      await c.awaitTerminated(120_000).catch(() => undefined);
    }
  });
});
