// API errors: a stable machine-readable code, an HTTP status, and a message a user can act on.
export type ErrorCode =
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'method_not_allowed'
  | 'invalid_request'
  | 'invalid_spec'
  | 'unsupported_media_type'
  | 'body_too_large'
  | 'conflict'
  | 'admission_rejected'
  | 'runtime_error'
  | 'internal';

const statusOf: Record<ErrorCode, number> = {
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  invalid_request: 400,
  invalid_spec: 400,
  unsupported_media_type: 415,
  body_too_large: 413,
  conflict: 409,
  admission_rejected: 409,
  runtime_error: 502,
  internal: 500,
};

export class ApiError extends Error {
  override name = 'ApiError';
  constructor(readonly code: ErrorCode, message: string, readonly details?: unknown) {
    super(message);
  }
  get status(): number {
    return statusOf[this.code];
  }
}
