// weft coord: leader election, locks and discovery from the shell (parsing and printing only; logic in src/coord).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { Command } from 'commander';
import type { Coordination, CoordinationOptions, LeaderCommandEvent } from '../../coord/index.js';
import { printJson, progress } from '../output.js';

interface BackendFlags {
  backend?: string;
  etcdEndpoints?: string;
  namespace?: string;
  kubeconfig?: string;
  leaseDuration?: string;
  renewDeadline?: string;
  retryPeriod?: string;
  json?: boolean;
}

function withBackendFlags(cmd: Command): Command {
  return cmd
    .option('--backend <backend>', 'kubernetes | etcd | memory (default: etcd if --etcd-endpoints or WEFT_ETCD_ENDPOINTS is set, else kubernetes)')
    .option('--etcd-endpoints <urls>', 'comma-separated etcd URLs (default: $WEFT_ETCD_ENDPOINTS)')
    .option('--namespace <ns>', 'Kubernetes namespace for Leases (default: the kubeconfig context\'s)')
    .option('--kubeconfig <path>', 'kubeconfig (default: $KUBECONFIG, ~/.kube/config or in-cluster)')
    .option('--lease-duration <ms>', 'lease duration in ms (default 15000)')
    .option('--renew-deadline <ms>', 'renew deadline in ms (default 10000)')
    .option('--retry-period <ms>', 'retry period in ms (default 2000)')
    .option('--json', 'print JSON');
}

function ms(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${flag} must be a positive number of milliseconds, got "${value}"`);
  return n;
}

function options(f: BackendFlags): CoordinationOptions {
  const endpoints = f.etcdEndpoints ?? process.env.WEFT_ETCD_ENDPOINTS;
  const backend = f.backend ?? (endpoints ? 'etcd' : 'kubernetes');
  const timings = { leaseDurationMs: ms('lease-duration', f.leaseDuration), renewDeadlineMs: ms('renew-deadline', f.renewDeadline), retryPeriodMs: ms('retry-period', f.retryPeriod) };
  switch (backend) {
    case 'etcd':
      if (!endpoints) throw new Error('the etcd backend needs --etcd-endpoints http://HOST:PORT (or WEFT_ETCD_ENDPOINTS)');
      return { backend, endpoints: endpoints.split(','), timings };
    case 'kubernetes':
      return { backend, namespace: f.namespace, kubeconfig: f.kubeconfig, timings };
    case 'memory':
      return { backend, timings };
    default:
      throw new Error(`unknown --backend "${backend}": use kubernetes, etcd or memory`);
  }
}

function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
}

function describeLeaderEvent(name: string, e: LeaderCommandEvent): string {
  switch (e.ev) {
    case 'elected':
      return `${e.id} leads "${name}" (fencing token ${e.token})`;
    case 'started':
      return `command started (pid ${e.pid})`;
    case 'stepdown':
      return `${e.id} stepped down: ${e.reason}`;
    case 'stopping':
      return `stopping the command (${e.signal})`;
    case 'exited':
      return `command exited with code ${e.code}`;
  }
}

function out(json: boolean | undefined, value: Record<string, unknown>, human: string): void {
  if (json) process.stdout.write(`${JSON.stringify(value)}\n`);
  else progress(human);
}

export function register(program: Command): void {
  const coord = program.command('coord').description('Leader election, locks and service discovery on Kubernetes Leases or etcd (see docs/coordination.md)');

  withBackendFlags(
    coord
      .command('elect')
      .description('Join an election. With a command (after --): run it only while leading, stop it when leadership is lost, exit with its code. Without: report when this process leads, until interrupted')
      .argument('[name]', 'election name (or --name)')
      .argument('[command...]', 'command to run while leader (after --)'),
  )
    .option('--name <name>', 'election name')
    .option('--id <id>', 'this candidate\'s unique id (default: <hostname>-<8 random hex digits>, unique per process, also for a container restarted in its pod, where the pid is always 1)')
    .option('--grace <ms>', 'with a command: time between SIGTERM and SIGKILL when it must stop (default 10000)')
    .option('--heartbeat <ms>', 'without a command: while leading, also print a "leading" event with the fencing token every <ms> (a fencing log: every line of a term comes before the next term\'s "elected")')
    .action(async (positional: string | undefined, rest: string[], f: BackendFlags & { name?: string; id?: string; grace?: string; heartbeat?: string }) => {
      // With --name every positional argument belongs to the command.
      const name = f.name ?? positional;
      const command = f.name ? [positional, ...rest].filter((a): a is string => a !== undefined) : rest;
      if (!name) throw new Error('an election name is needed: weft coord elect --name <name> [-- <command>]');
      const id = f.id ?? `${os.hostname()}-${randomBytes(4).toString('hex')}`;
      const heartbeat = ms('heartbeat', f.heartbeat);
      if (heartbeat !== undefined && command.length > 0) throw new Error('--heartbeat is for an election without a command (the command gets the token in WEFT_LEADER_TOKEN)');
      const c: Coordination = await connect(options(f));
      try {
        if (command.length === 0) {
          const h = await c.elector.electLeader(name, id, {
            onElected: (token) => out(f.json, { ev: 'elected', id, token, at: Date.now() }, `${id} leads "${name}" (fencing token ${token})`),
            onStepDown: (reason) => out(f.json, { ev: 'stepdown', id, reason, at: Date.now() }, `${id} stepped down: ${reason}`),
          });
          // The token is read at each beat: undefined (nothing printed) once this candidate stopped leading.
          const beat = heartbeat === undefined ? undefined : setInterval(() => {
            const token = h.fencingToken;
            if (token !== undefined) out(f.json, { ev: 'leading', id, token, at: Date.now() }, `${id} leads "${name}" (fencing token ${token})`);
          }, heartbeat);
          await untilSignal();
          clearInterval(beat);
          await h.resign();
          return;
        }
        const { runWhileLeader } = await import('../../coord/index.js');
        const abort = new AbortController();
        const onSignal = () => abort.abort();
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        try {
          const result = await runWhileLeader(c.elector, {
            name,
            candidateId: id,
            command,
            gracePeriodMs: ms('grace', f.grace),
            signal: abort.signal,
            onEvent: (e) => out(f.json, e, describeLeaderEvent(name, e)),
          });
          process.exitCode = result.code;
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
        }
      } finally {
        await c.close();
      }
    });

  withBackendFlags(coord.command('lock <name>').description('Run a command while holding a lock; the command gets WEFT_LOCK_TOKEN'))
    .option('--timeout <ms>', 'give up after this long')
    .argument('<command...>', 'command to run (after --)')
    .action(async (name: string, command: string[], f: BackendFlags & { timeout?: string }) => {
      const c = await connect(options(f));
      try {
        const lock = await c.locks.acquire(name, { timeoutMs: ms('timeout', f.timeout), onLost: (r) => progress(`lock "${name}" lost: ${r}`) });
        out(f.json, { ev: 'acquired', lock: name, token: lock.token }, `acquired lock "${name}" (token ${lock.token})`);
        const code = await new Promise<number>((resolve, reject) => {
          const child = spawn(command[0]!, command.slice(1), { stdio: 'inherit', env: { ...process.env, WEFT_LOCK_TOKEN: String(lock.token) } });
          child.on('error', (e) => reject(new Error(`cannot run ${command[0]}: ${e.message}`)));
          child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
        }).finally(() => lock.release());
        process.exitCode = code;
      } finally {
        await c.close();
      }
    });

  withBackendFlags(coord.command('announce <service>').description('Announce an instance of a service until interrupted'))
    .requiredOption('--host <host>', 'host or IP address others connect to')
    .requiredOption('--port <port>', 'port', (v) => Number(v))
    .option('--payload <text>', 'extra data for discoverers')
    .action(async (service: string, f: BackendFlags & { host: string; port: number; payload?: string }) => {
      const c = await connect(options(f));
      const a = await c.discovery.announce(service, { host: f.host, port: f.port, payload: f.payload });
      out(f.json, { ev: 'announced', service, host: f.host, port: f.port }, `announced ${service} at ${f.host}:${f.port}`);
      await untilSignal();
      await a.cancel();
      await c.close();
    });

  withBackendFlags(coord.command('discover <service>').description('List the live instances of a service'))
    .option('--watch', 'keep printing the list on every change until interrupted')
    .action(async (service: string, f: BackendFlags & { watch?: boolean }) => {
      const c = await connect(options(f));
      const list = await c.discovery.discover(service);
      const print = (instances: ReturnType<typeof list.instances>) => {
        if (f.json) process.stdout.write(`${JSON.stringify(instances)}\n`);
        else if (!instances.length) process.stdout.write(`${service}: no instances\n`);
        else for (const i of instances) process.stdout.write(`${service}\t${i.host}:${i.port}\t${i.id}${i.payload ? `\t${i.payload}` : ''}\n`);
      };
      if (!f.watch) {
        if (f.json) printJson(list.instances());
        else print(list.instances());
      } else {
        print(list.instances());
        list.watch(print);
        await untilSignal();
      }
      await list.close();
      await c.close();
    });
}

/** Loads the coordination backends on use, so other commands start fast. */
async function connect(options: CoordinationOptions): Promise<Coordination> {
  const { createCoordination } = await import('../../coord/index.js');
  return createCoordination(options);
}
