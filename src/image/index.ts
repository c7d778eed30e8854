export * from './oci.js';
export * from './reference.js';
export type * from './transport.js';
