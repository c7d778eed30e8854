// OCI image layout directories (image-spec image-layout.md): `oci-layout`,
// `index.json` whose entries carry `org.opencontainers.image.ref.name`, and
// `blobs/sha256/<hex>`. Writing adds to an existing layout without touching
// other tags: blobs are renamed into place, then index.json is re-read,
// changed and atomically replaced under a lock file, so parallel writers keep
// every tag; a new layout is assembled in a temp directory and renamed into
// place. Reading checks every blob against the digest that names it.
import { createReadStream, existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { BlobStore, digestHex, makeDirectories, tempName, verifiedStream, verifyBlobBytes, writeFileAtomic } from './blobstore.js';
import { isValidOciRefName } from './reference.js';
import { MediaType, manifestKind, type Descriptor, type ImageIndex, type Platform } from './oci.js';
import { StaticImage, selectPlatform, parsePlatform } from './image.js';
import type { ImageHandle } from './transport.js';
import { mapBoundedLargestFirst } from './bounded.js';

export const REF_NAME = 'org.opencontainers.image.ref.name';

export class LayoutError extends Error {
  override name = 'LayoutError';
}

async function exists(p: string): Promise<boolean> {
  return fs.stat(p).then(
    () => true,
    () => false,
  );
}

/** Blobs fetched at once (a JVM image has a handful of layers: all of them, plus the config). */
const BLOB_FETCHES_AT_ONCE = 6;

/**
 * Copies every blob of `image` into `store`, verifying digests; skips blobs
 * already there. Blobs weft wrote itself (image.blobFile) are copied by the
 * kernel without hashing them again; streams that verify themselves (a
 * registry's blobs) are hashed once, by the stream. A few blobs at a time: one
 * large layer no longer holds up the small ones behind it (a pull from a
 * registry fetches up to 6 blobs at once, the largest first).
 */
export async function copyBlobs(image: ImageHandle, store: BlobStore): Promise<void> {
  // The largest layers first: the longest transfer starts at once, and the small ones fill in beside it.
  await mapBoundedLargestFirst([image.manifest.config, ...image.manifest.layers], BLOB_FETCHES_AT_ONCE, async (d) => {
    if (await store.has(d.digest, d.size)) return;
    if (d.digest === image.manifest.config.digest) {
      // The config's bytes were read (and checked) when the image was opened: no second fetch.
      verifyBlobBytes(image.configBytes, d, `${image.source}: config`);
      await store.putBytes(image.configBytes);
      return;
    }
    const file = image.blobFile?.(d.digest);
    if (file) await store.putTrustedFile(file, { digest: d.digest, size: d.size });
    else await store.putStream(await image.openBlob(d), { digest: d.digest, size: d.size });
  });
  await store.putBytes(image.manifestBytes);
}

const LOCK_NAME = '.weft-index.lock';

/**
 * Runs `update` while holding the layout's index lock: concurrent writers
 * (other builds, other processes) take turns to read, change and atomically
 * replace index.json, so no tag is lost. A lock left by a killed process is
 * taken over once stale (proper-lockfile refreshes the lock while it is held).
 */
async function withIndexLock<T>(dir: string, update: () => Promise<T>): Promise<T> {
  let release: () => Promise<void>;
  try {
    // Loaded on first use: proper-lockfile brings graceful-fs (which patches fs), signal-exit and
    // assert, which reading a layout, or writing a fresh one, never needs (start-up of `weft copy`).
    const { default: lockfile } = await import('proper-lockfile');
    release = await lockfile.lock(dir, {
      lockfilePath: path.join(dir, LOCK_NAME),
      realpath: false,
      stale: 10_000,
      retries: { retries: 600, factor: 1.2, minTimeout: 10, maxTimeout: 200 },
      // The default throws from a timer (an uncaught crash) if the lock's refresh is late; the
      // index update it guards takes milliseconds, so a late refresh is not worth a crash.
      onCompromised: () => undefined,
    });
  } catch (error) {
    throw new LayoutError(`cannot lock ${dir}/index.json (${(error as Error).message}): another weft process is writing this layout; retry when it is done`);
  }
  try {
    return await update();
  } finally {
    await release().catch(() => undefined);
  }
}

/** Writes `image` into the OCI layout at `dir` under `tag` (other tags are kept). Returns the manifest descriptor. */
export async function writeOciLayout(image: ImageHandle, dir: string, tag?: string): Promise<Descriptor> {
  if (tag !== undefined && !isValidOciRefName(tag)) {
    throw new LayoutError(`"${tag}" is not a valid OCI layout tag: use letters, digits and . _ - (e.g. latest, 1.0, v2-rc1)`);
  }
  const target = path.resolve(dir);
  const descriptor: Descriptor = {
    mediaType: image.manifestMediaType,
    digest: image.manifestDigest,
    size: image.manifestBytes.length,
  };
  if (tag) descriptor.annotations = { [REF_NAME]: tag };
  const layoutFile = `${JSON.stringify({ imageLayoutVersion: '1.0.0' })}\n`;

  // A new (or empty) directory is assembled beside it and renamed into place: a failed write leaves nothing.
  const stat = await fs.stat(target).catch(() => undefined);
  if (stat && !stat.isDirectory()) throw new LayoutError(`${dir} exists and is not a directory: choose another output path`);
  const fresh = !stat || (await fs.readdir(target)).length === 0;
  if (fresh) {
    const tmp = tempName(target);
    try {
      await makeDirectories(path.dirname(target));
      await fs.mkdir(tmp).catch((error: Error) => {
        throw new LayoutError(`cannot write OCI layout ${dir}: ${error.message}`);
      });
      await copyBlobs(image, new BlobStore(tmp));
      await fs.writeFile(path.join(tmp, 'oci-layout'), layoutFile);
      const index: ImageIndex = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [descriptor] };
      await fs.writeFile(path.join(tmp, 'index.json'), `${JSON.stringify(index)}\n`);
      try {
        await fs.rename(tmp, target);
        return descriptor;
      } catch (error) {
        // Another writer created the layout first (a concurrent build): add to it below.
        const code = (error as NodeJS.ErrnoException).code;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
      }
    } finally {
      await fs.rm(tmp, { recursive: true, force: true });
    }
  }

  const entries = (await fs.readdir(target)).filter((name) => name !== LOCK_NAME);
  const isLayout = entries.includes('oci-layout') && entries.includes('index.json');
  if (!isLayout && entries.length > 0) {
    throw new LayoutError(`${dir} is not empty and not an OCI image layout: choose an empty or new directory`);
  }
  // Blobs first (each written to a temp file and renamed: concurrent writers of one blob both succeed), then the index.
  await copyBlobs(image, new BlobStore(target));
  await withIndexLock(target, async () => {
    if (!existsSync(path.join(target, 'oci-layout'))) await writeFileAtomic(path.join(target, 'oci-layout'), layoutFile);
    let index: ImageIndex = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [] };
    if (existsSync(path.join(target, 'index.json'))) index = await readIndex(target);
    index.manifests = index.manifests.filter((m) =>
      tag ? m.annotations?.[REF_NAME] !== tag : !(m.digest === descriptor.digest && !m.annotations?.[REF_NAME]),
    );
    index.manifests.push(descriptor);
    await writeFileAtomic(path.join(target, 'index.json'), `${JSON.stringify(index)}\n`);
  });
  return descriptor;
}

async function readIndex(dir: string): Promise<ImageIndex> {
  let text: string;
  try {
    text = await fs.readFile(path.join(dir, 'index.json'), 'utf8');
  } catch {
    throw new LayoutError(`${dir} is not an OCI image layout (no index.json): pass a directory written by weft, skopeo or buildah`);
  }
  try {
    const index = JSON.parse(text) as ImageIndex;
    if (!Array.isArray(index.manifests)) throw new Error('no manifests array');
    return index;
  } catch (error) {
    throw new LayoutError(`${dir}/index.json is not a valid OCI index (${(error as Error).message})`);
  }
}

/** Tags (ref names) in an OCI layout. */
export async function listOciLayoutTags(dir: string): Promise<string[]> {
  const index = await readIndex(path.resolve(dir));
  return index.manifests.map((m) => m.annotations?.[REF_NAME]).filter((t): t is string => !!t);
}

/** Opens one image of an OCI layout: by tag, or the only one; an index is resolved to the platform's manifest. */
export async function readOciLayout(dir: string, tag?: string, options: { platform?: Platform | string } = {}): Promise<ImageHandle> {
  const root = path.resolve(dir);
  const index = await readIndex(root);
  const source = tag ? `oci:${dir}:${tag}` : `oci:${dir}`;
  let descriptor: Descriptor | undefined;
  if (tag) {
    descriptor = index.manifests.find((m) => m.annotations?.[REF_NAME] === tag);
    if (!descriptor) {
      const tags = index.manifests.map((m) => m.annotations?.[REF_NAME]).filter(Boolean);
      throw new LayoutError(`${dir} has no image tagged "${tag}" (tags: ${tags.join(', ') || 'none'})`);
    }
  } else if (index.manifests.length === 1) {
    descriptor = index.manifests[0];
  } else {
    const tags = index.manifests.map((m) => m.annotations?.[REF_NAME]).filter(Boolean);
    throw new LayoutError(`${dir} holds ${index.manifests.length} images: name one with oci:${dir}:<tag> (tags: ${tags.join(', ') || 'none'})`);
  }
  const store = new BlobStore(root);
  // Every blob is checked against the digest (and size) that names it: an edited manifest, config or layer is refused.
  const readBlob = async (d: Descriptor, what: string): Promise<Buffer> => {
    let bytes: Buffer;
    try {
      bytes = await fs.readFile(store.path(d.digest));
    } catch {
      throw new LayoutError(`${dir} is missing blob ${d.digest}: the layout is incomplete`);
    }
    try {
      verifyBlobBytes(bytes, d, `${source}: ${what} ${d.digest}`);
    } catch (error) {
      throw new LayoutError((error as Error).message);
    }
    return bytes;
  };
  let manifestBytes = await readBlob(descriptor, 'manifest');
  const platform = typeof options.platform === 'string' ? parsePlatform(options.platform) : options.platform ?? parsePlatform();
  for (let depth = 0; manifestKind(JSON.parse(manifestBytes.toString('utf8'))) === 'index'; depth++) {
    if (depth > 3) throw new LayoutError(`${source}: nested indexes go too deep`);
    const nested = JSON.parse(manifestBytes.toString('utf8')) as ImageIndex;
    manifestBytes = await readBlob(selectPlatform(nested.manifests, platform, source), 'manifest');
  }
  const manifest = JSON.parse(manifestBytes.toString('utf8')) as { config: Descriptor };
  const configBytes = await readBlob(manifest.config, 'config');
  return new StaticImage(source, manifestBytes, configBytes, async (d) => {
    const file = store.path(d.digest);
    digestHex(d.digest);
    if (!(await exists(file))) throw new LayoutError(`${dir} is missing blob ${d.digest}`);
    // 1 MiB reads instead of the default 64 KiB: a 32 MiB layer is 32 reads, not 512.
    return verifiedStream(createReadStream(file, { highWaterMark: 1024 * 1024 }), d, `${source}: blob ${d.digest}`);
  });
}
