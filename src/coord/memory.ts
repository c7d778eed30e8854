// Memory backend: one process, for tests and local runs. Behaves like the
// networked backends (leases expire unless renewed, compare-and-swap writes), and
// can simulate a crash or a network partition of one participant.
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { CampaignRegistry, leaseElector, leaseLocks } from './lease-backend.js';
import { ConflictError, type LeaseRecord, type LeaseRecordStore, type VersionedRecord } from './lease-campaign.js';
import { LiveServiceList } from './service-list.js';
import {
  checkName,
  StaleTokenError,
  type Cancellable,
  type Coordination,
  type Discovery,
  type FencedEntry,
  type FencedLog,
  type LeaseTimings,
  type ServiceDiscovered,
  type ServiceEndpoint,
  type ServiceInstance,
} from './types.js';

interface Announced {
  instance: ServiceInstance;
  expiresAt: number;
  timer: NodeJS.Timeout;
}

/** The shared state every memory Coordination of a process talks to. */
export class MemoryCluster {
  private readonly leases = new Map<string, VersionedRecord>();
  private version = 0;
  private readonly services = new Map<string, Map<string, Announced>>();
  private readonly logs = new Map<string, FencedEntry[]>();
  readonly events = new EventEmitter();

  constructor() {
    this.events.setMaxListeners(0);
  }

  getLease(name: string): VersionedRecord | null {
    const r = this.leases.get(name);
    return r ? { record: { ...r.record }, version: r.version } : null;
  }
  createLease(name: string, record: LeaseRecord): VersionedRecord {
    if (this.leases.has(name)) throw new ConflictError(`lease ${name} already exists`);
    const r = { record: { ...record }, version: String(++this.version) };
    this.leases.set(name, r);
    return { record: { ...record }, version: r.version };
  }
  updateLease(name: string, record: LeaseRecord, version: string): VersionedRecord {
    const cur = this.leases.get(name);
    if (!cur || cur.version !== version) throw new ConflictError(`lease ${name} was modified (version ${cur?.version}, expected ${version})`);
    const r = { record: { ...record }, version: String(++this.version) };
    this.leases.set(name, r);
    return { record: { ...record }, version: r.version };
  }

  /** Registers or renews an instance; it expires `ttlMs` after the last renewal. */
  putInstance(instance: ServiceInstance, ttlMs: number): void {
    let svc = this.services.get(instance.service);
    if (!svc) this.services.set(instance.service, (svc = new Map()));
    const old = svc.get(instance.id);
    if (old) clearTimeout(old.timer);
    const timer = setTimeout(() => this.removeInstance(instance.service, instance.id), ttlMs);
    timer.unref();
    svc.set(instance.id, { instance, expiresAt: Date.now() + ttlMs, timer });
    if (!old) this.events.emit(`svc:${instance.service}`);
  }
  removeInstance(service: string, id: string): void {
    const svc = this.services.get(service);
    const old = svc?.get(id);
    if (!old) return;
    clearTimeout(old.timer);
    svc!.delete(id);
    this.events.emit(`svc:${service}`);
  }
  instances(service: string): ServiceInstance[] {
    return [...(this.services.get(service)?.values() ?? [])].map((a) => a.instance);
  }

  appendLog(name: string, entry: FencedEntry): void {
    const log = this.logs.get(name) ?? [];
    const latest = log.length ? log[log.length - 1]!.token : -Infinity;
    if (entry.token < latest) throw new StaleTokenError(entry.token, latest);
    log.push(entry);
    this.logs.set(name, log);
  }
  readLog(name: string): FencedEntry[] {
    return [...(this.logs.get(name) ?? [])];
  }
  clearLog(name: string): void {
    this.logs.delete(name);
  }
}

const defaultCluster = new MemoryCluster();

export interface MemoryOptions {
  cluster?: MemoryCluster;
  timings: LeaseTimings;
}

/** Memory Coordination, with fault injection for tests. */
export interface MemoryCoordination extends Coordination {
  /** Cuts (true) or restores (false) this participant's connection: every call fails until restored. */
  setPartitioned(partitioned: boolean): void;
  /** Stops everything at once without releasing anything, like SIGKILL: leases and announcements expire. */
  simulateCrash(): void;
}

export function createMemoryCoordination(options: MemoryOptions): MemoryCoordination {
  const cluster = options.cluster ?? defaultCluster;
  const timings = options.timings;
  let partitioned = false;
  let crashed = false;
  const registry = new CampaignRegistry();
  const announcers = new Set<{ stop(): void; cancel(): Promise<void> }>();
  const lists = new Set<LiveServiceList>();

  const reach = async <T>(fn: () => T): Promise<T> => {
    // A tick of latency, as over a network.
    await new Promise((resolve) => setImmediate(resolve));
    if (crashed) throw new Error('memory coordination: this participant crashed');
    if (partitioned) throw new Error('memory coordination: partitioned from the cluster');
    return fn();
  };

  const store: LeaseRecordStore = {
    get: (name) => reach(() => cluster.getLease(name)),
    create: (name, record) => reach(() => cluster.createLease(name, record)),
    update: (name, record, version) => reach(() => cluster.updateLease(name, record, version)),
  };

  const discovery: Discovery = {
    async announce(service: string, endpoint: ServiceEndpoint): Promise<Cancellable> {
      checkName('service name', service);
      checkEndpoint(endpoint);
      const instance: ServiceInstance = { service, id: randomUUID(), ...endpoint };
      await reach(() => cluster.putInstance(instance, timings.leaseDurationMs));
      const timer = setInterval(() => {
        reach(() => cluster.putInstance(instance, timings.leaseDurationMs)).catch(() => undefined);
      }, timings.retryPeriodMs);
      timer.unref();
      const announcer = {
        stop: () => clearInterval(timer),
        cancel: async () => {
          clearInterval(timer);
          announcers.delete(announcer);
          await reach(() => cluster.removeInstance(service, instance.id)).catch(() => undefined);
        },
      };
      announcers.add(announcer);
      return { cancel: announcer.cancel };
    },
    async discover(service: string): Promise<ServiceDiscovered> {
      checkName('service name', service);
      const list = new LiveServiceList(service, async () => {
        cluster.events.off(`svc:${service}`, refresh);
        lists.delete(list);
      });
      const refresh = () => list.set(cluster.instances(service));
      cluster.events.on(`svc:${service}`, refresh);
      await reach(refresh);
      lists.add(list);
      return list;
    },
  };

  return {
    backend: 'memory',
    discovery,
    elector: leaseElector(store, timings, registry),
    locks: leaseLocks(store, timings, registry),
    fencedLog(name: string): FencedLog {
      checkName('log name', name);
      return {
        append: (token, writer, data) => reach(() => cluster.appendLog(name, { token, writer, data, at: Date.now() })),
        read: () => reach(() => cluster.readLog(name)),
        clear: () => reach(() => cluster.clearLog(name)),
      };
    },
    setPartitioned(value: boolean) {
      partitioned = value;
    },
    simulateCrash() {
      crashed = true;
      registry.abandonAll();
      for (const a of announcers) a.stop();
      announcers.clear();
    },
    async close() {
      await registry.closeAll();
      await Promise.all([...announcers].map((a) => a.cancel()));
      await Promise.all([...lists].map((l) => l.close()));
    },
  };
}

export function checkEndpoint(endpoint: ServiceEndpoint): void {
  if (!endpoint || typeof endpoint.host !== 'string' || endpoint.host === '') {
    throw new Error('announce needs a host (a name or IP address other programs can reach)');
  }
  if (!Number.isInteger(endpoint.port) || endpoint.port < 1 || endpoint.port > 65535) {
    throw new Error(`announce needs a port between 1 and 65535, got ${endpoint.port}`);
  }
  if (endpoint.payload !== undefined && typeof endpoint.payload !== 'string') {
    throw new Error('announce payload must be a string (encode structured data as JSON)');
  }
}
