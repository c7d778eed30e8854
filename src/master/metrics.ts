// Prometheus metrics of one master (its own registry, so two masters in one process do not collide).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { RUN_STATES } from '../runtime/index.js';
import type { Store } from './store/index.js';

export class MasterMetrics {
  readonly registry = new Registry();
  readonly requestDuration: Histogram<'method' | 'route' | 'code'>;
  readonly runDuration: Histogram<'state'>;
  readonly reconcilerActions: Counter<'action'>;
  readonly stuckStoppingKills: Counter;
  readonly submissions: Counter<'outcome'>;

  constructor(store: Store) {
    collectDefaultMetrics({ register: this.registry, prefix: 'weft_master_' });
    this.requestDuration = new Histogram({
      name: 'weft_master_http_request_duration_seconds',
      help: 'API request latency by route and status code',
      labelNames: ['method', 'route', 'code'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [this.registry],
    });
    this.runDuration = new Histogram({
      name: 'weft_master_run_duration_seconds',
      help: 'Duration of runs from creation to their terminal state',
      labelNames: ['state'],
      buckets: [1, 5, 15, 60, 300, 900, 3600, 14400, 86400],
      registers: [this.registry],
    });
    this.reconcilerActions = new Counter({
      name: 'weft_master_reconciler_actions_total',
      help: 'Corrections made by the reconciler (lost, adopted, synced, killed_stuck_stopping)',
      labelNames: ['action'],
      registers: [this.registry],
    });
    this.stuckStoppingKills = new Counter({
      name: 'weft_master_stuck_stopping_kills_total',
      help: 'Runs killed because they stayed STOPPING past their grace period',
      registers: [this.registry],
    });
    this.submissions = new Counter({
      name: 'weft_master_submissions_total',
      help: 'Run submissions by outcome (started, rejected, replayed, failed)',
      labelNames: ['outcome'],
      registers: [this.registry],
    });
    new Gauge({
      name: 'weft_master_runs',
      help: 'Runs in the store by state',
      labelNames: ['state'],
      registers: [this.registry],
      async collect() {
        const counts = await store.countByState();
        for (const state of RUN_STATES) this.set({ state }, counts[state] ?? 0);
      },
    });
  }
}
