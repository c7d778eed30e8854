// An in-memory ImageHandle: manifest and config bytes plus a function that
// opens blobs. Built images, OCI layouts and docker-archives all become one.
import { Readable } from 'node:stream';
import { MediaType, type Descriptor, type ImageConfig, type ImageManifest, type Platform } from './oci.js';
import type { ImageHandle } from './transport.js';
import { sha256 } from './blobstore.js';

/** Canonical JSON bytes of a document (keys in the order given, no spaces): what gets digested. */
export function jsonBytes(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

export class StaticImage implements ImageHandle {
  readonly manifestDigest: string;
  readonly manifestMediaType: string;
  readonly manifest: ImageManifest;
  readonly config: ImageConfig;

  constructor(
    readonly source: string,
    readonly manifestBytes: Buffer,
    readonly configBytes: Buffer,
    private readonly opener: (descriptor: Descriptor) => Promise<Readable>,
    readonly remote?: { registry: string; repository: string },
    /** For images built on a registry base: which registry repository already holds a blob. */
    readonly blobOrigin?: (digest: string) => { registry: string; repository: string } | undefined,
    /** Blobs weft wrote and hashed itself, as local files (see ImageHandle.blobFile). */
    readonly blobFile?: (digest: string) => string | undefined,
  ) {
    this.manifest = JSON.parse(manifestBytes.toString('utf8')) as ImageManifest;
    this.config = JSON.parse(configBytes.toString('utf8')) as ImageConfig;
    this.manifestDigest = sha256(manifestBytes);
    this.manifestMediaType = this.manifest.mediaType ?? MediaType.ociManifest;
  }

  async openBlob(descriptor: Descriptor): Promise<Readable> {
    if (descriptor.digest === this.manifest.config.digest) return Readable.from([this.configBytes]);
    return this.opener(descriptor);
  }
}

/** `linux/amd64`, `linux/arm64/v8` -> Platform; default: the machine weft runs on. */
export function parsePlatform(text?: string): Platform {
  if (!text) {
    const arch = ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' } as Record<string, string>)[process.arch] ?? process.arch;
    return { os: 'linux', architecture: arch };
  }
  const parts = text.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9][a-z0-9_.-]*$/i.test(p))) {
    throw new Error(`platform "${text}" is not os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8`);
  }
  const [os, architecture, variant] = parts;
  return variant ? { os, architecture, variant } : { os, architecture };
}

export const formatPlatform = (p: Platform): string => [p.os, p.architecture, p.variant].filter(Boolean).join('/');

/** Picks the manifest for a platform from an index's descriptors. */
export function selectPlatform(manifests: readonly Descriptor[], platform: Platform, what: string): Descriptor {
  const candidates = manifests.filter(
    (d) => d.platform && d.platform.os === platform.os && d.platform.architecture === platform.architecture,
  );
  const exact = candidates.find((d) => !platform.variant || d.platform?.variant === platform.variant) ?? candidates[0];
  if (exact) return exact;
  const available = manifests.map((d) => (d.platform ? formatPlatform(d.platform) : 'unknown')).join(', ');
  throw new Error(`${what} has no image for ${formatPlatform(platform)} (it has: ${available}): pass --platform with one of those`);
}
