// The weft master: a long-running service with a run store, a REST API,
// reconciliation and archived logs. See docs/master.md.
export * from './store/index.js';
export { startMaster, type MasterOptions, type RunningMaster } from './master.js';
export { MasterService, type SubmitRequest, type SubmitResult } from './service.js';
export { ApiError, type ErrorCode } from './errors.js';
export { hashToken, newToken } from './auth.js';
export { COMPONENT_SCHEMAS } from './openapi.js';
export { MasterRuntime, MasterClientError, type MasterClientOptions } from './client.js';
