// Pushing an image: the sequence Jib and go-containerregistry use.
//   for each layer (bounded parallelism, each digest once):
//     HEAD blob -> 200: already there
//     POST uploads/?mount=<digest>&from=<repo> (same registry) -> 201: mounted
//     else POST uploads/ -> 202 + Location; PUT <Location>?digest= with the whole stream
//   then the config the same way, then the manifest (PUT by tag or digest).
// A failed blob restarts from HEAD with a re-opened stream (retries with backoff).
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { Batcher } from '../../image/blobstore.js';
import { mapBoundedLargestFirst } from '../../image/bounded.js';
import { manifestKind, type Descriptor } from '../../image/oci.js';
import { formatDockerReference, type DockerReference } from '../../image/reference.js';
import type { ImageHandle, TransferProgress } from '../../image/transport.js';
import { repositoryScope } from './auth.js';
import { digestOf } from './digest.js';
import { RegistryError } from './errors.js';
import { discard, header, readBody, type HttpResponse } from './http.js';
import type { RegistrySession } from './session.js';
import type { BlobLocationCache } from './blobcache.js';

export type BlobStatus = 'sent' | 'exists' | 'mounted';

export interface PushOptions {
  /** Remembers where blobs live per registry, to mount them into other repositories (see blobcache.ts). */
  blobLocations?: BlobLocationCache;
  /** Layers uploaded at once, the largest first (default 5, like Docker's max-concurrent-uploads). */
  concurrency?: number;
  /** 'put': POST then one streaming PUT (default); 'patch': POST, streaming PATCH, then an empty PUT. */
  uploadMode?: 'put' | 'patch';
}

export interface BlobReport {
  digest: string;
  size: number;
  status: BlobStatus;
  /** Bytes sent on the wire for this blob (0 when it existed or was mounted; counts retries). */
  bytesSent: number;
  mediaType: string;
}

export interface PushResult {
  digest: string;
  reference: string;
  mediaType: string;
  blobs: BlobReport[];
  bytesSent: number;
}

/** Counts bytes as they pass, reporting progress. */
class Counter extends Transform {
  count = 0;
  constructor(private readonly onBytes: (n: number) => void) {
    super();
  }
  override _transform(chunk: Buffer, _e: BufferEncoding, callback: TransformCallback): void {
    this.count += chunk.length;
    this.onBytes(this.count);
    callback(null, chunk);
  }
}

export function pushScopes(repository: string, mountFrom?: string): string[] {
  const scopes = [repositoryScope(repository, ['pull', 'push'])];
  if (mountFrom && mountFrom !== repository) scopes.push(repositoryScope(mountFrom, ['pull']));
  return scopes;
}

export class BlobUploader {
  private readonly inflight = new Map<string, Promise<BlobReport>>();
  constructor(
    private readonly session: RegistrySession,
    private readonly repository: string,
    private readonly scopes: string[],
    private readonly options: PushOptions,
    private readonly progress?: TransferProgress,
  ) {}

  /** Uploads a blob once per push, however often it is asked for. */
  upload(descriptor: Descriptor, open: () => Promise<Readable> | Buffer, mountFrom?: string): Promise<BlobReport> {
    let pending = this.inflight.get(descriptor.digest);
    if (!pending) {
      pending = this.uploadOnce(descriptor, open, mountFrom);
      this.inflight.set(descriptor.digest, pending);
    }
    return pending;
  }

  private async uploadOnce(descriptor: Descriptor, open: () => Promise<Readable> | Buffer, mountFrom?: string): Promise<BlobReport> {
    const { digest, size } = descriptor;
    let bytesSent = 0;
    const report = (status: BlobReport['status']): BlobReport => {
      this.progress?.onBlob?.({ digest, size, sent: status === 'sent' ? size : 0, status });
      return { digest, size, status, bytesSent, mediaType: descriptor.mediaType };
    };
    return this.session.withRetry(`upload ${digest}`, async () => {
      const head = await this.session.request({ method: 'HEAD', path: `/v2/${this.repository}/blobs/${digest}`, scopes: this.scopes, expect: [200, 404], retry: false });
      await discard(head);
      if (head.status === 200) return report('exists');
      let start: HttpResponse;
      if (mountFrom && mountFrom !== this.repository) {
        const q = new URLSearchParams({ mount: digest, from: mountFrom });
        start = await this.session.request({ method: 'POST', path: `/v2/${this.repository}/blobs/uploads/?${q}`, scopes: this.scopes, expect: [201, 202], retry: false });
        await discard(start);
        if (start.status === 201) return report('mounted');
      } else {
        start = await this.session.request({ method: 'POST', path: `/v2/${this.repository}/blobs/uploads/`, scopes: this.scopes, expect: [202], retry: false });
        await discard(start);
      }
      let location = uploadLocation(start);
      const counted = async (): Promise<Readable | Buffer> => {
        const source = await open();
        if (Buffer.isBuffer(source)) {
          bytesSent += source.length;
          this.progress?.onBlob?.({ digest, size, sent: source.length, status: 'sending' });
          return source;
        }
        let last = 0;
        const counter = new Counter((n) => {
          bytesSent += n - last;
          last = n;
          this.progress?.onBlob?.({ digest, size, sent: n, status: 'sending' });
        });
        source.on('error', (error) => counter.destroy(error));
        // Socket chunks of a blob streamed from another registry (16-64 KiB) go out 1 MiB at a
        // time: one socket write each, not 16-64 (file reads are 1 MiB already and pass as they are).
        const batched = new Batcher(1024 * 1024);
        counter.on('error', (error) => batched.destroy(error));
        return source.pipe(counter).pipe(batched);
      };
      if (this.options.uploadMode === 'patch') {
        const patch = await this.session.request({
          method: 'PATCH',
          path: location,
          scopes: this.scopes,
          headers: { 'Content-Type': 'application/octet-stream' },
          body: counted,
          contentLength: size,
          expect: [202],
          retry: false,
        });
        await discard(patch);
        location = uploadLocation(patch);
        location.searchParams.set('digest', digest);
        const put = await this.session.request({ method: 'PUT', path: location, scopes: this.scopes, expect: [201], retry: false });
        await discard(put);
      } else {
        location.searchParams.set('digest', digest);
        const put = await this.session.request({
          method: 'PUT',
          path: location,
          scopes: this.scopes,
          headers: { 'Content-Type': 'application/octet-stream' },
          body: counted,
          contentLength: size,
          expect: [201],
          retry: false,
        });
        await discard(put);
      }
      return report('sent');
    });
  }
}

function uploadLocation(res: HttpResponse): URL {
  const location = header(res, 'location');
  if (!location) throw new RegistryError(`${res.url.host} started an upload without a Location header`, res.status);
  // Relative locations are resolved against the URL of the request that returned them.
  return new URL(location, res.url);
}

/** PUTs a manifest and checks the digest the registry computed. */
export async function putManifest(session: RegistrySession, repository: string, reference: string, bytes: Buffer, mediaType: string, scopes: string[]): Promise<string> {
  return (await putManifestDetailed(session, repository, reference, bytes, mediaType, scopes)).digest;
}

/**
 * OCI 1.1 referrers tag schema: a registry without the referrers API (no
 * OCI-Subject header on the manifest PUT) gets the image index tagged
 * `<alg>-<hex of subject>` updated by the client, as the distribution spec asks.
 */
export async function updateReferrersTag(
  session: RegistrySession,
  repository: string,
  subject: Descriptor,
  referrer: Descriptor,
  scopes: string[],
): Promise<void> {
  const { fetchManifest } = await import('./pull.js');
  const tag = subject.digest.replace(':', '-');
  let index: { schemaVersion: 2; mediaType: string; manifests: Descriptor[] } = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] };
  try {
    const existing = await fetchManifest(session, repository, tag, scopes);
    index = JSON.parse(existing.bytes.toString('utf8')) as typeof index;
    index.manifests ??= [];
  } catch (error) {
    if (!(error instanceof RegistryError && error.status === 404)) throw error;
  }
  if (index.manifests.some((m) => m.digest === referrer.digest)) return;
  index.manifests.push(referrer);
  await putManifestDetailed(session, repository, tag, Buffer.from(JSON.stringify(index)), index.mediaType, scopes);
}

async function putManifestDetailed(
  session: RegistrySession,
  repository: string,
  reference: string,
  bytes: Buffer,
  mediaType: string,
  scopes: string[],
): Promise<{ digest: string; subjectHeader?: string }> {
  const digest = digestOf(bytes);
  const res = await session.request({
    method: 'PUT',
    path: `/v2/${repository}/manifests/${reference}`,
    scopes,
    headers: { 'Content-Type': mediaType },
    body: () => bytes,
    expect: [201, 200],
  });
  await readBody(res).catch(() => undefined);
  const returned = header(res, 'docker-content-digest');
  if (returned && returned.startsWith('sha256:') && returned !== digest) {
    throw new RegistryError(`${session.registry} stored the manifest of ${repository} under ${returned}, expected ${digest}; the registry rewrote it`);
  }
  const subjectHeader = header(res, 'oci-subject');
  // A manifest with a subject on a registry without the referrers API: maintain the fallback tag.
  try {
    const doc = JSON.parse(bytes.toString('utf8')) as { subject?: Descriptor; artifactType?: string; config?: Descriptor; annotations?: Record<string, string> };
    if (doc.subject && !subjectHeader) {
      const referrer: Descriptor = { mediaType, digest, size: bytes.length };
      const artifactType = doc.artifactType ?? doc.config?.mediaType;
      if (artifactType) referrer.artifactType = artifactType;
      if (doc.annotations) referrer.annotations = doc.annotations;
      await updateReferrersTag(session, repository, doc.subject, referrer, scopes);
    }
  } catch (error) {
    if (error instanceof RegistryError) throw error;
  }
  return { digest, subjectHeader };
}

export async function pushImage(
  session: RegistrySession,
  image: ImageHandle,
  ref: DockerReference,
  progress: TransferProgress | undefined,
  options: PushOptions = {},
): Promise<PushResult> {
  const repository = ref.repository;
  if (manifestKind(image.manifest as never) !== 'manifest') throw new RegistryError(`${image.source} is not a single-platform image manifest`);
  // Where each blob can be mounted from: the image's own repository (an image read
  // from a registry), or per blob for images built on a registry base (blobOrigin).
  const layers = image.manifest.layers.filter((l) => !(l.urls && l.urls.length)); // foreign layers stay where they are
  const cached = new Map<string, string>();
  if (options.blobLocations) {
    for (const d of [...layers, image.manifest.config]) {
      const repo = await options.blobLocations.lookup(ref.registry, d.digest, repository);
      if (repo) cached.set(d.digest, repo);
    }
  }
  const mountSource = (digest: string): string | undefined => {
    const origin = image.blobOrigin?.(digest) ?? image.remote;
    if (origin && origin.registry === ref.registry && origin.repository !== repository) return origin.repository;
    return cached.get(digest);
  };
  const mountRepos = new Set([...layers, image.manifest.config].map((d) => mountSource(d.digest)).filter((r): r is string => r !== undefined));
  const scopes = [...pushScopes(repository), ...[...mountRepos].map((r) => repositoryScope(r, ['pull']))];
  const uploader = new BlobUploader(session, repository, scopes, options, progress);
  // The largest layers go first (the longest upload starts at once); reports stay in manifest order.
  const reports = await mapBoundedLargestFirst(layers, options.concurrency ?? 5, (layer) => uploader.upload(layer, () => image.openBlob(layer), mountSource(layer.digest)));
  // The config goes after the layers, so a registry never sees a config whose layers are missing.
  reports.push(await uploader.upload(image.manifest.config, () => image.configBytes, mountSource(image.manifest.config.digest)));
  const manifestDigest = digestOf(image.manifestBytes);
  if (ref.digest && ref.digest !== manifestDigest) {
    throw new RegistryError(`cannot push ${image.source} as ${formatDockerReference(ref)}: its manifest digest is ${manifestDigest}`);
  }
  const mediaType = image.manifest.mediaType ?? image.manifestMediaType;
  await putManifest(session, repository, ref.tag ?? manifestDigest, image.manifestBytes, mediaType, scopes);
  const unique = new Map(reports.map((r) => [r.digest, r]));
  const blobs = [...unique.values()];
  if (options.blobLocations) {
    await options.blobLocations.record(ref.registry, repository, blobs.map((b) => b.digest));
    await options.blobLocations.save();
  }
  return {
    digest: manifestDigest,
    reference: `${ref.registry}/${repository}${ref.tag ? `:${ref.tag}` : ''}@${manifestDigest}`,
    mediaType,
    blobs,
    bytesSent: blobs.reduce((sum, b) => sum + b.bytesSent, 0),
  };
}
