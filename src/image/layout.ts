// OCI image layout directories (image-spec image-layout.md): `oci-layout`,
// `index.json` whose entries carry `org.opencontainers.image.ref.name`, and
// `blobs/sha256/<hex>`. Writing adds to an existing layout without touching
// other tags; index.json is replaced atomically after every blob is in place,
// and a new layout is assembled in a temp directory and renamed into place.
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { BlobStore, digestHex, writeFileAtomic } from './blobstore.js';
import { MediaType, manifestKind, type Descriptor, type ImageIndex, type Platform } from './oci.js';
import { StaticImage, selectPlatform, parsePlatform } from './image.js';
import type { ImageHandle } from './transport.js';

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

/** Copies every blob of `image` into `store`, verifying digests; skips blobs already there. */
export async function copyBlobs(image: ImageHandle, store: BlobStore): Promise<void> {
  const descriptors = [image.manifest.config, ...image.manifest.layers];
  for (const d of descriptors) {
    if (await store.has(d.digest, d.size)) continue;
    await store.putStream(await image.openBlob(d), { digest: d.digest, size: d.size });
  }
  await store.putBytes(image.manifestBytes);
}

/** Writes `image` into the OCI layout at `dir` under `tag` (other tags are kept). Returns the manifest descriptor. */
export async function writeOciLayout(image: ImageHandle, dir: string, tag?: string): Promise<Descriptor> {
  const target = path.resolve(dir);
  const descriptor: Descriptor = {
    mediaType: image.manifestMediaType,
    digest: image.manifestDigest,
    size: image.manifestBytes.length,
  };
  if (tag) descriptor.annotations = { [REF_NAME]: tag };
  const layoutFile = `${JSON.stringify({ imageLayoutVersion: '1.0.0' })}\n`;

  // A new (or empty) directory is assembled beside it and renamed into place: a failed write leaves nothing.
  const fresh = !(await exists(target)) || ((await fs.stat(target)).isDirectory() && (await fs.readdir(target)).length === 0);
  if (fresh) {
    const tmp = `${target}.tmp-${process.pid}-${Date.now()}`;
    await fs.mkdir(tmp, { recursive: true });
    try {
      await copyBlobs(image, new BlobStore(tmp));
      await fs.writeFile(path.join(tmp, 'oci-layout'), layoutFile);
      const index: ImageIndex = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [descriptor] };
      await fs.writeFile(path.join(tmp, 'index.json'), `${JSON.stringify(index)}\n`);
      await fs.rename(tmp, target);
    } catch (error) {
      await fs.rm(tmp, { recursive: true, force: true });
      throw error;
    }
    return descriptor;
  }

  const stat = await fs.stat(target);
  if (!stat.isDirectory()) throw new LayoutError(`${dir} exists and is not a directory: choose another output path`);
  const entries = await fs.readdir(target);
  const isLayout = entries.includes('oci-layout') && entries.includes('index.json');
  if (!isLayout && entries.length > 0) {
    throw new LayoutError(`${dir} is not empty and not an OCI image layout: choose an empty or new directory`);
  }
  let index: ImageIndex = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [] };
  if (isLayout) index = await readIndex(target);
  await copyBlobs(image, new BlobStore(target));
  if (!isLayout) await writeFileAtomic(path.join(target, 'oci-layout'), layoutFile);
  index.manifests = index.manifests.filter((m) =>
    tag ? m.annotations?.[REF_NAME] !== tag : !(m.digest === descriptor.digest && !m.annotations?.[REF_NAME]),
  );
  index.manifests.push(descriptor);
  await writeFileAtomic(path.join(target, 'index.json'), `${JSON.stringify(index)}\n`);
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
  const readBlob = async (d: Descriptor): Promise<Buffer> => {
    try {
      return await fs.readFile(store.path(d.digest));
    } catch {
      throw new LayoutError(`${dir} is missing blob ${d.digest}: the layout is incomplete`);
    }
  };
  let manifestBytes = await readBlob(descriptor);
  const platform = typeof options.platform === 'string' ? parsePlatform(options.platform) : options.platform ?? parsePlatform();
  for (let depth = 0; manifestKind(JSON.parse(manifestBytes.toString('utf8'))) === 'index'; depth++) {
    if (depth > 3) throw new LayoutError(`${source}: nested indexes go too deep`);
    const nested = JSON.parse(manifestBytes.toString('utf8')) as ImageIndex;
    manifestBytes = await readBlob(selectPlatform(nested.manifests, platform, source));
  }
  const manifest = JSON.parse(manifestBytes.toString('utf8')) as { config: Descriptor };
  const configBytes = await readBlob(manifest.config);
  return new StaticImage(source, manifestBytes, configBytes, async (d) => {
    const file = store.path(d.digest);
    digestHex(d.digest);
    if (!(await exists(file))) throw new LayoutError(`${dir} is missing blob ${d.digest}`);
    return createReadStream(file);
  });
}
