// Starts a master: store (migrated), runtime, admin token, reconciler, API.
import type { LeaderElector } from '../coord/index.js';
import { createRuntime, type RunnerOptions, type Runtime } from '../runtime/index.js';
import { startApi, type ApiServer } from './api.js';
import { ensureAdminToken } from './auth.js';
import { MasterMetrics } from './metrics.js';
import { MasterService, type ServiceOptions } from './service.js';
import { openStore, type Store } from './store/index.js';

export interface MasterOptions {
  /** host:port to listen on (loopback by default). */
  addr?: string;
  /** sqlite:<file> or postgres://...; the SQLite file under the XDG state dir when unset. */
  store?: string;
  /** Backend options, or a runtime object (tests, embedding). */
  runtime: RunnerOptions | Runtime;
  /** The admin token file: read when it exists, else written with a new token (mode 0600). */
  adminTokenFile: string;
  admissionLimit?: number;
  reconcileIntervalMs?: number;
  stuckStoppingSlackMs?: number;
  submitGraceMs?: number;
  /** How long a master may take to hand an admitted run to the runtime before the leader takes over (ms). */
  handoverTimeoutMs?: number;
  /** Test hook: see ServiceOptions.pauseHandovers. */
  pauseHandovers?: ServiceOptions['pauseHandovers'];
  tls?: { cert: Buffer; key: Buffer };
  /** The built dashboard's folder (default dist/dashboard); false serves none. */
  dashboardDir?: string | false;
  /** Several masters on one PostgreSQL store: the leader (elected here) runs watch, archiver and reconciler; all serve the API. */
  election?: { elector: LeaderElector; name?: string; candidateId: string };
  log?: (message: string, fields?: Record<string, unknown>) => void;
}

export interface RunningMaster {
  url: string;
  port: number;
  store: Store;
  runtime: Runtime;
  service: MasterService;
  metrics: MasterMetrics;
  api: ApiServer;
  adminTokenCreated: boolean;
  close(): Promise<void>;
}

function isRuntime(value: MasterOptions['runtime']): value is Runtime {
  return typeof (value as Runtime).submit === 'function';
}

export async function startMaster(options: MasterOptions): Promise<RunningMaster> {
  const store = await openStore(options.store);
  let runtime: Runtime | undefined;
  let api: ApiServer | undefined;
  let service: MasterService | undefined;
  try {
    const { created } = await ensureAdminToken(store, options.adminTokenFile);
    runtime = isRuntime(options.runtime) ? options.runtime : await createRuntime(options.runtime);
    const metrics = new MasterMetrics(store);
    service = new MasterService({
      store,
      runtime,
      metrics,
      admissionLimit: options.admissionLimit,
      reconcileIntervalMs: options.reconcileIntervalMs,
      stuckStoppingSlackMs: options.stuckStoppingSlackMs,
      submitGraceMs: options.submitGraceMs,
      handoverTimeoutMs: options.handoverTimeoutMs,
      pauseHandovers: options.pauseHandovers,
      log: options.log,
      election: options.election,
    });
    let ready = false;
    api = await startApi({ addr: options.addr ?? '127.0.0.1:8420', service, metrics, ready: () => ready, log: options.log, tls: options.tls, dashboardDir: options.dashboardDir });
    await service.start();
    ready = true;
    const ownsRuntime = !isRuntime(options.runtime);
    const started = { api, service, runtime };
    return {
      url: api.url,
      port: api.port,
      store,
      runtime,
      service,
      metrics,
      api,
      adminTokenCreated: created,
      async close() {
        await started.api.close();
        await started.service.close();
        if (ownsRuntime) await started.runtime.close();
        await store.close();
      },
    };
  } catch (error) {
    await api?.close().catch(() => undefined);
    await service?.close().catch(() => undefined);
    if (runtime && !isRuntime(options.runtime)) await runtime.close().catch(() => undefined);
    await store.close().catch(() => undefined);
    throw error;
  }
}
