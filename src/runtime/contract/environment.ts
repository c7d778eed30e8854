// The WEFT_* environment of every instance: the same names and meanings on
// both runtimes (docs/contract.md). Kubernetes fills the per-pod values
// (instance id, pod name, namespace) through the downward API; the local
// runtime knows them when it starts the instance.

export const ENV = {
  runId: 'WEFT_RUN_ID',
  app: 'WEFT_APP',
  runnable: 'WEFT_RUNNABLE',
  instanceId: 'WEFT_INSTANCE_ID',
  instanceCount: 'WEFT_INSTANCE_COUNT',
  podName: 'WEFT_POD_NAME',
  namespace: 'WEFT_NAMESPACE',
  runtime: 'WEFT_RUNTIME',
  commandsFile: 'WEFT_COMMANDS_FILE',
  filesDir: 'WEFT_FILES_DIR',
} as const;

/** The variable holding the port of an announced port `name`: WEFT_PORT_<NAME>. */
export function portEnvName(name: string): string {
  return `WEFT_PORT_${name.toUpperCase().replace(/-/g, '_')}`;
}

/** What is the same for every instance of a runnable. */
export interface RunnableEnvironment {
  runtime: 'kubernetes' | 'local';
  runId: string;
  app: string;
  runnable: string;
  /** The instances the spec asks for (a later scale does not change it: Kubernetes would have to restart every pod). */
  instanceCount: number;
  commandsFile: string;
  filesDir: string;
}

/** What differs between instances. */
export interface InstanceIdentity {
  instanceId: string;
  /** The pod's name on Kubernetes, the container's name locally (the status' instance name). */
  podName: string;
  /** The Kubernetes namespace, or the local runtime's runs directory (the status' namespace). */
  namespace: string;
  /** The port each announced port listens on, by port name. */
  ports: Record<string, number>;
}

/** The variables shared by every instance of a runnable, in the order they are set. */
export function runnableEnvironment(e: RunnableEnvironment): Record<string, string> {
  return {
    [ENV.runId]: e.runId,
    [ENV.app]: e.app,
    [ENV.runnable]: e.runnable,
    [ENV.instanceCount]: String(e.instanceCount),
    [ENV.runtime]: e.runtime,
    [ENV.commandsFile]: e.commandsFile,
    [ENV.filesDir]: e.filesDir,
  };
}

export function portEnvironment(ports: Record<string, number>): Record<string, string> {
  return Object.fromEntries(Object.entries(ports).map(([name, port]) => [portEnvName(name), String(port)]));
}

/** The whole WEFT_* environment of one instance (the local runtime's case: every value known). */
export function instanceEnvironment(e: RunnableEnvironment, i: InstanceIdentity): Record<string, string> {
  return {
    ...runnableEnvironment(e),
    [ENV.instanceId]: i.instanceId,
    [ENV.podName]: i.podName,
    [ENV.namespace]: i.namespace,
    ...portEnvironment(i.ports),
  };
}
