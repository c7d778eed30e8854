// `weft master`: parses options, starts the master (src/master), prints where it listens.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { InvalidArgumentError, type Command } from 'commander';
import { weftStateDir } from '../../common/index.js';
import { progress } from '../output.js';

function defaultTokenFile(): string {
  return weftStateDir('master', 'admin-token');
}

const positiveInt = (v: string) => {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new InvalidArgumentError('give a whole number >= 1');
  return Number(v);
};

export function register(program: Command): void {
  program
    .command('master')
    .description('run the weft master: a run store, a REST API under /api/v1, reconciliation and archived logs (docs/master.md)')
    .option('--addr <host:port>', 'where to listen', '127.0.0.1:8420')
    .option('--store <location>', 'sqlite:<file> or postgres://user:password@host:port/db (default: a SQLite file under the XDG state dir)')
    .option('--runtime <name>', 'kubernetes or local', process.env.WEFT_RUNTIME ?? 'local')
    .option('--admin-token-file <file>', 'the admin token: read when the file exists, else a new one is written there (mode 0600)', defaultTokenFile())
    .option('--admission-limit <n>', 'live runs allowed per namespace', positiveInt)
    .option('--reconcile-interval <seconds>', 'how often store and runtime are reconciled', positiveInt, 30)
    .option('--dashboard-dir <dir>', 'the built web dashboard to serve at / (default: dist/dashboard, built by scripts/setup)')
    .option('--no-dashboard', 'serve no web dashboard, only the API')
    .option('--tls-cert <file>', 'serve HTTPS with this certificate (PEM)')
    .option('--tls-key <file>', 'the key of --tls-cert (PEM)')
    .option('--kubeconfig <file>', 'kubeconfig for --runtime kubernetes')
    .option('--context <name>', 'kubeconfig context')
    .option('-n, --namespace <name>', 'Kubernetes namespace for runs')
    .option('--leader-election <backend>', 'several masters on one PostgreSQL store: elect the one that tracks runs, archives logs and reconciles (etcd or kubernetes)')
    .option('--etcd-endpoints <urls>', 'comma-separated etcd URLs for --leader-election etcd (default: $WEFT_ETCD_ENDPOINTS)')
    .option('--lease-duration <seconds>', 'how long followers wait for a silent leader before taking over (default 15)', positiveInt)
    .option('--handover-timeout <seconds>', 'how long a master may take to hand an admitted run to the runtime before the leader does it (default 15)', positiveInt)
    .action(
      async (flags: {
        addr: string;
        store?: string;
        runtime: string;
        adminTokenFile: string;
        admissionLimit?: number;
        reconcileInterval: number;
        tlsCert?: string;
        dashboardDir?: string;
        dashboard?: boolean;
        tlsKey?: string;
        kubeconfig?: string;
        context?: string;
        namespace?: string;
        leaderElection?: string;
        etcdEndpoints?: string;
        leaseDuration?: number;
        handoverTimeout?: number;
      }) => {
        if (flags.runtime !== 'local' && flags.runtime !== 'kubernetes') throw new Error(`unknown runtime "${flags.runtime}": use --runtime kubernetes or --runtime local`);
        if (!!flags.tlsCert !== !!flags.tlsKey) throw new Error('give both --tls-cert and --tls-key, or neither');
        const { startMaster, redactUrl } = await import('../../master/index.js');
        let coordination: import('../../coord/index.js').Coordination | undefined;
        if (flags.leaderElection) {
          if (flags.leaderElection !== 'etcd' && flags.leaderElection !== 'kubernetes') throw new Error('--leader-election is etcd or kubernetes');
          if (!flags.store?.startsWith('postgres')) throw new Error('several masters need one shared store: give --store postgres://...');
          const { createCoordination } = await import('../../coord/index.js');
          const lease = (flags.leaseDuration ?? 15) * 1000;
          const timings = { leaseDurationMs: lease, renewDeadlineMs: Math.round(lease * 0.66), retryPeriodMs: Math.max(100, Math.round(lease / 7.5)) };
          const endpoints = (flags.etcdEndpoints ?? process.env.WEFT_ETCD_ENDPOINTS ?? '').split(',').filter(Boolean);
          if (flags.leaderElection === 'etcd' && endpoints.length === 0) throw new Error('--leader-election etcd needs --etcd-endpoints or $WEFT_ETCD_ENDPOINTS');
          coordination =
            flags.leaderElection === 'etcd'
              ? await createCoordination({ backend: 'etcd', endpoints, timings })
              : await createCoordination({ backend: 'kubernetes', kubeconfig: flags.kubeconfig, namespace: flags.namespace, timings });
        }
        const master = await startMaster({
          addr: flags.addr,
          store: flags.store,
          runtime: flags.runtime === 'kubernetes' ? { runtime: 'kubernetes', kubeconfig: flags.kubeconfig, context: flags.context, namespace: flags.namespace } : { runtime: 'local' },
          adminTokenFile: flags.adminTokenFile,
          admissionLimit: flags.admissionLimit,
          reconcileIntervalMs: flags.reconcileInterval * 1000,
          handoverTimeoutMs: flags.handoverTimeout !== undefined ? flags.handoverTimeout * 1000 : undefined,
          pauseHandovers: pauseHandoversFromEnv(),
          dashboardDir: flags.dashboard === false ? false : flags.dashboardDir,
          tls: flags.tlsCert ? { cert: readFileSync(flags.tlsCert), key: readFileSync(flags.tlsKey!) } : undefined,
          election: coordination ? { elector: coordination.elector, candidateId: `${os.hostname()}-${process.pid}` } : undefined,
          log: (message, fields) => progress(JSON.stringify({ time: new Date().toISOString(), msg: message, ...fields })),
        });
        const store = flags.store?.startsWith('postgres') ? redactUrl(flags.store) : (flags.store ?? 'sqlite (default file)');
        progress(`weft master listening on ${master.url} (store ${store}, runtime ${flags.runtime}${flags.dashboard === false ? '' : '; the dashboard is at /'})`);
        if (master.adminTokenCreated) progress(`a new admin token was written to ${flags.adminTokenFile}`);
        // stdout carries only the URL, for scripts.
        process.stdout.write(`${master.url}\n`);
        await new Promise<void>((resolve) => {
          const stop = () => resolve();
          process.once('SIGTERM', stop);
          process.once('SIGINT', stop);
        });
        progress('weft master stopping');
        await master.close();
        await coordination?.close();
      },
    );
}

/**
 * Test hook for the hand-over crash tests: WEFT_MASTER_TEST_PAUSE_HANDOVER=<n> makes this master stop before its
 * n-th hand-over of a run to the runtime (and every later one), say so on stderr, and wait to be SIGKILLed.
 */
function pauseHandoversFromEnv(): { from: number; onPaused: (runId: string) => void } | undefined {
  const value = process.env.WEFT_MASTER_TEST_PAUSE_HANDOVER;
  if (!value) return undefined;
  const from = Number(value);
  if (!Number.isSafeInteger(from) || from < 1) throw new Error(`WEFT_MASTER_TEST_PAUSE_HANDOVER must be a positive integer (got "${value}")`);
  return { from, onPaused: (runId) => process.stderr.write(`weft master: test hook: paused before handing run ${runId} to the runtime\n`) };
}
