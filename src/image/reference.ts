// Image references in skopeo's transport syntax, so users can reuse what they
// already type for skopeo: oci:<dir>[:<tag>], docker-archive:<file>[:<name:tag>],
// docker://<host>/<repo>[:<tag>|@<digest>], and the pseudo-image `scratch`.

export interface DockerReference {
  /** host[:port] as written; docker.io when omitted (as Docker does). */
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
}

export type ImageReference =
  | { transport: 'scratch' }
  | { transport: 'oci'; dir: string; tag?: string }
  | { transport: 'docker-archive'; file: string; name?: string }
  | { transport: 'docker'; ref: DockerReference };

export class ReferenceError extends Error {
  override name = 'ReferenceError';
}

const repositoryComponent = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const tagPattern = /^[\w][\w.-]{0,127}$/;
const digestShape = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export function isValidRepositoryName(name: string): boolean {
  if (name.length === 0 || name.length > 255) return false;
  return name.split('/').every((part) => repositoryComponent.test(part));
}

export function isValidTag(tag: string): boolean {
  return tagPattern.test(tag);
}

// image-spec image-layout.md: ref ::= component ("/" component)*, component ::= alphanum (separator alphanum)*.
const ociRefComponent = '[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*';
const ociRefPattern = new RegExp(`^${ociRefComponent}(?:/${ociRefComponent})*$`);

/** A tag (org.opencontainers.image.ref.name) for an OCI layout: the image-spec grammar, or any Docker tag. */
export function isValidOciRefName(name: string): boolean {
  return name.length <= 255 && (ociRefPattern.test(name) || tagPattern.test(name));
}

/** Parses `host/repo[:tag][@digest]` (the part after docker://). */
export function parseDockerReference(text: string): DockerReference {
  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!digestShape.test(digest)) throw new ReferenceError(`invalid digest "${digest}" in image reference "${text}"`);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!isValidTag(tag)) throw new ReferenceError(`invalid tag "${tag}" in image reference "${text}"`);
  }
  const slash = rest.indexOf('/');
  let registry = 'docker.io';
  let repository = rest;
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('[')) {
      registry = first;
      repository = rest.slice(slash + 1);
    }
  }
  if (registry === 'docker.io' && !repository.includes('/')) repository = `library/${repository}`;
  if (!isValidRepositoryName(repository)) {
    throw new ReferenceError(
      `invalid repository name "${repository}" in "${text}": use lowercase letters, digits and separators (. _ __ -) between path components`,
    );
  }
  if (!tag && !digest) tag = 'latest';
  return { registry, repository, tag, digest };
}

export function formatDockerReference(ref: DockerReference): string {
  let out = `${ref.registry}/${ref.repository}`;
  if (ref.tag) out += `:${ref.tag}`;
  if (ref.digest) out += `@${ref.digest}`;
  return out;
}

/** Parses a skopeo-style image reference; throws ReferenceError with a hint on bad input. */
export function parseImageReference(text: string): ImageReference {
  if (text === 'scratch') return { transport: 'scratch' };
  if (text.startsWith('docker://')) return { transport: 'docker', ref: parseDockerReference(text.slice('docker://'.length)) };
  if (text.startsWith('oci:')) {
    const body = text.slice('oci:'.length);
    // As skopeo does: the directory ends at the first ':', so a tag can never be read as part of
    // the path (oci:x:../../etc/evil is directory x with an invalid tag, not the directory ../etc/evil).
    const colon = body.indexOf(':');
    const dir = colon >= 0 ? body.slice(0, colon) : body;
    const tag = colon >= 0 ? body.slice(colon + 1) : '';
    if (!dir) throw new ReferenceError('oci: reference needs a directory, e.g. oci:./out:latest');
    if (tag && !isValidOciRefName(tag)) {
      throw new ReferenceError(`invalid tag "${tag}" in "${text}": an OCI layout tag is letters, digits and . _ - (e.g. oci:${dir}:1.0); the directory name cannot contain ':'`);
    }
    return { transport: 'oci', dir, tag: tag || undefined };
  }
  if (text.startsWith('docker-archive:')) {
    const body = text.slice('docker-archive:'.length);
    // The file name ends at the first ':' followed by something that looks like name[:tag].
    const colon = body.indexOf(':');
    if (colon > 0) return { transport: 'docker-archive', file: body.slice(0, colon), name: body.slice(colon + 1) || undefined };
    if (!body) throw new ReferenceError('docker-archive: reference needs a file, e.g. docker-archive:./app.tar:app:latest');
    return { transport: 'docker-archive', file: body };
  }
  throw new ReferenceError(
    `unsupported image reference "${text}": use oci:<dir>[:<tag>], docker-archive:<file>[:<name:tag>], docker://<host>/<repo>[:<tag>] or scratch`,
  );
}

export function formatImageReference(ref: ImageReference): string {
  switch (ref.transport) {
    case 'scratch':
      return 'scratch';
    case 'oci':
      return ref.tag ? `oci:${ref.dir}:${ref.tag}` : `oci:${ref.dir}`;
    case 'docker-archive':
      return ref.name ? `docker-archive:${ref.file}:${ref.name}` : `docker-archive:${ref.file}`;
    case 'docker':
      return `docker://${formatDockerReference(ref.ref)}`;
  }
}
