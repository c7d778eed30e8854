// Plumbing shared by the components that run and coordinate programs: atomic
// files, the default directories and durations.
export { readTextIfAny, tempName, writeFileAtomic } from './files.js';
export { weftStateDir } from './directories.js';
export { DurationError, formatDuration, parseDurationMs } from './durations.js';
