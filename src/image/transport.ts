import type { Readable } from 'node:stream';
import type { Descriptor, ImageConfig, ImageManifest } from './oci.js';
import type { DockerReference } from './reference.js';

/**
 * A single-platform image that can be read wherever it lives (OCI layout,
 * docker-archive, a registry, or freshly built). Everything weft moves goes
 * through this shape, so writers never care where an image came from.
 */
export interface ImageHandle {
  /** Human-readable origin, e.g. "oci:./out:latest" or "docker://host/repo:tag". */
  readonly source: string;
  readonly manifest: ImageManifest;
  readonly manifestBytes: Buffer;
  readonly manifestDigest: string;
  readonly manifestMediaType: string;
  readonly config: ImageConfig;
  readonly configBytes: Buffer;
  /** Opens a blob (a layer or the config) of this image by descriptor. */
  openBlob(descriptor: Descriptor): Promise<Readable>;
  /** Set when the image lives in a registry, so a push to the same registry can mount instead of copy. */
  readonly remote?: { registry: string; repository: string };
  /**
   * Optional: for an image built on a registry base, the registry repository
   * that already holds a blob (so a push to that registry can mount it instead
   * of uploading). Undefined for blobs that only exist locally.
   */
  blobOrigin?(digest: string): { registry: string; repository: string } | undefined;
  /**
   * Optional: a local file holding a blob's bytes that weft wrote and hashed
   * itself (a freshly built layer in the layer cache). Writers may copy the
   * file (in the kernel, or as a reflink) instead of reading and hashing it again.
   */
  blobFile?(digest: string): string | undefined;
}

export interface TransferProgress {
  /** Called as blob bytes move; `status` says whether the blob was sent, skipped (already present) or mounted. */
  onBlob?(event: { digest: string; size: number; sent: number; status: 'sending' | 'sent' | 'exists' | 'mounted' }): void;
}

/**
 * Reading and writing images in registries (docker://). Implemented by
 * src/registry/client and injected, so src/image never depends on the network code.
 */
export interface RemoteTransport {
  open(ref: DockerReference, options?: { platform?: string }): Promise<ImageHandle>;
  write(image: ImageHandle, ref: DockerReference, progress?: TransferProgress): Promise<{ digest: string; reference: string }>;
  /** Optional: uploads one blob to `ref`'s repository ahead of `write` (a build pushes each layer as soon as it is ready). */
  uploadBlob?(ref: DockerReference, descriptor: Descriptor, open: () => Promise<Readable>): Promise<unknown>;
}
