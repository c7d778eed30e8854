// Helpers shared by the registry server tests: temp folders, raw HTTP (no URL
// normalisation, so hostile paths reach the server as written), a real OCI
// image layout with gzip tar layers, and pushes written with plain fetch.
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';

import { sha256 } from '../../src/image/blobstore.js';
export { sha256 };

export async function tempDir(prefix: string): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `weft-${prefix}-`));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  json<T = any>(): T;
}

/** One HTTP request with the path sent exactly as given. */
export function raw(base: string, method: string, path: string, options: { headers?: Record<string, string>; body?: Buffer | string } = {}): Promise<RawResponse> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, method, path, headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: () => JSON.parse(body.toString('utf8')) });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

export function errorCode(res: RawResponse): string | undefined {
  try {
    return res.json<{ errors: Array<{ code: string }> }>().errors[0]?.code;
  } catch {
    return undefined;
  }
}

/** Monolithic push of one blob (POST ?digest=). Returns the HTTP status. */
export async function pushBlob(base: string, repo: string, data: Buffer, headers: Record<string, string> = {}): Promise<{ status: number; digest: string }> {
  const digest = sha256(data);
  const res = await fetch(`${base}/v2/${repo}/blobs/uploads/?digest=${digest}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/octet-stream', ...headers },
    body: data,
  });
  await res.arrayBuffer();
  return { status: res.status, digest };
}

/** POST a session, PATCH the chunks in order, PUT ?digest=. */
export async function pushChunked(base: string, repo: string, data: Buffer, chunk: number, headers: Record<string, string> = {}): Promise<{ status: number; digest: string }> {
  const digest = sha256(data);
  let res = await fetch(`${base}/v2/${repo}/blobs/uploads/`, { method: 'POST', headers });
  await res.arrayBuffer();
  if (res.status !== 202) return { status: res.status, digest };
  let location = new URL(res.headers.get('location')!, base).toString();
  for (let start = 0; start < data.length; start += chunk) {
    const part = data.subarray(start, Math.min(start + chunk, data.length));
    res = await fetch(location, {
      method: 'PATCH',
      headers: { ...headers, 'Content-Type': 'application/octet-stream', 'Content-Range': `${start}-${start + part.length - 1}` },
      body: part,
    });
    await res.arrayBuffer();
    if (res.status !== 202) return { status: res.status, digest };
    location = new URL(res.headers.get('location')!, base).toString();
  }
  const put = new URL(location);
  put.searchParams.set('digest', digest);
  res = await fetch(put, { method: 'PUT', headers });
  await res.arrayBuffer();
  return { status: res.status, digest };
}

export interface TestImage {
  manifest: Buffer;
  manifestDigest: string;
  config: Buffer;
  configDigest: string;
  layers: Buffer[];
  layerDigests: string[];
}

/** A small but real image: gzip tar layers with random files, an OCI config and manifest. */
export async function makeImage(layerCount = 2, bytesPerLayer = 64 * 1024, label = 'x'): Promise<TestImage> {
  const layers: Buffer[] = [];
  const diffIds: string[] = [];
  for (let i = 0; i < layerCount; i++) {
    const tar = pack();
    tar.entry({ name: `layer${i}`, type: 'directory', mode: 0o755, mtime: new Date(1000) });
    tar.entry({ name: `layer${i}/data-${label}.bin`, mode: 0o644, mtime: new Date(1000) }, randomBytes(bytesPerLayer));
    tar.finalize();
    const chunks: Buffer[] = [];
    for await (const c of tar) chunks.push(c as Buffer);
    const plain = Buffer.concat(chunks);
    diffIds.push(sha256(plain));
    layers.push(gzipSync(plain, { level: 1 }));
  }
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: ['/bin/true'], Labels: { test: label } },
      rootfs: { type: 'layers', diff_ids: diffIds },
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
      layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(l), size: l.length })),
    }),
  );
  return { manifest, manifestDigest: sha256(manifest), config, configDigest: sha256(config), layers, layerDigests: layers.map((l) => sha256(l)) };
}

/** Writes `image` as an OCI image layout with tag `tag`. */
export async function writeLayout(dir: string, image: TestImage, tag: string): Promise<void> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  for (const blob of [image.config, image.manifest, ...image.layers]) await writeFile(join(dir, 'blobs', 'sha256', sha256(blob).slice(7)), blob);
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: image.manifestDigest, size: image.manifest.length, annotations: { 'org.opencontainers.image.ref.name': tag } }],
    }),
  );
}

/** Pushes a whole image with fetch: blobs, then the manifest by tag. Returns the manifest PUT status. */
export async function pushImage(base: string, repo: string, tag: string, image: TestImage, headers: Record<string, string> = {}): Promise<number> {
  for (const blob of [...image.layers, image.config]) {
    const { status } = await pushBlob(base, repo, blob, headers);
    if (status !== 201) throw new Error(`blob push returned ${status}`);
  }
  const res = await fetch(`${base}/v2/${repo}/manifests/${tag}`, {
    method: 'PUT',
    headers: { ...headers, 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
    body: image.manifest,
  });
  await res.arrayBuffer();
  return res.status;
}

// Programs run without blocking the event loop (an in-process registry must keep serving).
export { runCommand as run, type CommandResult as RunResult } from '../support/command.js';
