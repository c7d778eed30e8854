// A fresh weft process that did not create the runs: it tracks every run in a namespace and reports
// its first sync, its API requests, its memory (the whole process), and every run it found.
// Started by bench/kube-runtime.ts:
//
//   node --expose-gc dist/bench/kube-track-fresh.js <namespace> <result.json> [steady-ms]
import { writeFile } from 'node:fs/promises';
import { createKubeRuntime } from '../src/runtime/kube/index.js';

const [namespace, resultFile, steadyArg] = process.argv.slice(2);
if (!namespace || !resultFile) throw new Error('usage: kube-track-fresh.js <namespace> <result.json> [steady-ms]');
const steadyMs = Number(steadyArg ?? 60_000);
const mib = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10;

const start = process.memoryUsage();
const runtime = await createKubeRuntime({ runtime: 'kubernetes', namespace });
const t0 = performance.now();
const runs = await runtime.list();
const syncMs = performance.now() - t0;
const syncRequests = { total: runtime.requests.total, byKind: { ...runtime.requests.byKind } };
// Peak during the sync (list pages in flight), then what stays once garbage is collected.
const peakRssMiB = mib(process.resourceUsage().maxRSS * 1024);
global.gc?.();
const synced = process.memoryUsage();
const before = runtime.requests.total;
await new Promise((resolve) => setTimeout(resolve, steadyMs));
const steadyRequests = runtime.requests.total - before;
global.gc?.();
const steady = process.memoryUsage();
const peakRssEndMiB = mib(process.resourceUsage().maxRSS * 1024);
await runtime.close();

const result = {
  namespace,
  syncMs: Math.round(syncMs),
  syncRequests,
  watches: runtime.requests.byKind.watch ?? 0,
  relists: runtime.tracker.relists,
  memory: {
    rssAtStartMiB: mib(start.rss),
    rssAfterSyncMiB: mib(synced.rss),
    heapAfterSyncMiB: mib(synced.heapUsed),
    peakRssMiB,
    rssAfterSteadyMiB: mib(steady.rss),
    heapAfterSteadyMiB: mib(steady.heapUsed),
    peakRssEndMiB,
    gcExposed: typeof global.gc === 'function',
  },
  steady: { seconds: steadyMs / 1000, requests: steadyRequests, perSecond: steadyRequests / (steadyMs / 1000) },
  runs: runs.map((s) => ({ runId: s.runId, app: s.app, state: s.state, message: s.message })),
};
await writeFile(resultFile, JSON.stringify(result));
process.stdout.write(`${JSON.stringify({ ...result, runs: result.runs.length })}\n`);
