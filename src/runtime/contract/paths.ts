// Where a program finds weft's files inside its container, on both runtimes.

/** The downward-API directory: `annotations` (commands arrive here) and `labels`. */
export const PODINFO_PATH = '/etc/weft/podinfo';
/** The run's files (`withFiles`), read-only. */
export const FILES_PATH = '/etc/weft/files';
/** The file a program watches for commands (named by WEFT_COMMANDS_FILE). */
export const COMMANDS_FILE = `${PODINFO_PATH}/annotations`;
