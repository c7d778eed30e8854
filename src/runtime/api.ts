// The Twill-style application API (the same for every backend) and the small
// backend SPI (`Runtime`) that the Kubernetes and local backends implement.
//
// Layering: TwillRunner / Preparer / Controller (src/runtime/runner.ts) are
// written ONCE on top of `Runtime`. A backend only has to submit a fully
// resolved run, report status snapshots, and carry out control commands.
import type { AppSpec, Resources } from './spec.js';
import type { InstanceState, RunState } from './state.js';

// ---------------------------------------------------------------------------
// Status snapshots (what `weft status --json` prints)

export interface InstanceStatus {
  /**
   * Instance id: the Job completion index / StatefulSet ordinal ("0", "1", ...), the pod name for a
   * Deployment; a Spark runnable's are "driver" and "exec-<n>" (Spark's executor id).
   */
  id: string;
  state: InstanceState;
  /** Pod name (kube) or process/container id (local). */
  name?: string;
  /** Node or host the instance runs on. */
  host?: string;
  containerId?: string;
  restarts?: number;
  exitCode?: number;
  /** Short machine-readable reason (OOMKilled, ImagePullBackOff, Error, ...). */
  reason?: string;
  message?: string;
  startedAt?: string;
}

export interface RunnableStatus {
  name: string;
  kind: 'batch' | 'service' | 'stateful' | 'spark';
  /** Instances asked for (a Spark runnable: its driver and the executors it asks for). */
  desired: number;
  /** Instances whose main container runs. */
  running: number;
  instances: InstanceStatus[];
}

export interface RunStatus {
  runId: string;
  app: string;
  runtime: 'kubernetes' | 'local';
  state: RunState;
  /** Why the run is in this state, in words a user can act on. */
  message?: string;
  reason?: string;
  exitCode?: number;
  createdAt?: string;
  finishedAt?: string;
  /** Kubernetes namespace, or the local state directory. */
  namespace?: string;
  runnables: RunnableStatus[];
}

// ---------------------------------------------------------------------------
// The backend SPI

/** A file shipped with a run: readable inside every instance at /etc/weft/files/<name> (kube) or the equivalent local path. */
export interface RunFile {
  name: string;
  /** Contents (small files only: kube keeps them in the run's ConfigMap, 1 MiB in total). */
  data: Buffer;
  /** Only for this runnable; all runnables when unset. */
  runnable?: string;
}

/** Everything a backend needs to start a run; the spec is fully resolved (all preparer options applied). */
export interface RunRequest {
  runId: string;
  spec: AppSpec;
  files: RunFile[];
  /**
   * The caller owns this id (a store made it unique, as the master's does) and may be submitting it again after
   * an earlier submission of the same request was cut short (its process died midway). A backend that can tell its
   * own partial submission apart (kubernetes: the root records a digest of the request) completes it instead of
   * refusing the id; a root of another request still gets RunIdTakenError. Backends that cannot (local) ignore it.
   */
  resumable?: boolean;
}

export interface LogLine {
  runnable: string;
  instance: string;
  line: string;
  /** Set when the backend knows the stream. */
  stream?: 'stdout' | 'stderr';
}

export interface LogOptions {
  follow?: boolean;
  runnable?: string;
  instance?: string;
  /** Aborts a followed stream. */
  signal?: AbortSignal;
  /** Only the last N lines per instance. */
  tail?: number;
}

export interface ResourceReportEntry {
  runnable: string;
  instance: string;
  host?: string;
  containerId?: string;
  state: InstanceState;
  /** Requested resources (as in the spec). */
  cpu: string;
  memory: string;
  /** Measured usage when the backend can (metrics API, cgroup). */
  usage?: { cpuMillicores?: number; memoryBytes?: number };
}

export interface ResourceReport {
  runId: string;
  app: string;
  instances: ResourceReportEntry[];
  /** Why measured usage is missing for some instances (e.g. no metrics API in the cluster). */
  usageUnavailable?: string;
}

export interface Endpoint {
  name: string;
  host: string;
  port: number;
}

/** Called with a fresh snapshot whenever a run's state, message or instances change. */
export type StatusListener = (status: RunStatus) => void;

/**
 * The backend SPI. Every method is keyed by run id, so a backend keeps no
 * per-controller objects and a restarted process can serve runs it did not start.
 */
export interface Runtime {
  readonly name: 'kubernetes' | 'local';
  /** Creates the run's objects and returns its first status (PENDING, or REJECTED with a message). */
  submit(request: RunRequest): Promise<RunStatus>;
  /** Current status of one run, or undefined when the backend knows no such run. */
  status(runId: string): Promise<RunStatus | undefined>;
  /** Every run the backend can find (live ones, and finished ones not yet cleaned up). */
  list(filter?: { app?: string; liveOnly?: boolean }): Promise<RunStatus[]>;
  /** Subscribes to status changes of every run; returns the unsubscribe function. Starts tracking lazily. */
  watch(listener: StatusListener): () => void;
  /** Graceful stop: the run goes STOPPING, then KILLED once every instance is gone. */
  stop(runId: string, options?: { gracePeriodMs?: number }): Promise<void>;
  /** Immediate stop (grace period 0). */
  kill(runId: string): Promise<void>;
  /** Sets the instance count of one runnable. */
  scale(runId: string, runnable: string, instances: number): Promise<void>;
  /** Restarts the given instances of a runnable (all when `instances` is omitted). */
  restart(runId: string, runnable: string, instances?: string[]): Promise<void>;
  /** Suspends or resumes a run (batch runnables). */
  suspend(runId: string, suspended: boolean): Promise<void>;
  /** Delivers a command to the instances (of one runnable when given). */
  sendCommand(runId: string, command: string, options?: { runnable?: string; payload?: string }): Promise<void>;
  resourceReport(runId: string): Promise<ResourceReport>;
  logs(runId: string, options?: LogOptions): AsyncIterable<LogLine>;
  /** Endpoints of a service a run announced (a port name of one of its runnables). */
  discover(runId: string, service: string): Promise<Endpoint[]>;
  /** Stops watches and timers; the runs themselves keep going. */
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------
// The Twill-style API

export interface Preparer {
  /** Arguments for one runnable (appended to its spec args). */
  withArguments(runnable: string, args: string[]): Preparer;
  /** Arguments for every runnable (appended). */
  withApplicationArguments(args: string[]): Preparer;
  /** Environment for every runnable, or for one when `runnable` is given. */
  withEnv(env: Record<string, string>, runnable?: string): Preparer;
  withResources(runnable: string, resources: Partial<Resources>): Preparer;
  withInstances(runnable: string, instances: number): Preparer;
  /** Files the program reads at /etc/weft/files/<name>. A string is a path on this machine. */
  withFiles(files: Array<string | { name: string; data: Buffer | string }>, runnable?: string): Preparer;
  setStartTimeout(ms: number | string): Preparer;
  /** Submits the run and returns its controller. */
  start(): Promise<Controller>;
}

export interface Controller {
  readonly runId: string;
  readonly app: string;
  /** The last state seen. */
  readonly state: RunState;
  /** The last status snapshot seen. */
  readonly status: RunStatus;
  /** Resolves when the run reaches RUNNING (rejects if it ends first). */
  onRunning(): Promise<RunStatus>;
  /** Resolves with the final status when the run reaches a terminal state. */
  onTerminated(): Promise<RunStatus>;
  /** Like onTerminated, with an optional timeout (rejects on timeout). */
  awaitTerminated(timeoutMs?: number): Promise<RunStatus>;
  /** Subscribes to status changes; returns the unsubscribe function. */
  onChange(listener: StatusListener): () => void;
  /** Graceful stop; resolves when the stop was issued (await onTerminated for the end). */
  terminate(gracePeriodMs?: number): Promise<void>;
  kill(): Promise<void>;
  changeInstances(runnable: string, instances: number): Promise<void>;
  restartInstances(runnable: string, instances?: Array<string | number>): Promise<void>;
  restartAllInstances(runnable: string): Promise<void>;
  suspend(): Promise<void>;
  resume(): Promise<void>;
  sendCommand(command: string, options?: { runnable?: string; payload?: string }): Promise<void>;
  getResourceReport(): Promise<ResourceReport>;
  logs(options?: LogOptions): AsyncIterable<LogLine>;
  discoverService(service: string): Promise<Endpoint[]>;
  /** Stops this controller's subscription (does not stop the run). */
  release(): void;
}

export interface TwillRunner {
  readonly runtime: Runtime;
  prepare(spec: AppSpec): Preparer;
  /** Controllers of the live runs of an application. */
  lookup(app: string): Promise<Controller[]>;
  /** Controller of one run, live or finished, by id. */
  lookupRun(runId: string): Promise<Controller | undefined>;
  /** Controllers of every live run. */
  lookupLive(): Promise<Controller[]>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------
// Backend options

export interface KubernetesRuntimeOptions {
  runtime: 'kubernetes';
  /** Path to a kubeconfig; otherwise KUBECONFIG, ~/.kube/config, or in-cluster. */
  kubeconfig?: string;
  context?: string;
  /** Namespace for new runs and the only one tracked; the context's namespace or "default" when unset. */
  namespace?: string;
  /** Resync period of the informers (ms); default 5 min. */
  resyncMs?: number;
}

export interface LocalRuntimeOptions {
  runtime: 'local';
  /** Where the local backend keeps run state; its default when unset. */
  stateDir?: string;
  /** runc, host, or auto (default: $WEFT_LOCAL_MODE, else auto: runc when it can run here). */
  mode?: 'runc' | 'host' | 'auto';
  /** The runc binary (default: runc on PATH). */
  runc?: string;
  /** java for host-process mode (default: $JAVA_HOME/bin/java, else java on PATH). */
  java?: string;
  /** Status poll interval while someone watches (ms, default 300). */
  pollMs?: number;
  /** Apply cpu/memory limits with cgroups in runc mode (default true). */
  limits?: boolean;
  /** Where images are stored and unpacked (default <stateDir>/images). */
  imageDir?: string;
  /**
   * runc mode: `private` (default; $WEFT_LOCAL_NETWORK overrides) gives each instance its
   * own network namespace with loopback only, its announced ports published on the host's
   * 127.0.0.1, as podman does; `host` shares the host's network, for programs that must
   * reach services on this machine or elsewhere (see docs/security.md).
   */
  network?: 'host' | 'private';
}

export type RunnerOptions = KubernetesRuntimeOptions | LocalRuntimeOptions;

/** Signature of the factory each backend's index.ts exports as `createRuntime`. */
export type RuntimeFactory<O extends RunnerOptions = RunnerOptions> = (options: O) => Promise<Runtime>;
