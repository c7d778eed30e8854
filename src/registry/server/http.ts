// HTTP routing of the OCI distribution spec v1.1 on node:http.
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { MediaType } from '../../image/oci.js';
import type { Htpasswd } from './auth.js';
import { RegistryError } from './errors.js';
import { guardBody, isBodyTimeout, UploadSlots, clientKey, type BodyPolicy } from './limits.js';
import { KeyedMutex, type RwLock } from './lock.js';
import { isTag, parseDigest, validateName, type ParsedDigest } from './names.js';
import type { ReferrerDescriptor, Storage } from './storage.js';

export interface HandlerOptions {
  storage: Storage;
  lock: RwLock;
  logger: Logger;
  htpasswd?: Htpasswd;
  /** With htpasswd: reads (GET, HEAD) need no credentials, writes do (a registry nodes pull from). */
  anonymousPull?: boolean;
  realm: string;
  maxManifestBytes: number;
  /** Refuse every write with 403 DENIED. */
  readOnly?: boolean;
  /** Uploads streaming at once before new ones get 429 TOOMANYREQUESTS. */
  maxConcurrentUploads: number;
  /** Uploads one client (peer address, IPv6 /64) may stream at once. */
  maxUploadsPerClient: number;
  /** Stalled and trickling request bodies are cut off with 408. */
  body: BodyPolicy;
  /** Manifest and blob DELETE (off: 405 UNSUPPORTED, as in the distribution registry). */
  enableDelete?: boolean;
  /**
   * Bytes of a refused request's body read and discarded before answering, so
   * the client (still sending) reads the error instead of a connection reset.
   */
  maxDiscardBytes?: number;
}

const knownManifestTypes = new Set<string>([MediaType.ociManifest, MediaType.ociIndex, MediaType.dockerManifest, MediaType.dockerManifestList]);

const routes = {
  uploads: /^\/v2\/(.+)\/blobs\/uploads\/?$/,
  upload: /^\/v2\/(.+)\/blobs\/uploads\/([^/]+)$/,
  blob: /^\/v2\/(.+)\/blobs\/([^/]+)$/,
  manifest: /^\/v2\/(.+)\/manifests\/([^/]+)$/,
  tags: /^\/v2\/(.+)\/tags\/list$/,
  referrers: /^\/v2\/(.+)\/referrers\/([^/]+)$/,
};

function send(res: ServerResponse, status: number, headers: Record<string, string | number> = {}, body?: string | Buffer): void {
  const payload = body === undefined ? undefined : typeof body === 'string' ? Buffer.from(body) : body;
  res.writeHead(status, { 'Docker-Distribution-API-Version': 'registry/2.0', 'Content-Length': payload?.length ?? 0, ...headers });
  res.end(payload);
}

function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string | number> = {}): void {
  send(res, status, { 'Content-Type': 'application/json', ...headers }, JSON.stringify(value));
}

function contentLength(req: IncomingMessage): number | undefined {
  const raw = req.headers['content-length'];
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 0) throw new RegistryError('SIZE_INVALID', 'invalid Content-Length');
  return value;
}

/** Content-Range of an upload chunk: "<start>-<end>" (also accepts the "bytes " prefix some clients send). */
function uploadRange(req: IncomingMessage): { start: number; end: number } | undefined {
  const raw = req.headers['content-range'];
  if (!raw) return undefined;
  const match = /^(?:bytes[ =])?(\d+)-(\d+)(?:\/(?:\d+|\*))?$/.exec(raw.trim());
  if (!match) throw new RegistryError('BLOB_UPLOAD_INVALID', `invalid Content-Range "${raw}": expected <start>-<end>`, { status: 416 });
  const start = Number(match[1]);
  const end = Number(match[2]);
  if (end < start) throw new RegistryError('BLOB_UPLOAD_INVALID', `invalid Content-Range "${raw}": end before start`, { status: 416 });
  return { start, end };
}

async function readBody(req: IncomingMessage, body: () => Readable, limit: number): Promise<Buffer> {
  const declared = contentLength(req);
  if (declared !== undefined && declared > limit) {
    throw new RegistryError('MANIFEST_INVALID', `manifest is ${declared} bytes; the limit is ${limit}`, { status: 413, detail: { limit } });
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body()) {
    total += (chunk as Buffer).length;
    if (total > limit) throw new RegistryError('MANIFEST_INVALID', `manifest exceeds the limit of ${limit} bytes`, { status: 413, detail: { limit } });
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

async function drain(body: Readable): Promise<void> {
  for await (const _ of body) {
    /* discard */
  }
}

/**
 * Decodes a %-escaped path parameter; malformed escapes such as "%ZZ" are the
 * client's mistake (400 with `code`), not an internal error.
 */
function decodeParam(value: string, code: 'DIGEST_INVALID' | 'MANIFEST_INVALID' | 'NAME_INVALID'): string {
  try {
    return decodeURIComponent(value);
  } catch {
    throw new RegistryError(code, `malformed %-escape in "${value}"`, { status: 400, detail: { value } });
  }
}

function digestOf(algorithm: string, body: Buffer): string {
  return `${algorithm}:${createHash(algorithm).update(body).digest('hex')}`;
}

interface DescriptorLike {
  mediaType?: unknown;
  digest?: unknown;
  size?: unknown;
  urls?: unknown;
}

function checkDescriptor(value: unknown, where: string): { mediaType: string; digest: ParsedDigest; size: number; urls?: unknown } {
  const d = value as DescriptorLike | null;
  if (!d || typeof d !== 'object' || typeof d.mediaType !== 'string' || typeof d.digest !== 'string' || typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw new RegistryError('MANIFEST_INVALID', `${where} is not a valid descriptor (needs mediaType, digest, size)`);
  }
  let digest: ParsedDigest;
  try {
    digest = parseDigest(d.digest);
  } catch (error) {
    throw new RegistryError('MANIFEST_INVALID', `${where}: ${(error as Error).message}`);
  }
  return { mediaType: d.mediaType, digest, size: d.size, urls: d.urls };
}

function isNonDistributable(mediaType: string, urls: unknown): boolean {
  return mediaType.includes('nondistributable') || mediaType.includes('foreign') || (Array.isArray(urls) && urls.length > 0);
}

export function createHandler(options: HandlerOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const { storage, lock, logger, htpasswd } = options;
  const slots = new UploadSlots(options.maxConcurrentUploads, options.maxUploadsPerClient);
  /** Serialises a repository's deletes with its manifest pushes (reference checks stay true until the commit). */
  const repoMutex = new KeyedMutex();
  const maxDiscardBytes = options.maxDiscardBytes ?? 16 * 1024 * 1024;
  const bodyOf = (req: IncomingMessage) => () => guardBody(req, options.body);

  async function authorize(req: IncomingMessage): Promise<void> {
    if (!htpasswd) return;
    // Anonymous reads, except the /v2/ ping: it still challenges, because that is how clients
    // (containers/image, docker) learn that they must send their credentials for a push.
    const ping = /^\/v2\/?(\?|$)/.test(req.url ?? '');
    if (options.anonymousPull && (req.method === 'GET' || req.method === 'HEAD') && !ping) return;
    if (await htpasswd.check(req.headers.authorization, clientKey(req))) return;
    throw new RegistryError('UNAUTHORIZED', 'authentication required: log in with a user of the registry\'s htpasswd file', {
      headers: { 'WWW-Authenticate': `Basic realm="${options.realm}", charset="UTF-8"` },
    });
  }

  // ---------- blobs ----------
  async function getBlob(req: IncomingMessage, res: ServerResponse, name: string, ref: string): Promise<void> {
    const d = parseDigest(ref);
    const size = await storage.repoBlobSize(name, d);
    if (size === null) throw new RegistryError('BLOB_UNKNOWN', 'blob unknown to this repository', { detail: { digest: d.digest } });
    const headers: Record<string, string | number> = {
      'Content-Type': 'application/octet-stream',
      'Docker-Content-Digest': d.digest,
      'Accept-Ranges': 'bytes',
      ETag: `"${d.digest}"`,
      'Cache-Control': 'max-age=31536000',
    };
    if (req.method === 'HEAD') {
      await storage.touchBlob(d);
      send(res, 200, { ...headers, 'Content-Length': size });
      return;
    }
    let status = 200;
    let range: { start: number; end: number } | undefined;
    const rangeHeader = req.headers.range;
    if (rangeHeader) {
      const match = /^bytes=(\d*)-(\d*)$/.exec(rangeHeader.trim());
      if (match && (match[1] !== '' || match[2] !== '')) {
        let start: number;
        let end: number;
        if (match[1] === '') {
          start = Math.max(size - Number(match[2]), 0);
          end = size - 1;
        } else {
          start = Number(match[1]);
          end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
        }
        if (start >= size || start > end) {
          send(res, 416, { 'Content-Range': `bytes */${size}` });
          return;
        }
        range = { start, end };
        status = 206;
        headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
      }
    }
    const length = range ? range.end - range.start + 1 : size;
    const stream = storage.openBlob(d, range);
    await new Promise<void>((resolve) => {
      stream.once('open', () => {
        res.writeHead(status, { 'Docker-Distribution-API-Version': 'registry/2.0', ...headers, 'Content-Length': length });
        stream.pipe(res);
      });
      stream.once('error', (error) => {
        if (!res.headersSent) send(res, 404, { 'Content-Type': 'application/json' }, new RegistryError('BLOB_UNKNOWN', 'blob unknown').body());
        else res.destroy(error);
        resolve();
      });
      stream.once('end', () => resolve());
      res.once('close', () => {
        stream.destroy();
        resolve();
      });
    });
  }

  async function deleteBlob(res: ServerResponse, name: string, ref: string): Promise<void> {
    const d = parseDigest(ref);
    await repoMutex.run(name, async () => {
      // A blob a manifest still names stays: deleting it would leave that manifest unpullable.
      const users = await storage.manifestsReferencing(name, d);
      if (users.length > 0) {
        throw new RegistryError('DENIED', `blob ${d.digest} is referenced by ${users.length} manifest(s) in ${name} (${users.slice(0, 3).join(', ')}${users.length > 3 ? ', ...' : ''}): delete those manifests first`, { status: 409, detail: { digest: d.digest, manifests: users } });
      }
      if (!(await storage.unlinkBlob(name, d))) throw new RegistryError('BLOB_UNKNOWN', 'blob unknown to this repository', { detail: { digest: d.digest } });
    });
    send(res, 202);
  }

  function blobCreated(res: ServerResponse, name: string, d: ParsedDigest): void {
    send(res, 201, { Location: `/v2/${name}/blobs/${d.digest}`, 'Docker-Content-Digest': d.digest });
  }

  async function postUpload(req: IncomingMessage, res: ServerResponse, name: string, query: URLSearchParams): Promise<void> {
    const mount = query.get('mount');
    if (mount !== null) {
      const d = parseDigest(mount);
      const from = query.get('from');
      const mounted = await lock.read(async () => {
        let available: number | null;
        if (from) {
          validateName(from);
          available = await storage.repoBlobSize(from, d);
        } else {
          available = await storage.blobSize(d);
        }
        if (available === null) return false;
        await storage.touchBlob(d);
        await storage.linkBlob(name, d);
        return true;
      });
      if (mounted) {
        await drain(bodyOf(req)());
        blobCreated(res, name, d);
        return;
      }
      // not mountable: fall back to an ordinary upload session (202)
    }
    const digest = query.get('digest');
    if (digest !== null) {
      const d = parseDigest(digest);
      const length = contentLength(req);
      await storage.putBlob(name, d, bodyOf(req)(), length, (commit) => lock.read(commit));
      blobCreated(res, name, d);
      return;
    }
    await drain(bodyOf(req)());
    const id = await storage.createUpload(name);
    const session = await storage.getUpload(name, id);
    send(res, 202, storage.uploadHeaders(session));
  }

  async function patchUpload(req: IncomingMessage, res: ServerResponse, name: string, id: string): Promise<void> {
    const session = await storage.getUpload(name, id);
    await storage.appendUpload(session, bodyOf(req)(), uploadRange(req), contentLength(req));
    send(res, 202, storage.uploadHeaders(session));
  }

  async function putUpload(req: IncomingMessage, res: ServerResponse, name: string, id: string, query: URLSearchParams): Promise<void> {
    const session = await storage.getUpload(name, id);
    const digest = query.get('digest');
    if (digest === null) throw new RegistryError('DIGEST_INVALID', 'the final PUT of an upload needs ?digest=<algorithm:hex>');
    const d = parseDigest(digest);
    const length = contentLength(req);
    const range = uploadRange(req);
    if (range || (length !== undefined && length > 0) || (length === undefined && req.headers['transfer-encoding'])) {
      await storage.appendUpload(session, bodyOf(req)(), range, length);
    } else {
      await drain(bodyOf(req)());
    }
    await lock.read(() => storage.finishUpload(session, d));
    blobCreated(res, name, d);
  }

  async function getUploadStatus(res: ServerResponse, name: string, id: string): Promise<void> {
    const session = await storage.getUpload(name, id);
    send(res, 204, storage.uploadHeaders(session));
  }

  async function cancelUpload(res: ServerResponse, name: string, id: string): Promise<void> {
    const session = await storage.getUpload(name, id);
    await storage.dropSession(session);
    send(res, 204);
  }

  // ---------- manifests ----------
  async function resolveReference(name: string, ref: string): Promise<ParsedDigest> {
    if (ref.includes(':')) return parseDigest(ref);
    if (!isTag(ref)) throw new RegistryError('MANIFEST_INVALID', `invalid tag "${ref}": up to 128 of [A-Za-z0-9_.-], not starting with . or -`, { status: 400 });
    const d = await storage.resolveTag(name, ref);
    if (!d) throw new RegistryError('MANIFEST_UNKNOWN', `manifest unknown: no tag "${ref}" in ${name}`, { detail: { tag: ref } });
    return d;
  }

  async function getManifest(req: IncomingMessage, res: ServerResponse, name: string, ref: string): Promise<void> {
    let d: ParsedDigest;
    try {
      d = await resolveReference(name, ref);
    } catch (error) {
      // a malformed digest cannot name a manifest here: 404 as for any unknown manifest
      if (error instanceof RegistryError && error.code === 'DIGEST_INVALID') throw new RegistryError('MANIFEST_UNKNOWN', error.message, { detail: { reference: ref } });
      throw error;
    }
    const manifest = await storage.getManifest(name, d);
    if (!manifest) throw new RegistryError('MANIFEST_UNKNOWN', `manifest unknown: ${ref} is not in ${name}`, { detail: { reference: ref } });
    const headers = { 'Content-Type': manifest.mediaType, 'Docker-Content-Digest': manifest.digest, ETag: `"${manifest.digest}"` };
    if (req.method === 'HEAD') send(res, 200, { ...headers, 'Content-Length': manifest.body.length });
    else send(res, 200, headers, manifest.body);
  }

  async function putManifest(req: IncomingMessage, res: ServerResponse, name: string, ref: string, query: URLSearchParams): Promise<void> {
    const byDigest = ref.includes(':');
    const refDigest = byDigest ? parseDigest(ref) : undefined;
    if (!byDigest && !isTag(ref)) throw new RegistryError('MANIFEST_INVALID', `invalid tag "${ref}": up to 128 of [A-Za-z0-9_.-], not starting with . or -`);
    const extraTags = query.getAll('tag');
    for (const tag of extraTags) if (!isTag(tag)) throw new RegistryError('MANIFEST_INVALID', `invalid tag "${tag}" in ?tag=`);
    const body = await readBody(req, bodyOf(req), options.maxManifestBytes);
    const digest = parseDigest(digestOf(refDigest?.algorithm ?? 'sha256', body));
    if (refDigest && digest.digest !== refDigest.digest) {
      throw new RegistryError('DIGEST_INVALID', `manifest content has digest ${digest.digest}, not ${refDigest.digest}`, { detail: { expected: refDigest.digest, actual: digest.digest } });
    }
    let doc: Record<string, unknown>;
    try {
      doc = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
    } catch {
      throw new RegistryError('MANIFEST_INVALID', 'manifest is not valid JSON');
    }
    if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new RegistryError('MANIFEST_INVALID', 'manifest must be a JSON object');
    if (doc.schemaVersion !== 2) throw new RegistryError('MANIFEST_INVALID', 'only schemaVersion 2 manifests (OCI or Docker schema 2) are accepted');
    const headerType = (req.headers['content-type'] ?? '').split(';')[0].trim();
    const bodyType = typeof doc.mediaType === 'string' ? doc.mediaType : undefined;
    if (bodyType && knownManifestTypes.has(headerType) && bodyType !== headerType) {
      throw new RegistryError('MANIFEST_INVALID', `Content-Type ${headerType} does not match the manifest's mediaType ${bodyType}`);
    }
    let mediaType = knownManifestTypes.has(headerType) ? headerType : bodyType;
    if (!mediaType) mediaType = Array.isArray(doc.manifests) ? MediaType.ociIndex : MediaType.ociManifest;
    if (!knownManifestTypes.has(mediaType)) {
      throw new RegistryError('MANIFEST_INVALID', `unsupported manifest media type ${mediaType}: use an OCI or Docker schema 2 manifest or index`);
    }
    const isIndex = mediaType === MediaType.ociIndex || mediaType === MediaType.dockerManifestList;
    const subject = doc.subject !== undefined ? checkDescriptor(doc.subject, 'subject') : undefined;

    await repoMutex.run(name, () => lock.read(async () => {
      const missing: string[] = [];
      if (isIndex) {
        if (!Array.isArray(doc.manifests)) throw new RegistryError('MANIFEST_INVALID', 'an index needs a "manifests" array');
        for (const [i, entry] of (doc.manifests as unknown[]).entries()) {
          const child = checkDescriptor(entry, `manifests[${i}]`);
          if (!(await storage.manifestLink(name, child.digest)) && (await storage.repoBlobSize(name, child.digest)) === null) missing.push(child.digest.digest);
        }
      } else {
        const config = checkDescriptor(doc.config, 'config');
        if (!Array.isArray(doc.layers)) throw new RegistryError('MANIFEST_INVALID', 'an image manifest needs a "layers" array');
        const layers = (doc.layers as unknown[]).map((layer, i) => checkDescriptor(layer, `layers[${i}]`));
        for (const blob of [config, ...layers]) {
          if (isNonDistributable(blob.mediaType, blob.urls)) continue;
          const size = await storage.repoBlobSize(name, blob.digest);
          if (size === null) missing.push(blob.digest.digest);
          else if (size !== blob.size) throw new RegistryError('MANIFEST_INVALID', `descriptor of ${blob.digest.digest} says ${blob.size} bytes but the blob has ${size}`);
        }
      }
      if (missing.length > 0) {
        throw new RegistryError('MANIFEST_BLOB_UNKNOWN', `manifest references content not in ${name}: push these first: ${missing.join(', ')}`, { detail: { digests: missing } });
      }
      let referrer: ReferrerDescriptor | undefined;
      if (subject) {
        const artifactType = typeof doc.artifactType === 'string' ? doc.artifactType : !isIndex ? (doc.config as { mediaType?: string }).mediaType : undefined;
        referrer = { mediaType, digest: digest.digest, size: body.length };
        if (artifactType) referrer.artifactType = artifactType;
        if (doc.annotations && typeof doc.annotations === 'object') referrer.annotations = doc.annotations as Record<string, string>;
      }
      const tags = byDigest ? extraTags : [ref, ...extraTags];
      await storage.putManifest(name, digest, body, mediaType!, tags, subject?.digest, referrer);
    }));
    const headers: Record<string, string> = { Location: `/v2/${name}/manifests/${digest.digest}`, 'Docker-Content-Digest': digest.digest };
    if (subject) headers['OCI-Subject'] = subject.digest.digest;
    if (extraTags.length > 0) headers['OCI-Tag'] = extraTags.join(', ');
    send(res, 201, headers);
  }

  async function deleteManifest(res: ServerResponse, name: string, ref: string): Promise<void> {
    if (!ref.includes(':')) {
      if (!isTag(ref)) throw new RegistryError('MANIFEST_INVALID', `invalid tag "${ref}"`);
      if (!(await storage.deleteTag(name, ref))) throw new RegistryError('MANIFEST_UNKNOWN', `no tag "${ref}" in ${name}`, { detail: { tag: ref } });
      send(res, 202);
      return;
    }
    const d = parseDigest(ref);
    await repoMutex.run(name, async () => {
      const manifest = await storage.getManifest(name, d);
      if (!manifest) throw new RegistryError('MANIFEST_UNKNOWN', `manifest ${ref} is not in ${name}`, { detail: { digest: ref } });
      // A child of an index stays while the index does: deleting it would leave the index pointing at nothing.
      const users = await storage.manifestsReferencing(name, d);
      if (users.length > 0) {
        throw new RegistryError('DENIED', `manifest ${d.digest} is a child of ${users.length} index(es) in ${name} (${users.slice(0, 3).join(', ')}${users.length > 3 ? ', ...' : ''}): delete those first`, { status: 409, detail: { digest: d.digest, manifests: users } });
      }
      let subject: ParsedDigest | undefined;
      try {
        const doc = JSON.parse(manifest.body.toString('utf8')) as { subject?: { digest?: string } };
        if (typeof doc.subject?.digest === 'string') subject = parseDigest(doc.subject.digest);
      } catch {
        /* no subject */
      }
      await storage.deleteManifest(name, d, subject);
    });
    send(res, 202);
  }

  // ---------- discovery ----------
  async function listTags(res: ServerResponse, name: string, query: URLSearchParams): Promise<void> {
    if (!(await storage.repoExists(name))) throw new RegistryError('NAME_UNKNOWN', `repository ${name} is not known to this registry`, { detail: { name } });
    let tags = await storage.listTags(name);
    const last = query.get('last');
    if (last) tags = tags.filter((tag) => tag > last);
    const headers: Record<string, string> = {};
    const nRaw = query.get('n');
    if (nRaw !== null && nRaw !== '') {
      const n = Number(nRaw);
      if (!Number.isSafeInteger(n) || n < 0) throw new RegistryError('UNSUPPORTED', 'n must be a non-negative integer', { status: 400 });
      if (tags.length > n) {
        tags = tags.slice(0, n);
        if (n > 0) headers.Link = `</v2/${name}/tags/list?n=${n}&last=${encodeURIComponent(tags[tags.length - 1])}>; rel="next"`;
      }
    }
    sendJson(res, 200, { name, tags }, headers);
  }

  async function listReferrers(res: ServerResponse, name: string, ref: string, query: URLSearchParams): Promise<void> {
    const subject = parseDigest(ref);
    let manifests = await storage.listReferrers(name, subject);
    const headers: Record<string, string> = {};
    const artifactType = query.get('artifactType');
    if (artifactType) {
      manifests = manifests.filter((m) => m.artifactType === artifactType);
      headers['OCI-Filters-Applied'] = 'artifactType';
    }
    send(res, 200, { 'Content-Type': MediaType.ociIndex, ...headers }, JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests }));
  }

  async function catalog(res: ServerResponse, query: URLSearchParams): Promise<void> {
    let repositories = await storage.listRepositories();
    const last = query.get('last');
    if (last) repositories = repositories.filter((r) => r > last);
    const headers: Record<string, string> = {};
    const n = Number(query.get('n') ?? 'NaN');
    if (Number.isSafeInteger(n) && n >= 0 && repositories.length > n) {
      repositories = repositories.slice(0, n);
      if (n > 0) headers.Link = `</v2/_catalog?n=${n}&last=${encodeURIComponent(repositories[repositories.length - 1])}>; rel="next"`;
    }
    sendJson(res, 200, { repositories }, headers);
  }

  function methodNotAllowed(): never {
    throw new RegistryError('UNSUPPORTED', 'method not allowed on this endpoint', { status: 405 });
  }

  function deletesDisabled(): never {
    throw new RegistryError('UNSUPPORTED', 'deletes are disabled on this registry: start it with --enable-delete to allow them', { status: 405 });
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = req.url ?? '/';
    const q = raw.indexOf('?');
    // The raw path is used on purpose: no "." or ".." normalisation, so "a/../b" is rejected as NAME_INVALID.
    const path = q < 0 ? raw : raw.slice(0, q);
    const query = new URLSearchParams(q < 0 ? '' : raw.slice(q + 1));
    const method = req.method ?? 'GET';

    if (!path.startsWith('/v2')) {
      send(res, 404, { 'Content-Type': 'application/json' }, new RegistryError('NAME_UNKNOWN', 'not a registry endpoint: the API lives under /v2/', { status: 404 }).body());
      return;
    }
    await authorize(req);
    if (options.readOnly && method !== 'GET' && method !== 'HEAD') {
      throw new RegistryError('DENIED', 'this registry is read-only');
    }
    if (path === '/v2/' || path === '/v2') {
      sendJson(res, 200, {});
      return;
    }
    if (path === '/v2/_catalog') {
      if (method !== 'GET') methodNotAllowed();
      await catalog(res, query);
      return;
    }
    let m: RegExpExecArray | null;
    // Bounds the uploads streaming at once, overall and per client; the rest are told to retry (429 + Retry-After).
    const bounded = (fn: () => Promise<void>) => slots.run(clientKey(req), fn);
    if ((m = routes.uploads.exec(path))) {
      const name = validateName(m[1]);
      if (method !== 'POST') methodNotAllowed();
      return bounded(() => postUpload(req, res, name, query));
    }
    if ((m = routes.upload.exec(path))) {
      const name = validateName(m[1]);
      const id = m[2];
      switch (method) {
        case 'PATCH':
          return bounded(() => patchUpload(req, res, name, id));
        case 'PUT':
          return bounded(() => putUpload(req, res, name, id, query));
        case 'GET':
          return getUploadStatus(res, name, id);
        case 'DELETE':
          return cancelUpload(res, name, id);
        default:
          methodNotAllowed();
      }
    }
    if ((m = routes.blob.exec(path))) {
      const name = validateName(m[1]);
      const ref = decodeParam(m[2], 'DIGEST_INVALID');
      if (method === 'GET' || method === 'HEAD') return getBlob(req, res, name, ref);
      if (method === 'DELETE') return options.enableDelete ? deleteBlob(res, name, ref) : deletesDisabled();
      methodNotAllowed();
    }
    if ((m = routes.manifest.exec(path))) {
      const name = validateName(m[1]);
      const ref = decodeParam(m[2], 'MANIFEST_INVALID');
      if (method === 'GET' || method === 'HEAD') return getManifest(req, res, name, ref);
      if (method === 'PUT') return putManifest(req, res, name, ref, query);
      if (method === 'DELETE') return options.enableDelete ? deleteManifest(res, name, ref) : deletesDisabled();
      methodNotAllowed();
    }
    if ((m = routes.tags.exec(path))) {
      const name = validateName(m[1]);
      if (method !== 'GET') methodNotAllowed();
      return listTags(res, name, query);
    }
    if ((m = routes.referrers.exec(path))) {
      const name = validateName(m[1]);
      if (method !== 'GET') methodNotAllowed();
      return listReferrers(res, name, decodeParam(m[2], 'DIGEST_INVALID'), query);
    }
    // /v2/<something> that matches no endpoint: say so, naming the likely mistake.
    const name = path.slice(4).split('/')[0] ?? '';
    throw new RegistryError(name.includes('..') ? 'NAME_INVALID' : 'NAME_UNKNOWN', 'unknown endpoint or invalid repository name', { status: name.includes('..') ? 400 : 404 });
  }

  /**
   * Reads and drops what is left of a refused request's body (at most
   * maxDiscardBytes, under the body timeouts). True when the body ended, so the
   * answer can be read by a client that sends its whole body before reading.
   */
  async function discardRest(req: IncomingMessage): Promise<boolean> {
    const declared = contentLength(req);
    if (declared !== undefined && declared > maxDiscardBytes) return false;
    let seen = 0;
    try {
      for await (const chunk of guardBody(req, options.body)) {
        seen += (chunk as Buffer).length;
        if (seen > maxDiscardBytes) return false;
      }
      return true;
    } catch {
      return false;
    }
  }

  async function answerError(req: IncomingMessage, res: ServerResponse, error: unknown): Promise<void> {
    let registryError: RegistryError;
    if (error instanceof RegistryError) {
      registryError = error;
    } else {
      logger.error({ err: error, method: req.method, url: req.url }, 'request failed');
      registryError = new RegistryError('UNSUPPORTED', `internal error: ${(error as Error)?.message ?? String(error)}`, { status: 500 });
    }
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    if (!req.complete && !req.destroyed && !isBodyTimeout(error) && registryError.status < 500) await discardRest(req);
    if (res.destroyed) return;
    // the body of a refused request may still be arriving: don't reuse the connection
    if (!req.complete) res.shouldKeepAlive = false;
    const headers: Record<string, string> = { 'Content-Type': 'application/json', ...registryError.headers };
    send(res, registryError.status, headers, req.method === 'HEAD' ? undefined : registryError.body());
  }

  return (req, res) => {
    const started = Date.now();
    // A client that drops the connection makes node emit 'error' on the request; while
    // nothing reads the body yet (e.g. during an await before it), that error would be
    // uncaught and end the process. Body readers get it through their own listeners.
    req.on('error', () => undefined);
    route(req, res)
      .catch((error: unknown) => answerError(req, res, error))
      .catch((error: unknown) => {
        logger.error({ err: error, method: req.method, url: req.url }, 'answering an error failed');
        res.destroy();
      })
      .finally(() => {
        logger.debug({ method: req.method, url: req.url, status: res.statusCode, ms: Date.now() - started }, 'request');
      });
  };
}
