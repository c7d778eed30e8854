// Failover benchmark: three candidates per backend, the leader killed N times
// (SIGKILL of a real process for etcd and Kubernetes; a simulated crash for memory),
// time from the kill to another candidate's `elected`. Prints median and p99 per
// backend and the ratio to the lease duration, plus the safety check of each run.
//
// Usage: node dist/bench/coord-failover.js [--kills N] [--backends memory,etcd,kubernetes]
//          [--lease MS --renew MS --retry MS]
// Needs WEFT_ETCD_ENDPOINTS for etcd and KUBECONFIG for kubernetes (bench/coord-failover.sh sets both).
import { parseArgs } from 'node:util';
import { runCandidate, type CandidateEvent, type RunningCandidate } from '../test/support/coord-candidate.js';
import { MemoryCluster, resolveTimings, type LeaseTimings, type MemoryCoordination } from '../src/coord/index.js';
import { checkSafety, isElected, median, percentile, Timeline } from '../test/coord/harness.js';
import { failover, type BackendUnderTest } from '../test/coord/scenarios.js';
import { loadKubeConfig } from '../src/kube-client/index.js';
import { CoreV1Api } from '@kubernetes/client-node';
import { uniq } from '../test/coord/scenarios.js';

const { values } = parseArgs({
  options: {
    kills: { type: 'string', default: '10' },
    backends: { type: 'string', default: 'memory,etcd,kubernetes' },
    lease: { type: 'string', default: '3000' },
    renew: { type: 'string', default: '2000' },
    retry: { type: 'string', default: '500' },
    /** Kubernetes namespace; default: a fresh one, deleted at the end. */
    namespace: { type: 'string', default: '' },
    /** Path of the Go peer (bench/coord-peer: client-go leaderelection, etcd concurrency.Election); '' = no peers. */
    peer: { type: 'string', default: process.env.WEFT_COORD_PEER ?? '' },
  },
});
const kills = Number(values.kills);
if (!Number.isInteger(kills) || kills < 1) throw new Error('--kills must be a positive integer');
const timings: LeaseTimings = resolveTimings({ leaseDurationMs: Number(values.lease), renewDeadlineMs: Number(values.renew), retryPeriodMs: Number(values.retry) });

async function memoryFailover(n: number): Promise<{ failoversMs: number[]; problems: string[] }> {
  const cluster = new MemoryCluster();
  const timeline = new Timeline();
  const running = new Map<string, RunningCandidate>();
  const start = async (id: string) =>
    running.set(id, await runCandidate({ election: { backend: 'memory', cluster }, log: { backend: 'memory', cluster }, name: 'bench', id, logName: 'bench', actionIntervalMs: 100, timings }, (e) => timeline.push(e)));
  for (const id of ['c1', 'c2', 'c3']) await start(id);
  const patience = 3 * timings.leaseDurationMs + 10_000;
  const failoversMs: number[] = [];
  type Elected = Extract<CandidateEvent, { ev: 'elected' }>;
  let leader: Elected = await timeline.waitFor(isElected, patience, 'a leader');
  for (let k = 0; k < n; k++) {
    const from = timeline.events.length;
    const victim = running.get(leader.id)!;
    (victim.election as MemoryCoordination).simulateCrash();
    (victim.log as MemoryCoordination).simulateCrash();
    running.delete(leader.id);
    const killedAt = timeline.mark('killed', leader.id);
    const next: Elected = await timeline.waitFor((e): e is Elected => isElected(e) && e.id !== leader.id, patience, 'a new leader', from);
    failoversMs.push(next.at - killedAt);
    leader = next;
    await start(`c${4 + k}`);
  }
  for (const c of running.values()) await c.stop();
  return { failoversMs, problems: checkSafety(cluster.readLog('bench'), timeline.events) };
}

function backend(name: 'etcd' | 'kubernetes'): BackendUnderTest {
  if (name === 'etcd') {
    const endpoints = process.env.WEFT_ETCD_ENDPOINTS;
    if (!endpoints) throw new Error('WEFT_ETCD_ENDPOINTS is not set: run bench/coord-failover.sh, or start etcd and export it');
    const url = new URL(endpoints.split(',')[0]!);
    return { target: { host: url.hostname, port: Number(url.port) }, timings, options: () => ({ backend: 'etcd', endpoints: endpoints.split(','), prefix: 'weft-bench/', timings }) };
  }
  const kubeconfig = process.env.KUBECONFIG;
  if (!kubeconfig) throw new Error('KUBECONFIG is not set: run bench/coord-failover.sh, or scripts/k8s-testenv up and export it');
  const server = new URL(loadKubeConfig({ kubeconfig }).getCurrentCluster()!.server);
  return { target: { host: server.hostname, port: Number(server.port) }, timings, options: () => ({ backend: 'kubernetes', kubeconfig, namespace: values.namespace!, timings }) };
}

let ownNamespace = false;
if (values.backends!.split(',').includes('kubernetes') && !values.namespace) {
  const kubeconfig = process.env.KUBECONFIG;
  if (!kubeconfig) throw new Error('KUBECONFIG is not set: run bench/coord-failover.sh, or scripts/k8s-testenv up and export it');
  values.namespace = uniq('weft-coord-bench');
  await loadKubeConfig({ kubeconfig }).makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: values.namespace } } });
  ownNamespace = true;
}
const rows: string[] = [];
console.log(`timings: leaseDuration ${timings.leaseDurationMs} ms, renewDeadline ${timings.renewDeadlineMs} ms, retryPeriod ${timings.retryPeriodMs} ms; ${kills} kills per backend`);
const ms = (n: number) => `${n}ms`;
const peerArgv = (name: 'etcd' | 'kubernetes') => (election: string, id: string): string[] => {
  const t = ['-lease', ms(timings.leaseDurationMs), '-renew', ms(timings.renewDeadlineMs), '-retry', ms(timings.retryPeriodMs)];
  return name === 'etcd'
    ? [values.peer!, 'etcd', '-name', election, '-id', id, '-endpoints', process.env.WEFT_ETCD_ENDPOINTS!.split(',')[0]!, ...t]
    : [values.peer!, 'kube', '-name', election, '-id', id, '-kubeconfig', process.env.KUBECONFIG!, '-namespace', values.namespace!, ...t];
};
const runs: Array<{ label: string; run: () => Promise<{ failoversMs: number[]; problems: string[] }> }> = [];
for (const name of values.backends!.split(',')) {
  if (name === 'memory') runs.push({ label: 'weft memory', run: () => memoryFailover(kills) });
  else if (name === 'etcd' || name === 'kubernetes') {
    // weft and its peer alternate, so both see the same machine load.
    runs.push({ label: `weft ${name}`, run: () => failover(backend(name), kills) });
    if (values.peer) runs.push({ label: name === 'etcd' ? 'peer etcd: concurrency.Election (Go)' : 'peer kubernetes: client-go leaderelection (Go)', run: () => failover(backend(name), kills, undefined, peerArgv(name)) });
  } else throw new Error(`unknown backend ${name}: use memory, etcd or kubernetes`);
}
const medians = new Map<string, number>();
for (const { label: name, run } of runs) {
  const started = Date.now();
  const r = await run();
  const med = median(r.failoversMs);
  const p99 = percentile(r.failoversMs, 99);
  const row = `| ${name} | ${kills} | ${med.toFixed(0)} | ${p99.toFixed(0)} | ${Math.min(...r.failoversMs)} | ${Math.max(...r.failoversMs)} | ${(med / timings.leaseDurationMs).toFixed(2)} | ${r.problems.length === 0 ? 'safe' : `VIOLATIONS: ${r.problems.join('; ')}`} |`;
  rows.push(row);
  medians.set(name, med);
  console.log(`${name}: failovers ms = ${r.failoversMs.join(', ')} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
}
console.log('\n| backend | kills | median ms | p99 ms | min ms | max ms | median / leaseDuration | fencing-log check |');
console.log('|---|---|---|---|---|---|---|---|');
for (const r of rows) console.log(r);
for (const b of ['etcd', 'kubernetes']) {
  const w = medians.get(`weft ${b}`);
  const p = [...medians.entries()].find(([k]) => k.startsWith(`peer ${b}`))?.[1];
  if (w !== undefined && p !== undefined) console.log(`ratio weft/peer (${b}, median failover): ${(w / p).toFixed(2)}`);
}
if (ownNamespace) await loadKubeConfig({ kubeconfig: process.env.KUBECONFIG }).makeApiClient(CoreV1Api).deleteNamespace({ name: values.namespace! }).catch(() => undefined);
process.exit(0); // candidate processes are gone; don't wait for idle client connections
