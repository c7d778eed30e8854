// A leader-election candidate as a process: joins an election and, while it leads,
// performs a leader-only action every `actionIntervalMs` (appending (token, id) to a
// fenced log). It prints one JSON event per line on stdout. The failover tests and
// bench/coord-failover run three of these and SIGKILL the leader.
//
// Run: node dist/test/support/coord-candidate.js '<CandidateConfig as JSON>'
import { pathToFileURL } from 'node:url';
import { createCoordination, StaleTokenError, type Coordination, type CoordinationOptions, type LeaderHandle, type LeaseTimings } from '../../src/coord/index.js';

export interface CandidateConfig {
  /** Where the election runs (may go through a proxy the test can cut). */
  election: CoordinationOptions;
  /** Where the fenced log lives (a direct connection); defaults to `election`. */
  log?: CoordinationOptions;
  /** Election to join; empty = do not campaign (announce only). */
  name: string;
  id: string;
  /** Also announce a service instance for as long as the process lives. */
  announce?: { service: string; host: string; port: number; payload?: string };
  logName: string;
  actionIntervalMs: number;
  timings?: Partial<LeaseTimings>;
}

export type CandidateEvent =
  | { ev: 'ready'; id: string; at: number }
  | { ev: 'elected'; id: string; token: number; at: number }
  | { ev: 'stepdown'; id: string; reason: string; at: number }
  | { ev: 'append'; id: string; token: number; ok: boolean; error?: string; at: number }
  | { ev: 'error'; id: string; message: string; at: number };

export interface RunningCandidate {
  stop(): Promise<void>;
  /** The coordination the election runs on, and the one the log is written through. */
  election: Coordination;
  log: Coordination;
}

export async function runCandidate(config: CandidateConfig, emit: (e: CandidateEvent) => void): Promise<RunningCandidate> {
  const { id } = config;
  const election = await createCoordination({ ...config.election, timings: config.timings ?? config.election.timings } as CoordinationOptions);
  const logCoord = config.log ? await createCoordination({ ...config.log, timings: config.timings ?? config.log.timings } as CoordinationOptions) : election;
  const log = logCoord.fencedLog(config.logName);
  let term = 0;
  const act = async (myTerm: number, token: number): Promise<void> => {
    while (term === myTerm && (handle === undefined || handle.isLeader)) {
      try {
        await log.append(token, id);
        emit({ ev: 'append', id, token, ok: true, at: Date.now() });
      } catch (error) {
        const stale = error instanceof StaleTokenError;
        emit({ ev: 'append', id, token, ok: false, error: stale ? 'stale' : (error as Error).message, at: Date.now() });
      }
      await new Promise((resolve) => setTimeout(resolve, config.actionIntervalMs));
    }
  };
  const announced = config.announce
    ? await election.discovery.announce(config.announce.service, { host: config.announce.host, port: config.announce.port, payload: config.announce.payload })
    : undefined;
  if (!config.name) {
    emit({ ev: 'ready', id, at: Date.now() });
    return {
      election,
      log: logCoord,
      async stop() {
        await announced?.cancel();
        await election.close();
        if (logCoord !== election) await logCoord.close();
      },
    };
  }
  let handle: LeaderHandle | undefined;
  handle = await election.elector.electLeader(config.name, id, {
    onElected(token) {
      term++;
      emit({ ev: 'elected', id, token, at: Date.now() });
      void act(term, token);
    },
    onStepDown(reason) {
      term++;
      emit({ ev: 'stepdown', id, reason, at: Date.now() });
    },
  });
  emit({ ev: 'ready', id, at: Date.now() });
  return {
    election,
    log: logCoord,
    async stop() {
      await handle!.resign();
      await announced?.cancel();
      await election.close();
      if (logCoord !== election) await logCoord.close();
    },
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const raw = process.argv[2];
  if (!raw) {
    process.stderr.write('usage: node coord-candidate.js \'{"election":{"backend":"etcd","endpoints":["http://127.0.0.1:2379"]},"name":"e","id":"c1","logName":"l","actionIntervalMs":100}\'\n');
    process.exit(2);
  }
  const config = JSON.parse(raw) as CandidateConfig;
  const emit = (e: CandidateEvent) => process.stdout.write(`${JSON.stringify(e)}\n`);
  runCandidate(config, emit).then(
    (running) => {
      const shutdown = () => {
        running.stop().finally(() => process.exit(0));
      };
      process.on('SIGTERM', shutdown);
      process.on('SIGINT', shutdown);
    },
    (error: unknown) => {
      emit({ ev: 'error', id: config.id, message: (error as Error).message, at: Date.now() });
      process.exit(1);
    },
  );
}
