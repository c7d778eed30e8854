// The in-container contract: what a program finds in its environment, its
// files, labels and annotations, and how commands reach it. One definition
// for both runtimes; documented in docs/contract.md.
export { COMMANDS_FILE, FILES_PATH, PODINFO_PATH } from './paths.js';
export { ANN_COMMAND_PREFIX, ANN_KIND, instanceAnnotations, LABEL_APP, LABEL_MANAGED_BY, LABEL_NAME, LABEL_RUN_ID, LABEL_RUNNABLE, MANAGED_BY, runLabels } from './metadata.js';
export { commandAnnotation, formatAnnotations, parseAnnotations, type CommandMessage } from './commands.js';
export { ENV, instanceEnvironment, portEnvironment, portEnvName, runnableEnvironment, type InstanceIdentity, type RunnableEnvironment } from './environment.js';
