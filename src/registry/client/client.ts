// RegistryClient: src/image's RemoteTransport over the OCI distribution API —
// open, push and copy images, tags, referrers, deletes. One RegistrySession
// (scheme, auth, retries) per registry host.
import type { Readable } from 'node:stream';
import { MediaType, manifestKind, type Descriptor, type ImageIndex } from '../../image/oci.js';
import type { DockerReference } from '../../image/reference.js';
import type { ImageHandle, RemoteTransport, TransferProgress } from '../../image/transport.js';
import { repositoryScope } from './auth.js';
import { RegistryError } from './errors.js';
import { HttpClient, discard, header, headerValues, readBody } from './http.js';
import { fetchManifest, manifestAccept, openBlob, openImage, pullScopes, type FetchedManifest } from './pull.js';
import { BlobUploader, pushImage, pushScopes, putManifest, type BlobReport, type PushOptions, type PushResult } from './push.js';
import { RegistrySession, type SessionOptions } from './session.js';
import { BlobLocationCache, defaultBlobCacheFile } from './blobcache.js';

export interface RemoteTransportOptions extends SessionOptions, Omit<PushOptions, 'blobLocations'> {
  /** Hosts to talk to over plain HTTP (loopback hosts always may). */
  insecureRegistries?: string[];
  /**
   * File remembering which repositories hold which blobs, per registry, so pushes
   * mount instead of upload (default ~/.cache/weft/blob-locations.json; false or
   * WEFT_BLOB_CACHE=off disables it).
   */
  blobCache?: string | false;
  /**
   * Blob GETs of 1 MiB or more read off sockets of weft's own rather than
   * through node:http (direct-read.ts): default true; false or
   * WEFT_DIRECT_READ=0 turns it off.
   */
  directRead?: boolean;
}

export class RegistryClient implements RemoteTransport {
  private readonly http: HttpClient;
  private readonly sessions = new Map<string, RegistrySession>();

  private readonly blobLocations?: BlobLocationCache;
  /** Blob-location cache writes under way in the background (see open()). */
  private readonly cacheWrites = new Set<Promise<void>>();

  constructor(private readonly options: RemoteTransportOptions = {}) {
    const env = options.env ?? process.env;
    this.http = new HttpClient({ resolve: options.resolve, ca: options.ca, directRead: options.directRead ?? env.WEFT_DIRECT_READ?.trim() !== '0' });
    if (typeof options.blobCache === 'string') this.blobLocations = new BlobLocationCache(options.blobCache);
    else if (options.blobCache !== false && env.WEFT_BLOB_CACHE !== 'off') this.blobLocations = new BlobLocationCache(env.WEFT_BLOB_CACHE || defaultBlobCacheFile(env));
  }

  session(registry: string): RegistrySession {
    let session = this.sessions.get(registry);
    if (!session) {
      session = new RegistrySession(registry, this.http, this.options);
      this.sessions.set(registry, session);
    }
    return session;
  }

  /**
   * Opens a single-platform image; an index resolves to `platform` (default
   * linux/amd64). Its blob streams check digest and size, unless `verifyBlobs`
   * is false: for a copy to a registry, which checks each blob itself.
   */
  async open(ref: DockerReference, options: { platform?: string; verifyBlobs?: boolean } = {}): Promise<ImageHandle> {
    const image = await openImage(this.session(ref.registry), ref, options.platform, { verifyBlobs: options.verifyBlobs });
    const cache = this.blobLocations;
    if (cache) {
      // Remembered for later pushes (mounts) without the pull waiting for the cache file: reading
      // and rewriting it took 10-30 ms before the first layer was asked for (docs/registry-client.md).
      const digests = [image.manifest.config.digest, ...image.manifest.layers.map((l) => l.digest)];
      const write = cache
        .record(ref.registry, ref.repository, digests)
        .then(() => cache.save())
        .catch(() => undefined) // only a hint: a cache that cannot be written costs uploads later
        .finally(() => this.cacheWrites.delete(write));
      this.cacheWrites.add(write);
    }
    return image;
  }

  /** Resolves once the blob-location cache file holds what this client has seen (a running write keeps the process alive anyway). */
  async flush(): Promise<void> {
    await Promise.all([...this.cacheWrites]);
  }

  async write(image: ImageHandle, ref: DockerReference, progress?: TransferProgress): Promise<{ digest: string; reference: string }> {
    return this.push(image, ref, progress);
  }

  /**
   * Uploads one blob into `ref`'s repository unless it is there already: lets
   * `weft build` push each layer as soon as it is written, while the rest of
   * the image is still being built (the final push then finds it present).
   */
  async uploadBlob(ref: DockerReference, descriptor: Descriptor, open: () => Promise<Readable>): Promise<BlobReport> {
    return new BlobUploader(this.session(ref.registry), ref.repository, pushScopes(ref.repository), this.options).upload(descriptor, open);
  }

  /** Pushes an image with a detailed report (what was sent, skipped, mounted). */
  push(image: ImageHandle, ref: DockerReference, progress?: TransferProgress): Promise<PushResult> {
    return pushImage(this.session(ref.registry), image, ref, progress, { ...this.options, blobLocations: this.blobLocations });
  }

  /** Copies registry to registry without touching disk: mounts within a registry, streams across. */
  async copy(src: DockerReference, dst: DockerReference, options: { platform?: string; progress?: TransferProgress } = {}): Promise<PushResult> {
    const image = await this.open(src, { platform: options.platform, verifyBlobs: false });
    return this.push(image, dst, options.progress);
  }

  /**
   * Copies a whole index (every platform, like skopeo copy --all) registry to
   * registry: each child image by digest, then the index bytes unchanged.
   * A plain manifest is copied as one image.
   */
  async copyAll(src: DockerReference, dst: DockerReference, options: { progress?: TransferProgress } = {}): Promise<PushResult> {
    const top = await this.getManifest(src);
    const doc = JSON.parse(top.bytes.toString('utf8')) as ImageIndex;
    if (manifestKind(doc) !== 'index') return this.copy(src, dst, options);
    const blobs = new Map<string, BlobReport>();
    for (const child of doc.manifests) {
      if (manifestKind({ mediaType: child.mediaType }) === 'index') throw new RegistryError(`${src.repository}: nested indexes are not copied with --all`);
      const image = await this.open({ ...src, tag: undefined, digest: child.digest }, { verifyBlobs: false });
      const pushed = await this.push(image, { ...dst, tag: undefined, digest: child.digest }, options.progress);
      for (const b of pushed.blobs) if (!blobs.has(b.digest)) blobs.set(b.digest, b);
    }
    const reference = dst.tag ?? top.digest;
    const digest = await this.putManifest({ ...dst, tag: reference, digest: undefined }, top.bytes, top.mediaType);
    const list = [...blobs.values()];
    return {
      digest,
      reference: `${dst.registry}/${dst.repository}${dst.tag ? `:${dst.tag}` : ''}@${digest}`,
      mediaType: top.mediaType,
      blobs: list,
      bytesSent: list.reduce((sum, b) => sum + b.bytesSent, 0),
    };
  }

  /** The raw manifest (or index) as stored, digest verified. */
  getManifest(ref: DockerReference): Promise<FetchedManifest> {
    return fetchManifest(this.session(ref.registry), ref.repository, ref.digest ?? ref.tag ?? 'latest');
  }

  /** HEADs a manifest: its digest, media type and size, or undefined when absent. */
  async headManifest(ref: DockerReference): Promise<{ digest?: string; mediaType?: string; size?: number } | undefined> {
    const res = await this.session(ref.registry).request({
      method: 'HEAD',
      path: `/v2/${ref.repository}/manifests/${ref.digest ?? ref.tag ?? 'latest'}`,
      scopes: pullScopes(ref.repository),
      headers: { Accept: manifestAccept },
      expect: [200, 404],
    });
    await discard(res);
    if (res.status === 404) return undefined;
    const length = header(res, 'content-length');
    return { digest: header(res, 'docker-content-digest'), mediaType: header(res, 'content-type'), size: length ? Number(length) : undefined };
  }

  /** Streams a blob, verifying its digest (and size when given). */
  openBlob(registry: string, repository: string, descriptor: Descriptor): Promise<Readable> {
    return openBlob(this.session(registry), repository, descriptor);
  }

  /** Lists all tags, following `Link` pagination (`n` tags per page). */
  async listTags(registry: string, repository: string, pageSize = 1000): Promise<string[]> {
    const session = this.session(registry);
    const tags: string[] = [];
    let path: string | URL = `/v2/${repository}/tags/list?n=${pageSize}`;
    for (let page = 0; page < 10_000; page++) {
      const res = await session.request({ method: 'GET', path, scopes: pullScopes(repository), expect: [200] });
      const body = JSON.parse((await readBody(res)).toString('utf8')) as { tags?: string[] | null };
      tags.push(...(body.tags ?? []));
      const next = nextLink(headerValues(res, 'link'));
      if (!next) return tags;
      path = new URL(next, res.url);
    }
    throw new RegistryError(`${registry}/${repository}: tag listing did not end after 10000 pages`);
  }

  /**
   * Manifests that refer to `digest` (OCI 1.1 referrers API), optionally of one
   * artifactType. Falls back to the `sha256-<hex>` tag schema on registries without the API.
   */
  async referrers(registry: string, repository: string, digest: string, artifactType?: string): Promise<Descriptor[]> {
    const session = this.session(registry);
    const q = artifactType ? `?artifactType=${encodeURIComponent(artifactType)}` : '';
    const res = await session.request({ method: 'GET', path: `/v2/${repository}/referrers/${digest}${q}`, scopes: pullScopes(repository), expect: [200, 404] });
    const body = await readBody(res);
    const contentType = header(res, 'content-type') ?? '';
    let manifests: Descriptor[] | undefined;
    if (res.status === 200 && contentType.startsWith(MediaType.ociIndex)) {
      manifests = (JSON.parse(body.toString('utf8')) as ImageIndex).manifests ?? [];
      const filtered = header(res, 'oci-filters-applied')?.includes('artifactType');
      if (artifactType && !filtered) manifests = manifests.filter((m) => m.artifactType === artifactType);
      return manifests;
    }
    // Fallback: the referrers tag schema.
    const tag = digest.replace(':', '-');
    try {
      const fetched = await fetchManifest(session, repository, tag);
      manifests = (JSON.parse(fetched.bytes.toString('utf8')) as ImageIndex).manifests ?? [];
    } catch (error) {
      if (error instanceof RegistryError && error.status === 404) return [];
      throw error;
    }
    return artifactType ? manifests.filter((m) => m.artifactType === artifactType) : manifests;
  }

  async deleteManifest(ref: DockerReference): Promise<void> {
    const reference = ref.digest ?? ref.tag;
    if (!reference) throw new RegistryError('deleting needs a tag or digest');
    const res = await this.session(ref.registry).request({
      method: 'DELETE',
      path: `/v2/${ref.repository}/manifests/${reference}`,
      scopes: [repositoryScope(ref.repository, ['delete'])],
      expect: [202, 200],
    });
    await discard(res);
  }

  async deleteBlob(registry: string, repository: string, digest: string): Promise<void> {
    const res = await this.session(registry).request({
      method: 'DELETE',
      path: `/v2/${repository}/blobs/${digest}`,
      scopes: [repositoryScope(repository, ['delete'])],
      expect: [202, 200],
    });
    await discard(res);
  }

  /** Pushes a manifest or index as-is (for indexes and artifacts); returns its digest. */
  async putManifest(ref: DockerReference, bytes: Buffer, mediaType: string): Promise<string> {
    const digest = await putManifest(this.session(ref.registry), ref.repository, ref.tag ?? ref.digest ?? '', bytes, mediaType, pushScopes(ref.repository));
    return digest;
  }

  close(): void {
    this.http.close();
  }
}

function nextLink(values: string[]): string | undefined {
  for (const value of values) {
    for (const part of value.split(',')) {
      const m = /<([^>]+)>\s*;\s*rel="?next"?/.exec(part);
      if (m) return m[1];
    }
  }
  return undefined;
}

export function createRemoteTransport(options: RemoteTransportOptions = {}): RegistryClient {
  return new RegistryClient(options);
}
