// Error codes of the OCI distribution spec v1.1 and the HTTP status each maps to.

export const errorStatus = {
  BLOB_UNKNOWN: 404,
  BLOB_UPLOAD_INVALID: 400,
  BLOB_UPLOAD_UNKNOWN: 404,
  DIGEST_INVALID: 400,
  MANIFEST_BLOB_UNKNOWN: 400,
  MANIFEST_INVALID: 400,
  MANIFEST_UNKNOWN: 404,
  NAME_INVALID: 400,
  NAME_UNKNOWN: 404,
  SIZE_INVALID: 400,
  UNAUTHORIZED: 401,
  DENIED: 403,
  UNSUPPORTED: 415,
  TOOMANYREQUESTS: 429,
} as const;

export type ErrorCode = keyof typeof errorStatus;

/** An error the registry answers with a spec error body: {"errors":[{code,message,detail}]}. */
export class RegistryError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly detail: unknown;
  readonly headers: Record<string, string>;

  constructor(code: ErrorCode, message: string, options: { status?: number; detail?: unknown; headers?: Record<string, string> } = {}) {
    super(message);
    this.name = 'RegistryError';
    this.code = code;
    this.status = options.status ?? errorStatus[code];
    this.detail = options.detail;
    this.headers = options.headers ?? {};
  }

  body(): string {
    const entry: { code: string; message: string; detail?: unknown } = { code: this.code, message: this.message };
    if (this.detail !== undefined) entry.detail = this.detail;
    return JSON.stringify({ errors: [entry] });
  }
}
