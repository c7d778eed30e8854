// Plumbing shared by the components that run and coordinate programs: atomic
// files and the default directories.
export { readTextIfAny, writeFileAtomic } from './files.js';
export { weftStateDir } from './directories.js';
