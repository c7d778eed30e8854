// Test fixtures for the registry client: a real CNCF distribution registry
// (Debian's docker-registry), a counting/fault-injecting loopback proxy, and
// synthetic images with real gzipped tar layers.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import type { Descriptor, ImageConfig, ImageManifest } from '../../src/image/oci.js';
import type { ImageHandle } from '../../src/image/transport.js';

// Tests are deterministic and leave the user's cache alone: the blob-location
// cache is off unless a test passes its own file (blobCache: <file>).
process.env.WEFT_BLOB_CACHE = 'off';

export const registryBinary = process.env.WEFT_DOCKER_REGISTRY ?? '/usr/bin/docker-registry';

/** crane as scripts/setup.d/35-crane.sh built it (the version it resolved is recorded in $WEFT_TOOLS). */
export function craneBinary(): string {
  return toolBinary('crane', 'crane', 'scripts/setup.d/35-crane.sh');
}

import { freePort } from '../support/net.js';
import { toolBinary } from '../support/tools.js';
export { freePort };

export async function tempDir(prefix = 'weft-rc-'): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

export interface Distribution {
  host: string; // 127.0.0.1:port
  port: number;
  root: string;
  /** The registry process (benchmarks read its CPU time from /proc). */
  pid: number;
  log: () => string;
  close(): Promise<void>;
}

export type DistributionAuth =
  | { htpasswd: string }
  | { token: { realm: string; service: string; issuer: string; rootcertbundle: string } };

/** Starts Debian's docker-registry on 127.0.0.1 with filesystem storage in a temp dir. Fails (never skips) if it cannot. */
export async function startDistribution(options: { auth?: DistributionAuth } = {}): Promise<Distribution> {
  try {
    await fs.access(registryBinary);
  } catch {
    throw new Error(`${registryBinary} is missing: install the Debian package docker-registry (scripts/setup --test does)`);
  }
  const root = await tempDir('weft-distribution-');
  const port = await freePort();
  const lines = [
    'version: 0.1',
    'log:',
    '  level: info',
    '  accesslog:',
    '    disabled: false',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${path.join(root, 'data')}`,
    '  delete:',
    '    enabled: true',
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: 127.0.0.1:${port}`,
  ];
  if (options.auth && 'htpasswd' in options.auth) {
    lines.push('auth:', '  htpasswd:', '    realm: weft-test', `    path: ${options.auth.htpasswd}`);
  } else if (options.auth && 'token' in options.auth) {
    const t = options.auth.token;
    lines.push('auth:', '  token:', `    realm: ${t.realm}`, `    service: ${t.service}`, `    issuer: ${t.issuer}`, `    rootcertbundle: ${t.rootcertbundle}`);
  }
  const config = path.join(root, 'config.yml');
  await fs.writeFile(config, `${lines.join('\n')}\n`);
  const child = spawn(registryBinary, ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  let exited = false;
  child.on('exit', () => (exited = true));
  const close = async (): Promise<void> => {
    await stopChild(child);
    await fs.rm(root, { recursive: true, force: true });
  };
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (exited) {
      await close();
      throw new Error(`docker-registry exited at start:\n${output}`);
    }
    const status = await probe(`http://127.0.0.1:${port}/v2/`);
    if (status === 200 || status === 401) break;
    if (Date.now() > deadline) {
      await close();
      throw new Error(`docker-registry did not answer on 127.0.0.1:${port} within 20 s:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { host: `127.0.0.1:${port}`, port, root, pid: child.pid!, log: () => output, close };
}

function probe(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(url, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.setTimeout(1000, () => req.destroy());
  });
}

export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

export interface ProxyRequest {
  method: string;
  url: string;
  requestBytes: number;
  status?: number;
  authorization?: string;
}

export interface Fault {
  /**
   * Decides per request: 'drop' destroys the connection, 'drop-midway' after 1 KiB of its body, a
   * number answers that status, { flipByteAt } forwards the answer with that byte of its body
   * inverted (a registry serving wrong content), undefined forwards.
   */
  (req: http.IncomingMessage, index: number): 'drop' | 'drop-midway' | number | { flipByteAt: number } | undefined;
}

export interface Proxy {
  host: string;
  port: number;
  requests: ProxyRequest[];
  reset(): void;
  close(): Promise<void>;
}

/** A loopback HTTP proxy in front of `target` that records every request (and its body size) and can inject faults. */
export async function startProxy(target: { port: number }, fault?: Fault): Promise<Proxy> {
  const requests: ProxyRequest[] = [];
  let index = 0;
  const server = http.createServer((req, res) => {
    const record: ProxyRequest = { method: req.method ?? '', url: req.url ?? '', requestBytes: 0, authorization: req.headers.authorization };
    requests.push(record);
    const decision = fault?.(req, index++);
    if (decision === 'drop') {
      req.socket.destroy();
      return;
    }
    if (typeof decision === 'number') {
      req.resume();
      req.on('end', () => {
        record.status = decision;
        res.writeHead(decision, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: 'injected by the test proxy' }] }));
      });
      return;
    }
    const upstream = http.request(
      { host: '127.0.0.1', port: target.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        record.status = up.statusCode;
        res.writeHead(up.statusCode ?? 502, up.headers);
        if (typeof decision !== 'object') {
          up.pipe(res);
          return;
        }
        let offset = 0;
        up.on('data', (chunk: Buffer) => {
          const at = decision.flipByteAt - offset;
          if (at >= 0 && at < chunk.length) chunk[at]! ^= 0xff;
          offset += chunk.length;
          res.write(chunk);
        });
        up.on('end', () => res.end());
      },
    );
    upstream.on('error', () => res.destroy());
    let seen = 0;
    req.on('data', (chunk: Buffer) => {
      record.requestBytes += chunk.length;
      seen += chunk.length;
      if (decision === 'drop-midway' && seen > 1024) {
        upstream.destroy();
        req.socket.destroy();
      }
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    port,
    requests,
    reset: () => {
      requests.length = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

import { sha256 } from '../../src/image/blobstore.js';
export { sha256 };

/** A gzipped tar with one file of `size` pseudo-random bytes (deterministic per seed). */
export async function makeLayer(name: string, size: number, seed: string): Promise<{ gz: Buffer; diffId: string }> {
  const content = Buffer.alloc(size);
  let block = createHash('sha256').update(seed).digest();
  for (let off = 0; off < size; off += block.length) {
    block.copy(content, off);
    block = createHash('sha256').update(block).digest();
  }
  const pack = tar.pack();
  pack.entry({ name: 'app/', type: 'directory', mtime: new Date(1000), mode: 0o755 });
  pack.entry({ name: `app/${name}`, mtime: new Date(1000), mode: 0o644 }, content);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack as AsyncIterable<Buffer>) chunks.push(chunk);
  const raw = Buffer.concat(chunks);
  return { gz: gzipSync(raw, { level: 1 }), diffId: sha256(raw) };
}

export interface SyntheticImage extends ImageHandle {
  blobs: Map<string, Buffer>;
}

/** An in-memory single-platform OCI image with the given layers. */
export async function syntheticImage(layerSpecs: Array<{ name: string; size: number; seed: string }>, label = 'test'): Promise<SyntheticImage> {
  const layers = await Promise.all(layerSpecs.map((s) => makeLayer(s.name, s.size, s.seed)));
  const config: ImageConfig = {
    created: '1970-01-01T00:00:01Z',
    architecture: 'amd64',
    os: 'linux',
    config: { Env: ['PATH=/usr/bin'], Labels: { 'weft.test': label } },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
  };
  const configBytes = Buffer.from(JSON.stringify(config));
  const blobs = new Map<string, Buffer>();
  const layerDescriptors: Descriptor[] = layers.map((l) => {
    const digest = sha256(l.gz);
    blobs.set(digest, l.gz);
    return { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest, size: l.gz.length };
  });
  const configDescriptor: Descriptor = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(configBytes), size: configBytes.length };
  blobs.set(configDescriptor.digest, configBytes);
  const manifest: ImageManifest = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: configDescriptor, layers: layerDescriptors };
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  return {
    source: `synthetic:${label}`,
    manifest,
    manifestBytes,
    manifestDigest: sha256(manifestBytes),
    manifestMediaType: manifest.mediaType!,
    config,
    configBytes,
    blobs,
    openBlob: async (d) => {
      const b = blobs.get(d.digest);
      if (!b) throw new Error(`no blob ${d.digest}`);
      // Small chunks so streams behave like files.
      const chunks: Buffer[] = [];
      for (let off = 0; off < b.length; off += 65536) chunks.push(b.subarray(off, off + 65536));
      return Readable.from(chunks);
    },
  };
}

/** Writes an image into an OCI layout directory by hand (independent of weft's own writer). */
export async function writeLayoutByHand(dir: string, image: SyntheticImage, tag: string): Promise<void> {
  await fs.mkdir(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  await fs.writeFile(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  for (const [digest, bytes] of image.blobs) await fs.writeFile(path.join(dir, 'blobs', 'sha256', digest.slice(7)), bytes);
  await fs.writeFile(path.join(dir, 'blobs', 'sha256', image.manifestDigest.slice(7)), image.manifestBytes);
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      {
        mediaType: image.manifestMediaType,
        digest: image.manifestDigest,
        size: image.manifestBytes.length,
        annotations: { 'org.opencontainers.image.ref.name': tag },
      },
    ],
  };
  await fs.writeFile(path.join(dir, 'index.json'), JSON.stringify(index));
}

export { runCommand as run } from '../support/command.js';

export function blobPushes(requests: ProxyRequest[]): ProxyRequest[] {
  return requests.filter((r) => (r.method === 'PUT' || r.method === 'PATCH') && r.url.includes('/blobs/uploads/'));
}
