// `build:` sections of an app spec, resolved to images before a backend sees the run.
export { BuildError, resolveBuilds } from './resolve.js';
