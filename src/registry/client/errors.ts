// Errors the registry client raises. Each message says what went wrong and,
// where the user can act, what to do.

export class RegistryError extends Error {
  override name = 'RegistryError';
  constructor(
    message: string,
    readonly status?: number,
    /** Distribution error codes from the response body, e.g. BLOB_UNKNOWN, UNAUTHORIZED. */
    readonly codes: string[] = [],
    /** True when trying again may succeed (408/429/5xx, dropped connections). */
    readonly retryable = false,
  ) {
    super(message);
  }
}

export class AuthError extends RegistryError {
  override name = 'AuthError';
}

export class InsecureTransportError extends RegistryError {
  override name = 'InsecureTransportError';
}

export class DigestMismatchError extends RegistryError {
  override name = 'DigestMismatchError';
}

/** Network-level failures worth another attempt. */
const retryableCodes = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'ECONNABORTED',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

export function isRetryable(error: unknown): boolean {
  if (error instanceof RegistryError) return error.retryable;
  const code = (error as { code?: string } | undefined)?.code;
  if (code && retryableCodes.has(code)) return true;
  const message = error instanceof Error ? error.message : '';
  return /socket hang up|premature close|aborted/i.test(message);
}

export function retryableStatus(status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status <= 599 && status !== 501 && status !== 505);
}
