// The local runtime's image store: images are pulled (from a registry through
// src/registry/client, or read from an oci:/docker-archive: reference) into a
// content-addressed blob store, and unpacked once per manifest digest into a
// root filesystem that every run of that image shares read-only.
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { BlobStore, openImage, parseImageReference, type ImageConfig, type ImageHandle } from '../../image/index.js';
import { createRemoteTransport } from '../../registry/client/index.js';
import { applyLayerFile, makeDirectoryInRoot, type UnpackStats } from './unpack.js';

export interface UnpackedImage {
  reference: string;
  digest: string;
  config: ImageConfig;
  /** The root filesystem (read-only for containers). */
  rootfs: string;
  stats?: UnpackStats;
}

/** Why an image could not be made ready: the reason a run that needs it fails with. */
export class ImageError extends Error {
  override name = 'ImageError';
  constructor(
    message: string,
    /** ErrImagePull: not found or not readable; ErrImageUnpack: its layers were refused or could not be unpacked. */
    readonly reason: 'ErrImagePull' | 'ErrImageUnpack',
  ) {
    super(message);
  }
}

/** `host/repo:tag` without a transport means a registry image, as in a Kubernetes pod spec. */
export function normaliseImageRef(image: string): string {
  if (/^(oci|docker-archive|docker):/.test(image) || image === 'scratch') return image;
  return `docker://${image}`;
}

export class ImageStore {
  readonly blobs: BlobStore;
  private readonly inflight = new Map<string, Promise<UnpackedImage>>();

  constructor(readonly root: string) {
    this.blobs = new BlobStore(root);
  }

  private async open(image: string): Promise<ImageHandle> {
    const ref = normaliseImageRef(image);
    let handle: ImageHandle | null;
    try {
      const parsed = parseImageReference(ref);
      handle = await openImage(parsed, { remote: parsed.transport === 'docker' ? createRemoteTransport() : undefined });
    } catch (error) {
      throw new ImageError(`cannot pull image ${image}: ${(error as Error).message}`, 'ErrImagePull');
    }
    if (!handle) throw new ImageError(`image ${image} is scratch: a runnable needs an image with a program in it`, 'ErrImagePull');
    return handle;
  }

  /** The image config of an unpacked image, read from the store (no registry round trip). */
  async configOf(rootfs: string): Promise<ImageConfig> {
    return JSON.parse(await fs.readFile(path.join(path.dirname(rootfs), 'config.json'), 'utf8')) as ImageConfig;
  }

  /** Pulls the image's blobs (skipping those already stored) and unpacks it unless already unpacked. */
  async prepare(image: string): Promise<UnpackedImage> {
    const handle = await this.open(image);
    const key = handle.manifestDigest;
    let pending = this.inflight.get(key);
    if (!pending) {
      pending = this.unpack(image, handle).finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    return pending;
  }

  private async unpack(image: string, handle: ImageHandle): Promise<UnpackedImage> {
    const hex = handle.manifestDigest.replace(/^sha256:/, '');
    const dir = path.join(this.root, 'unpacked', hex);
    const rootfs = path.join(dir, 'rootfs');
    const done = path.join(dir, 'unpacked.json');
    if (existsSync(done)) {
      return { reference: image, digest: handle.manifestDigest, config: handle.config, rootfs };
    }
    for (const layer of handle.manifest.layers) {
      if (!(await this.blobs.has(layer.digest, layer.size))) {
        try {
          await this.blobs.putStream(await handle.openBlob(layer), { digest: layer.digest, size: layer.size });
        } catch (error) {
          throw new ImageError(`cannot pull layer ${layer.digest} of image ${image}: ${(error as Error).message}`, 'ErrImagePull');
        }
      }
    }
    // Unpack into a temp directory and rename: a crash never leaves a half-unpacked rootfs under the digest.
    const tmp = `${dir}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    const stats: UnpackStats = { entries: 0, whiteouts: 0, skipped: 0 };
    try {
      const tmpRoot = path.join(tmp, 'rootfs');
      await fs.mkdir(tmpRoot, { recursive: true, mode: 0o755 });
      for (const layer of handle.manifest.layers) {
        if (/\+zstd$/.test(layer.mediaType)) throw new Error(`layer ${layer.digest} is zstd-compressed: weft's local runtime reads gzip and plain tar layers`);
        await applyLayerFile(tmpRoot, this.blobs.path(layer.digest), stats);
      }
      // Mount points the bundles use; created now because containers see the rootfs read-only.
      // Resolved inside the rootfs as runc resolves mount destinations: an image symlink such as
      // etc -> /host/dir leads to <rootfs>/host/dir, never to the host.
      for (const p of ['etc/weft/podinfo', 'etc/weft/files', 'tmp', 'proc', 'sys', 'dev']) {
        await makeDirectoryInRoot(tmpRoot, p.split('/'));
      }
      await fs.writeFile(path.join(tmp, 'config.json'), handle.configBytes);
      await fs.writeFile(path.join(tmp, 'unpacked.json'), JSON.stringify({ image, digest: handle.manifestDigest, stats }, null, 2));
      await fs.mkdir(path.dirname(dir), { recursive: true });
      try {
        await fs.rename(tmp, dir);
      } catch (error) {
        if (!existsSync(done)) throw error;
        await fs.rm(tmp, { recursive: true, force: true }); // another process won the race
      }
    } catch (error) {
      await fs.rm(tmp, { recursive: true, force: true });
      throw new ImageError(`cannot unpack image ${image}: ${(error as Error).message}`, 'ErrImageUnpack');
    }
    return { reference: image, digest: handle.manifestDigest, config: handle.config, rootfs, stats };
  }
}
