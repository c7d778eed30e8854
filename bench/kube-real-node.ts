// On the real node of the test environment (kubelet + containerd + runc): how long from submitting
// a JVM program to its first log line and to COMPLETED, for weft and for `kubectl apply` of an
// equivalent Job (kubectl logs -f / kubectl wait), with the node's image cache cold and warm; and
// the design note's question, "how long will a Docker image take to run a program, with and
// without a base image that has as much as possible of the common stuff?": a fat-jar image, a
// layered image, and a layered image on a base with the dependencies baked in.
//
//   eval "$(WEFT_NODE_REGISTRIES=127.0.0.1:5077 scripts/k8s-testenv up --real-node | tail -1)"
//   node dist/src/cli/main.js registry serve --root /tmp/reg --addr 127.0.0.1:5077 &
//   WEFT_NODE_REGISTRY=127.0.0.1:5077 node dist/bench/kube-real-node.js [--runs 3]
//
// Cold = every image but the pause image removed from the node's containerd (content and
// snapshots garbage-collected) before the run; warm = the same image already on the node.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { createRunner, parseAppSpec, type TwillRunner } from '../src/runtime/index.js';
import { toolBinary } from '../test/support/tools.js';
import { copyDistinctSystemJars } from './inputs.js';
import { median } from './stats.js';
import { countFlag } from './args.js';
import { realNodeEnvironment, repo, weftMain } from './real-node.js';

const exec = promisify(execFile);
const RUNS = countFlag('runs', 3);
const hello = join(repo, 'examples', 'hello', 'build');
const { kubeconfig, registry } = realNodeEnvironment('the set-up in the header of bench/kube-real-node.ts');
const containerdSocket = join(dirname(kubeconfig), 'node', 'containerd', 'containerd.sock');
// kubectl of the version the set-up built (it records the version it resolved).
const kubectlBin = toolBinary('kubernetes', 'bin/kubectl', 'scripts/k8s/build.sh');
const onRealNode = {
  nodeSelector: { 'weft.io/real-node': 'true' },
  tolerations: [{ key: 'weft.io/real-node', operator: 'Exists' as const, effect: 'NoSchedule' as const }],
};

const weft = async (...args: string[]) => (await exec(process.execPath, [weftMain, ...args], { maxBuffer: 64 << 20 })).stdout;
const ctr = async (...args: string[]) => (await exec('ctr', ['--address', containerdSocket, '--namespace', 'k8s.io', ...args], { maxBuffer: 16 << 20 })).stdout;
const kubectl = (...args: string[]) => exec(kubectlBin, ['--kubeconfig', kubeconfig!, ...args], { maxBuffer: 16 << 20 });

/** Removes every image but the pause image from the node, and waits for containerd's GC. */
async function coldNode(): Promise<void> {
  const images = (await ctr('images', 'ls', '-q')).split('\n').filter((r) => r && !r.includes('pause') && !r.startsWith('sha256:'));
  for (const ref of images) await ctr('images', 'rm', '--sync', ref).catch(() => undefined);
}

async function imageBytes(reference: string): Promise<number> {
  return (JSON.parse(await weft('inspect', `docker://${reference}`, '--json')) as { size: number }).size;
}

interface Sample { firstLine: number; completed: number }

async function viaWeft(runner: TwillRunner, image: string, name: string): Promise<Sample> {
  const t0 = performance.now();
  const c = await runner.prepare(parseAppSpec({ name, kubernetes: onRealNode, runnables: [{ name: 'main', kind: 'batch', image, args: ['bench'], resources: { cpu: '250m', memory: '256Mi' } }] })).start();
  let firstLine = NaN;
  const logs = (async () => {
    for await (const _ of c.logs({ follow: true })) {
      if (Number.isNaN(firstLine)) firstLine = performance.now() - t0;
    }
  })();
  const end = await c.awaitTerminated(300_000);
  const completed = performance.now() - t0;
  await Promise.race([logs, new Promise((r) => setTimeout(r, 10_000))]);
  if (end.state !== 'COMPLETED') throw new Error(`weft run of ${image} ended ${end.state}: ${end.message}`);
  if (Number.isNaN(firstLine)) throw new Error(`no log line from ${image}`);
  await c.terminate().catch(() => undefined);
  return { firstLine, completed };
}

async function viaKubectl(dir: string, namespace: string, image: string, name: string): Promise<Sample> {
  const manifest = join(dir, `${name}.json`);
  await writeFile(
    manifest,
    JSON.stringify({
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name, namespace },
      spec: {
        backoffLimit: 0,
        template: {
          spec: {
            restartPolicy: 'Never',
            nodeSelector: onRealNode.nodeSelector,
            tolerations: onRealNode.tolerations,
            containers: [{ name: 'main', image, args: ['bench'], resources: { requests: { cpu: '250m', memory: '256Mi' }, limits: { memory: '256Mi' } } }],
          },
        },
      },
    }),
  );
  const t0 = performance.now();
  await kubectl('apply', '-f', manifest);
  // The first line as a kubectl user sees it: `kubectl logs job/<name>` polled until it prints.
  let firstLine = NaN;
  let polling = true;
  const poll = (async () => {
    while (polling && Number.isNaN(firstLine)) {
      const out = await kubectl('-n', namespace, 'logs', `job/${name}`).catch(() => ({ stdout: '' }));
      if (out.stdout.trim()) firstLine = performance.now() - t0;
      else await new Promise((r) => setTimeout(r, 100));
    }
  })();
  await kubectl('-n', namespace, 'wait', '--for=condition=complete', `job/${name}`, '--timeout=300s');
  const completed = performance.now() - t0;
  await Promise.race([poll, new Promise((r) => setTimeout(r, 10_000))]);
  polling = false;
  if (Number.isNaN(firstLine)) throw new Error(`kubectl logs saw no line from ${image}`);
  await kubectl('-n', namespace, 'delete', 'job', name, '--wait=false', '--cascade=background');
  return { firstLine, completed };
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'weft-bench-real-node-'));
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig!);
  const core = kc.makeApiClient(CoreV1Api);
  const namespace = `bench-real-${randomBytes(3).toString('hex')}`;
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  const runner = await createRunner({ runtime: 'kubernetes', kubeconfig, namespace, resyncMs: 60_000 });
  try {
    // Inputs: the hello example plus Debian's Java libraries as extra dependencies (real jars).
    const deps = join(work, 'deps');
    await mkdir(deps);
    await exec('cp', ['-r', join(hello, 'libs', '.'), deps]);
    copyDistinctSystemJars(deps);
    const depBytes = (await Promise.all((await readdir(deps)).map(async (f) => (await stat(join(deps, f))).size))).reduce((a, b) => a + b, 0);
    const fat = join(work, 'fat');
    await mkdir(join(fat, 'BOOT-INF', 'lib'), { recursive: true });
    await exec('cp', [join(hello, 'hello-fat.jar'), join(fat, 'app.jar')]);
    await exec('cp', ['-r', join(deps, '.'), join(fat, 'BOOT-INF', 'lib')]);
    await exec('jar', ['--update', '--no-compress', '--file', join(fat, 'app.jar'), '-C', fat, 'BOOT-INF/lib']);
    // A program jar without Class-Path, for the base that already holds every dependency.
    const classes = join(work, 'classes');
    await mkdir(classes);
    await exec('jar', ['--extract', '--file', join(hello, 'hello.jar')], { cwd: classes });
    await rm(join(classes, 'META-INF'), { recursive: true, force: true });
    await exec('jar', ['--create', '--file', join(work, 'nodeps.jar'), '--main-class', 'com.example.hello.Main', '-C', classes, '.']);

    await weft('base', 'jre', '--output', `oci:${join(work, 'base')}:jre`);
    await weft('base', 'jre', '--add-jars', deps, '--output', `oci:${join(work, 'base-deps')}:jre`);
    const tag = randomBytes(3).toString('hex');
    const images: Record<string, string> = {
      'fat jar': `${registry}/bench/hello-fat:${tag}`,
      layered: `${registry}/bench/hello-layered:${tag}`,
      'layered, deps in base': `${registry}/bench/hello-on-deps-base:${tag}`,
    };
    await weft('build', join(fat, 'app.jar'), '--base', `oci:${join(work, 'base')}:jre`, '--output', `docker://${images['fat jar']}`);
    await weft('build', join(hello, 'hello.jar'), '--lib', deps, '--base', `oci:${join(work, 'base')}:jre`, '--output', `docker://${images.layered}`);
    await weft('build', join(work, 'nodeps.jar'), '--base', `oci:${join(work, 'base-deps')}:jre`, '--output', `docker://${images['layered, deps in base']}`);
    console.log(`inputs: ${(await readdir(deps)).length} dependency jars, ${(depBytes / 2 ** 20).toFixed(1)} MiB; runs per cell: ${RUNS}`);
    for (const [what, ref] of Object.entries(images)) console.log(`  ${what}: ${ref} (${((await imageBytes(ref).catch(() => 0)) / 2 ** 20).toFixed(1)} MiB compressed)`);

    const rows: Array<{ what: string; tool: string; cache: string; first: number[]; done: number[] }> = [];
    const cell = (what: string, tool: string, cache: string) => {
      let row = rows.find((r) => r.what === what && r.tool === tool && r.cache === cache);
      if (!row) rows.push((row = { what, tool, cache, first: [], done: [] }));
      return row;
    };
    let n = 0;
    for (let i = 0; i < RUNS; i++) {
      for (const [what, image] of Object.entries(images)) {
        for (const tool of what === 'layered' ? ['weft', 'kubectl'] : ['weft']) {
          for (const cache of ['cold', 'warm']) {
            if (cache === 'cold') await coldNode();
            const name = `b${++n}-${tag}`;
            const s = tool === 'weft' ? await viaWeft(runner, image, name) : await viaKubectl(work, namespace, image, name);
            const row = cell(what, tool, cache);
            row.first.push(s.firstLine);
            row.done.push(s.completed);
            process.stderr.write(`  ${what} ${tool} ${cache}: first line ${s.firstLine.toFixed(0)} ms, COMPLETED ${s.completed.toFixed(0)} ms\n`);
          }
        }
      }
    }
    console.log('\n| image | submitted with | node image cache | submit -> first log line (median) | submit -> COMPLETED (median) |');
    console.log('|---|---|---|---|---|');
    for (const r of rows) console.log(`| ${r.what} | ${r.tool} | ${r.cache} | ${median(r.first).toFixed(0)} ms | ${median(r.done).toFixed(0)} ms |`);
    for (const cache of ['cold', 'warm']) {
      const w = rows.find((r) => r.what === 'layered' && r.tool === 'weft' && r.cache === cache)!;
      const k = rows.find((r) => r.what === 'layered' && r.tool === 'kubectl' && r.cache === cache)!;
      console.log(`ratio weft/kubectl (layered, ${cache}): first line ${(median(w.first) / median(k.first)).toFixed(2)}, COMPLETED ${(median(w.done) / median(k.done)).toFixed(2)}`);
    }
  } finally {
    await runner.close();
    await core.deleteNamespace({ name: namespace }).catch(() => undefined);
    await rm(work, { recursive: true, force: true });
  }
}

await main();
