// Reading from a registry: manifests (by tag or digest, indexes resolved to a
// platform), configs and blobs, every byte checked against its digest.
import type { Readable } from 'node:stream';
import { MediaType, manifestKind, manifestMediaTypes, type Descriptor, type ImageConfig, type ImageIndex, type ImageManifest } from '../../image/oci.js';
import { formatDockerReference, type DockerReference } from '../../image/reference.js';
import type { ImageHandle } from '../../image/transport.js';
import { repositoryScope } from './auth.js';
import { VerifiedBody, digestOf, verifyBytes } from './digest.js';
import { useHashThread } from './hash-thread.js';
import { RegistryError } from './errors.js';
import { header, readBody, type HttpResponse } from './http.js';
import { DirectBody } from './direct-read.js';
import type { RegistrySession } from './session.js';

export const manifestAccept = manifestMediaTypes.join(', ');
/** Manifests larger than this are refused (distribution's own limit is 4 MiB). */
export const maxManifestBytes = 4 * 1024 * 1024;

export interface FetchedManifest {
  bytes: Buffer;
  digest: string;
  mediaType: string;
}

export function pullScopes(repository: string): string[] {
  return [repositoryScope(repository, ['pull'])];
}

/** GETs a manifest by tag or digest and verifies its digest. */
export async function fetchManifest(session: RegistrySession, repository: string, reference: string, scopes = pullScopes(repository)): Promise<FetchedManifest> {
  const res = await session
    .request({ method: 'GET', path: `/v2/${repository}/manifests/${reference}`, scopes, headers: { Accept: manifestAccept }, expect: [200] })
    .catch((error: unknown) => {
      if (error instanceof RegistryError && error.status === 404) {
        const sep = reference.includes(':') ? '@' : ':';
        throw new RegistryError(`${session.registry}/${repository}${sep}${reference} not found (${error.codes.join(', ') || '404'}): check the name and tag`, 404, error.codes);
      }
      throw error;
    });
  const bytes = await readBody(res, maxManifestBytes);
  const byDigest = reference.includes(':');
  const headerDigest = header(res, 'docker-content-digest');
  let digest: string;
  if (byDigest) {
    verifyBytes(bytes, reference, `manifest ${repository}@${reference}`);
    digest = reference;
  } else if (headerDigest && /^sha(256|512):/.test(headerDigest)) {
    verifyBytes(bytes, headerDigest, `manifest ${repository}:${reference}`);
    digest = headerDigest;
  } else {
    digest = digestOf(bytes);
  }
  let parsed: { mediaType?: string; manifests?: unknown; layers?: unknown };
  try {
    parsed = JSON.parse(bytes.toString('utf8')) as typeof parsed;
  } catch {
    throw new RegistryError(`the manifest of ${repository}:${reference} is not JSON`);
  }
  const contentType = (header(res, 'content-type') ?? '').split(';')[0]!.trim();
  const mediaType = parsed.mediaType || (manifestMediaTypes.includes(contentType) ? contentType : manifestKind(parsed) === 'index' ? MediaType.ociIndex : MediaType.ociManifest);
  return { bytes, digest, mediaType };
}

export function parsePlatform(text: string): { os: string; architecture: string; variant?: string } {
  const parts = text.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !p)) {
    throw new RegistryError(`invalid platform "${text}": use os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8`);
  }
  return { os: parts[0]!, architecture: parts[1]!, variant: parts[2] };
}

export function selectPlatform(index: ImageIndex, platformText: string, what: string): Descriptor {
  const want = parsePlatform(platformText);
  const candidates = index.manifests.filter(
    (m) => m.platform && m.platform.os === want.os && m.platform.architecture === want.architecture && (!want.variant || m.platform.variant === want.variant),
  );
  const pick = candidates.find((m) => !m.platform?.variant || !want.variant || m.platform.variant === want.variant) ?? candidates[0];
  if (!pick) {
    const available = index.manifests
      .filter((m) => m.platform)
      .map((m) => `${m.platform!.os}/${m.platform!.architecture}${m.platform!.variant ? `/${m.platform!.variant}` : ''}`);
    throw new RegistryError(`${what} has no image for ${platformText}; available: ${available.join(', ') || 'none'}. Pick one with --platform`);
  }
  return pick;
}

/** Blobs from this size on are read off the socket directly (direct-read.ts); smaller ones share node:http's connections. */
const BULK_MIN_BYTES = 1024 * 1024;

/** GETs a blob for streaming: read off the socket directly when it is large. */
function requestBlob(session: RegistrySession, repository: string, descriptor: Descriptor, scopes: string[]): Promise<HttpResponse> {
  return session.request({ method: 'GET', path: `/v2/${repository}/blobs/${descriptor.digest}`, scopes, expect: [200], bulk: descriptor.size >= BULK_MIN_BYTES });
}

/** Streams a blob, verifying digest and size; the stream errors on a mismatch. */
export async function openBlob(session: RegistrySession, repository: string, descriptor: Descriptor, scopes = pullScopes(repository)): Promise<Readable> {
  const res = await requestBlob(session, repository, descriptor, scopes);
  const direct = res.body instanceof DirectBody ? res.body : undefined;
  return new VerifiedBody(res.body, descriptor.digest, descriptor.size, `blob ${descriptor.digest} of ${repository}`, undefined, {
    hashThread: useHashThread(descriptor.size, session.hashThread),
    // node:http copies each body chunk out of the socket's buffer; a direct read's chunks are views of a shared
    // slab, unless it is told to read into the thread's pooled memory (when the thread stores the blob).
    ownChunks: !direct,
    readInto: direct && ((memory) => direct.readInto(memory)),
  });
}

/**
 * Streams a blob WITHOUT verifying it: only for consumers that check digest and
 * size themselves (a registry the blob is copied to checks it when the upload
 * completes), so the bytes are not hashed twice.
 */
export async function openBlobUnverified(session: RegistrySession, repository: string, descriptor: Descriptor): Promise<Readable> {
  return (await requestBlob(session, repository, descriptor, pullScopes(repository))).body;
}

export async function fetchBlobBytes(session: RegistrySession, repository: string, descriptor: Descriptor, limit = 64 * 1024 * 1024): Promise<Buffer> {
  return session.withRetry(`blob ${descriptor.digest}`, async () => {
    const res = await session.request({ method: 'GET', path: `/v2/${repository}/blobs/${descriptor.digest}`, scopes: pullScopes(repository), expect: [200] });
    const bytes = await readBody(res, limit);
    verifyBytes(bytes, descriptor.digest, `blob ${descriptor.digest} of ${repository}`);
    return bytes;
  });
}

/**
 * Opens a single-platform image (an index is resolved to the platform, default
 * linux/amd64). With verifyBlobs false its blob streams are not hashed: only
 * for a consumer that checks them itself (a registry receiving them).
 */
export async function openImage(session: RegistrySession, ref: DockerReference, platform = 'linux/amd64', options: { verifyBlobs?: boolean } = {}): Promise<ImageHandle> {
  const repository = ref.repository;
  const what = formatDockerReference(ref);
  let fetched = await fetchManifest(session, repository, ref.digest ?? ref.tag ?? 'latest');
  let doc = JSON.parse(fetched.bytes.toString('utf8')) as ImageManifest | ImageIndex;
  if (manifestKind(doc) === 'index') {
    const chosen = selectPlatform(doc as ImageIndex, platform, what);
    fetched = await fetchManifest(session, repository, chosen.digest);
    doc = JSON.parse(fetched.bytes.toString('utf8')) as ImageManifest | ImageIndex;
    if (manifestKind(doc) !== 'manifest') throw new RegistryError(`${what}: the ${platform} entry of the index is itself an index; weft does not follow nested indexes`);
  }
  const manifest = doc as ImageManifest;
  if (!manifest.config || !Array.isArray(manifest.layers)) throw new RegistryError(`${what}: the manifest has no config or layers; is it an image?`);
  const configBytes = await fetchBlobBytes(session, repository, manifest.config);
  let config: ImageConfig;
  try {
    config = JSON.parse(configBytes.toString('utf8')) as ImageConfig;
  } catch {
    // Artifacts may have non-JSON configs; keep the bytes, present an empty config.
    config = { architecture: '', os: '', rootfs: { type: 'layers', diff_ids: [] } };
  }
  return {
    source: `docker://${what}`,
    manifest,
    manifestBytes: fetched.bytes,
    manifestDigest: fetched.digest,
    manifestMediaType: fetched.mediaType,
    config,
    configBytes,
    openBlob: (descriptor) => (options.verifyBlobs === false ? openBlobUnverified(session, repository, descriptor) : openBlob(session, repository, descriptor)),
    remote: { registry: ref.registry, repository },
  };
}
