// weft's library entry point: the public API of each capability.
export * from './image/index.js';
