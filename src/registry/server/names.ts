// Validation of repository names, tags and digests as the distribution spec defines them.
import { RegistryError } from './errors.js';

// <name> of the distribution spec: path components separated by "/".
const componentPattern = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const tagPattern = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
const digestSyntax = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
const algorithms: Record<string, RegExp> = {
  sha256: /^[a-f0-9]{64}$/,
  sha512: /^[a-f0-9]{128}$/,
};
export const maxNameLength = 255;

/** Throws NAME_INVALID unless `name` is a valid repository name (no "..", no odd characters). */
export function validateName(name: string): string {
  if (name.length === 0 || name.length > maxNameLength) {
    throw new RegistryError('NAME_INVALID', `repository name must be 1 to ${maxNameLength} characters`, { detail: { name } });
  }
  for (const part of name.split('/')) {
    if (!componentPattern.test(part)) {
      throw new RegistryError('NAME_INVALID', 'invalid repository name: use lowercase letters, digits and single separators (. _ __ -) between "/"-separated components', { detail: { name } });
    }
  }
  return name;
}

export function isTag(reference: string): boolean {
  return tagPattern.test(reference);
}

export interface ParsedDigest {
  digest: string;
  algorithm: 'sha256' | 'sha512';
  hex: string;
}

/** Parses a digest weft can verify. Unknown algorithms and malformed values are DIGEST_INVALID. */
export function parseDigest(value: string): ParsedDigest {
  if (!digestSyntax.test(value)) {
    throw new RegistryError('DIGEST_INVALID', 'invalid digest: expected algorithm:hex, e.g. sha256:<64 hex digits>', { detail: { digest: value } });
  }
  const colon = value.indexOf(':');
  const algorithm = value.slice(0, colon);
  const hex = value.slice(colon + 1);
  const pattern = algorithms[algorithm];
  if (!pattern) {
    throw new RegistryError('DIGEST_INVALID', `unsupported digest algorithm "${algorithm}": use sha256 or sha512`, { detail: { digest: value } });
  }
  if (!pattern.test(hex)) {
    throw new RegistryError('DIGEST_INVALID', `invalid ${algorithm} digest: expected lowercase hex of the right length`, { detail: { digest: value } });
  }
  return { digest: value, algorithm: algorithm as 'sha256' | 'sha512', hex };
}

export function looksLikeDigest(reference: string): boolean {
  return reference.includes(':');
}
