// Benchmark: the embedded registry (`weft registry serve`) vs the CNCF
// distribution registry (Debian's `docker-registry`), both as separate processes
// on loopback with filesystem storage in a fresh temp folder, serving the same
// concurrent pushes and pulls from the same client (node fetch).
//
// Usage: node dist/bench/registry-server.js [--images 20] [--layers 3] [--layer-mib 1] [--concurrency 8] [--repeat 5]
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median } from './stats.js';
import { freePort } from '../test/support/net.js';
import { sha256 } from '../src/image/blobstore.js';

const args = process.argv.slice(2);
function opt(name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
}
const IMAGES = opt('images', 20);
const LAYERS = opt('layers', 3);
const LAYER_BYTES = Math.round(opt('layer-mib', 1) * 1024 * 1024);
const CONCURRENCY = opt('concurrency', 8);
const REPEAT = opt('repeat', 5);
const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));


interface Image {
  blobs: Buffer[];
  manifest: Buffer;
}

function makeImages(): Image[] {
  return Array.from({ length: IMAGES }, (_, i) => {
    const layers = Array.from({ length: LAYERS }, () => randomBytes(LAYER_BYTES));
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: layers.map(sha256) }, config: { Labels: { n: String(i) } } }));
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
        layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(l), size: l.length })),
      }),
    );
    return { blobs: [...layers, config], manifest };
  });
}

async function pool<T>(items: T[], fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < items.length) {
        const i = next++;
        await fn(items[i], i);
      }
    }),
  );
}

async function expect(res: Response, status: number, what: string): Promise<Response> {
  if (res.status !== status) throw new Error(`${what}: HTTP ${res.status} ${await res.text()}`);
  return res;
}

/** The usual client sequence: HEAD, POST, one streamed PATCH, PUT ?digest; manifest last. */
async function pushImage(base: string, repo: string, tag: string, image: Image): Promise<void> {
  for (const blob of image.blobs) {
    const digest = sha256(blob);
    const head = await fetch(`${base}/v2/${repo}/blobs/${digest}`, { method: 'HEAD' });
    if (head.status === 200) continue;
    const post = await expect(await fetch(`${base}/v2/${repo}/blobs/uploads/`, { method: 'POST' }), 202, 'POST');
    await post.arrayBuffer();
    const patch = await expect(await fetch(new URL(post.headers.get('location')!, base), { method: 'PATCH', body: blob, headers: { 'Content-Type': 'application/octet-stream' } }), 202, 'PATCH');
    await patch.arrayBuffer();
    const put = new URL(patch.headers.get('location')!, base);
    put.searchParams.set('digest', digest);
    (await expect(await fetch(put, { method: 'PUT' }), 201, 'PUT')).arrayBuffer();
  }
  const res = await expect(await fetch(`${base}/v2/${repo}/manifests/${tag}`, { method: 'PUT', body: image.manifest, headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' } }), 201, 'manifest PUT');
  await res.arrayBuffer();
}

async function pullImage(base: string, repo: string, tag: string): Promise<number> {
  const res = await expect(await fetch(`${base}/v2/${repo}/manifests/${tag}`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } }), 200, 'manifest GET');
  const manifest = JSON.parse(await res.text()) as { config: { digest: string }; layers: Array<{ digest: string }> };
  let bytes = 0;
  for (const { digest } of [manifest.config, ...manifest.layers]) {
    const blob = Buffer.from(await (await expect(await fetch(`${base}/v2/${repo}/blobs/${digest}`), 200, 'blob GET')).arrayBuffer());
    if (sha256(blob) !== digest) throw new Error(`pulled blob ${digest} does not verify`);
    bytes += blob.length;
  }
  return bytes;
}


async function waitFor(url: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`);
    try {
      const res = await fetch(`${url}/v2/`);
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url} did not answer`);
}

interface Server {
  url: string;
  stop(): Promise<void>;
}

async function startServer(kind: 'weft' | 'distribution', dir: string): Promise<Server> {
  const port = await freePort();
  let child: ChildProcess;
  if (kind === 'weft') {
    child = spawn(process.execPath, [cli, 'registry', 'serve', '--root', join(dir, 'root'), '--addr', `127.0.0.1:${port}`, '--log-level', 'error'], {
      stdio: 'ignore',
      // as ensureEmbeddedRegistry() starts it: a larger libuv pool for concurrent fsyncs
      env: { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '16' },
    });
  } else {
    const config = join(dir, 'config.yml');
    await writeFile(
      config,
      [
        'version: 0.1',
        'log:',
        '  level: error',
        '  accesslog:',
        '    disabled: true',
        'storage:',
        '  filesystem:',
        `    rootdirectory: ${join(dir, 'root')}`,
        '  delete:',
        '    enabled: true',
        'http:',
        `  addr: 127.0.0.1:${port}`,
        '',
      ].join('\n'),
    );
    child = spawn('docker-registry', ['serve', config], { stdio: 'ignore' });
  }
  const url = `http://127.0.0.1:${port}`;
  await waitFor(url, child);
  return {
    url,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}


async function main(): Promise<void> {
  const images = makeImages();
  const totalMiB = (images.reduce((n, im) => n + im.blobs.reduce((m, b) => m + b.length, 0), 0) / 1024 / 1024).toFixed(1);
  console.log(`# ${IMAGES} images x ${LAYERS} layers x ${(LAYER_BYTES / 1024 / 1024).toFixed(2)} MiB (${totalMiB} MiB), concurrency ${CONCURRENCY}, ${REPEAT} rounds`);
  const phases = ['push', 're-push', 'pull'] as const;
  const times: Record<string, Record<string, number[]>> = { weft: { push: [], 're-push': [], pull: [] }, distribution: { push: [], 're-push': [], pull: [] } };
  for (let round = 0; round < REPEAT; round++) {
    const order: Array<'weft' | 'distribution'> = round % 2 === 0 ? ['weft', 'distribution'] : ['distribution', 'weft'];
    for (const kind of order) {
      const dir = await mkdtemp(join(tmpdir(), `weft-bench-${kind}-`));
      const server = await startServer(kind, dir);
      try {
        let t = performance.now();
        await pool(images, (im, i) => pushImage(server.url, `bench/app${i}`, 'v1', im));
        times[kind].push.push(performance.now() - t);
        t = performance.now();
        await pool(images, (im, i) => pushImage(server.url, `bench/app${i}`, 'v2', im));
        times[kind]['re-push'].push(performance.now() - t);
        t = performance.now();
        await pool(images, async (_im, i) => {
          await pullImage(server.url, `bench/app${i}`, 'v1');
        });
        times[kind].pull.push(performance.now() - t);
      } finally {
        await server.stop();
        await rm(dir, { recursive: true, force: true });
      }
    }
    console.log(`round ${round + 1}: ` + phases.map((p) => `${p} weft ${times.weft[p][round].toFixed(0)} ms / distribution ${times.distribution[p][round].toFixed(0)} ms`).join('; '));
  }
  console.log('\n| phase | weft (median ms) | distribution (median ms) | distribution / weft |');
  console.log('|---|---:|---:|---:|');
  for (const p of phases) {
    const w = median(times.weft[p]);
    const d = median(times.distribution[p]);
    console.log(`| ${p} | ${w.toFixed(0)} | ${d.toFixed(0)} | ${(d / w).toFixed(2)}x |`);
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
