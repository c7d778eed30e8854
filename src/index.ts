// weft's library entry point: the public API of each capability.
export * from './image/index.js';
export * as registryClient from './registry/client/index.js';
export * as registryServer from './registry/server/index.js';
export * from './runtime/index.js';
export * from './coord/index.js';
