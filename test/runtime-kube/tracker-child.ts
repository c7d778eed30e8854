// A weft process for the recovery test: starts runs, tracks them, prints one JSON line per event.
// Usage: node tracker-child.js <namespace> <services> <batches>
import { parseAppSpec, Runner } from '../../src/runtime/index.js';
import { createKubeRuntime } from '../../src/runtime/kube/index.js';

// `node --test dist/test/` also loads this file (it lives under test/): without arguments it does nothing.
if (process.argv.length < 5) process.exit(0);
const [namespace, services, batches] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
// Never outlive the test that started it.
process.on('disconnect', () => process.exit(0));
setTimeout(() => process.exit(0), 15 * 60_000).unref();
const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);

const runtime = await createKubeRuntime({ runtime: 'kubernetes', namespace });
const runner = new Runner(runtime);
const svc = parseAppSpec({ name: 'svc', runnables: [{ name: 'web', kind: 'service', image: 'registry.example/web:1', instances: 1 }] });
const job = parseAppSpec({
  name: 'job',
  runnables: [{ name: 'main', kind: 'batch', image: 'registry.example/job:1', kubernetes: { podAnnotations: { 'pod-complete.stage.kwok.x-k8s.io/delay': '20s' } } }],
});
const controllers = [];
for (let i = 0; i < services + batches; i++) {
  const c = await runner.prepare(i < services ? svc : job).start();
  controllers.push(c);
  out({ event: 'started', runId: c.runId, app: c.app });
}
await Promise.all(controllers.map((c) => c.onRunning()));
out({ event: 'ready' });
runtime.watch((s) => out({ event: 'status', runId: s.runId, state: s.state }));
// Keep tracking until killed.
setInterval(() => undefined, 60_000);
