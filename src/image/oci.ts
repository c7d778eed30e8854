// OCI image-spec and Docker schema 2 types shared by the image builder, the
// registry client and server. Kept deliberately small: just the fields weft reads.

export const MediaType = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociEmpty: 'application/vnd.oci.empty.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

export const manifestMediaTypes: readonly string[] = [
  MediaType.ociManifest,
  MediaType.ociIndex,
  MediaType.dockerManifest,
  MediaType.dockerManifestList,
];

export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
  'os.version'?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: Platform;
  artifactType?: string;
  urls?: string[];
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  manifests: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

export interface ImageConfig {
  created?: string;
  author?: string;
  architecture: string;
  os: string;
  variant?: string;
  config?: {
    User?: string;
    Env?: string[];
    Entrypoint?: string[];
    Cmd?: string[];
    WorkingDir?: string;
    Labels?: Record<string, string>;
    ExposedPorts?: Record<string, object>;
    Volumes?: Record<string, object>;
    StopSignal?: string;
  };
  rootfs: { type: 'layers'; diff_ids: string[] };
  history?: Array<{ created?: string; created_by?: string; comment?: string; empty_layer?: boolean; author?: string }>;
}

/** Digest syntax of the OCI image spec: algorithm ":" encoded. */
export const digestPattern = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
const sha256Pattern = /^sha256:[a-f0-9]{64}$/;
const sha512Pattern = /^sha512:[a-f0-9]{128}$/;

/** True for a digest weft can verify (sha256 or sha512, lowercase hex). */
export function isSupportedDigest(digest: string): boolean {
  return sha256Pattern.test(digest) || sha512Pattern.test(digest);
}

/** The kind of a manifest document, from its mediaType field or, failing that, its shape. */
export function manifestKind(doc: { mediaType?: string; manifests?: unknown; layers?: unknown }): 'manifest' | 'index' {
  if (doc.mediaType === MediaType.ociIndex || doc.mediaType === MediaType.dockerManifestList) return 'index';
  if (doc.mediaType === MediaType.ociManifest || doc.mediaType === MediaType.dockerManifest) return 'manifest';
  return Array.isArray(doc.manifests) ? 'index' : 'manifest';
}
