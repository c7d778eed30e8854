// Opening and writing images by skopeo-style reference: oci:, docker-archive:,
// docker:// (through the injected RemoteTransport) and scratch (no image).
import path from 'node:path';
import { readDockerArchive, writeDockerArchive } from './archive.js';
import { readOciLayout, writeOciLayout } from './layout.js';
import { formatImageReference, parseImageReference, type ImageReference } from './reference.js';
import type { ImageHandle, RemoteTransport, TransferProgress } from './transport.js';

export interface OpenImageOptions {
  /** Needed for docker:// references (createRemoteTransport from src/registry/client). */
  remote?: RemoteTransport;
  /** os/arch[/variant]; default: this machine's. */
  platform?: string;
}

const asReference = (ref: string | ImageReference): ImageReference => (typeof ref === 'string' ? parseImageReference(ref) : ref);

/** Opens an image; `scratch` gives null (no base). */
export async function openImage(ref: string | ImageReference, options: OpenImageOptions = {}): Promise<ImageHandle | null> {
  const r = asReference(ref);
  switch (r.transport) {
    case 'scratch':
      return null;
    case 'oci':
      return readOciLayout(r.dir, r.tag, { platform: options.platform });
    case 'docker-archive':
      return readDockerArchive(r.file, r.name);
    case 'docker':
      if (!options.remote) throw new Error(`${formatImageReference(r)}: no registry transport was given to read docker:// images`);
      return options.remote.open(r.ref, { platform: options.platform });
  }
}

export interface WriteImageOptions {
  remote?: RemoteTransport;
  progress?: TransferProgress;
}

/** Writes an image to a destination; returns the manifest digest and the reference written. */
export async function writeImage(
  image: ImageHandle,
  ref: string | ImageReference,
  options: WriteImageOptions = {},
): Promise<{ digest: string; reference: string }> {
  const r = asReference(ref);
  switch (r.transport) {
    case 'scratch':
      throw new Error('scratch cannot be an output: use oci:<dir>:<tag>, docker-archive:<file>:<name:tag> or docker://<host>/<repo>:<tag>');
    case 'oci':
      await writeOciLayout(image, r.dir, r.tag);
      return { digest: image.manifestDigest, reference: formatImageReference(r) };
    case 'docker-archive': {
      await writeDockerArchive(image, r.file, r.name ?? defaultArchiveName(image, r.file));
      return { digest: image.manifestDigest, reference: formatImageReference(r) };
    }
    case 'docker':
      if (!options.remote) throw new Error(`${formatImageReference(r)}: no registry transport was given to write docker:// images`);
      return options.remote.write(image, r.ref, options.progress);
  }
}

function defaultArchiveName(image: ImageHandle, file: string): string {
  const title = image.manifest.annotations?.['org.opencontainers.image.title'] ?? path.basename(file).replace(/\.tar$/, '');
  const name = title.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '') || 'image';
  return `${name}:latest`;
}
