// The local backend's own error: bad requests and runs it cannot act on, in words a user can act on.
export class LocalRuntimeError extends Error {
  override name = 'LocalRuntimeError';
}
