// Kubernetes backend: coordination.k8s.io/v1 Leases.
//  - Leader election and locks: one Lease per election/lock, client-go's algorithm
//    (lease-campaign.ts) with writes conditional on metadata.resourceVersion; the
//    fencing token is spec.leaseTransitions, bumped on every new term.
//  - Discovery: one Lease per announced instance, labelled weft.io/service=<name>,
//    renewed every retryPeriod; discoverers share one informer over the Leases with that
//    label (client-go's one shared informer per resource: one list+watch for every
//    discover() of a Coordination) and drop instances whose lease was not renewed for leaseDuration — the
//    pattern kube-apiserver uses for its own identity leases. Why Leases and not
//    EndpointSlices: an instance that dies must disappear by itself, and a Lease
//    carries that liveness (renewTime + leaseDurationSeconds); an EndpointSlice has no
//    expiry, so a crashed announcer would stay listed until someone deleted it.
//  - Fenced log: a ConfigMap replaced conditionally on its resourceVersion.
import { randomUUID } from 'node:crypto';
import { ApiException, CoordinationV1Api, CoreV1Api, V1MicroTime, type V1Lease } from '@kubernetes/client-node';
import { contextNamespace, Informer, loadKubeConfig, type ListPage } from '../kube-client/index.js';
import { CampaignRegistry, leaseElector, leaseLocks } from './lease-backend.js';
import { ConflictError, type LeaseRecord, type LeaseRecordStore, type VersionedRecord } from './lease-campaign.js';
import { checkEndpoint } from './memory.js';
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

export interface KubeOptions {
  /** Namespace for Leases and ConfigMaps (default: the kubeconfig context's, else "default"). */
  namespace?: string;
  /** Path of a kubeconfig (default: $KUBECONFIG, ~/.kube/config, or in-cluster). */
  kubeconfig?: string;
  /** Override the API server URL of the kubeconfig (e.g. through a proxy). */
  server?: string;
  timings: LeaseTimings;
}

const MANAGED = { 'app.kubernetes.io/managed-by': 'weft' };
const SERVICE_LABEL = 'weft.io/service';
const ANN = { host: 'weft.io/host', port: 'weft.io/port', payload: 'weft.io/payload', service: 'weft.io/service' };

const status = (e: unknown): number | undefined => (e instanceof ApiException ? e.code : undefined);
const seconds = (ms: number): number => Math.max(1, Math.ceil(ms / 1000));
const micro = (ms: number): V1MicroTime => new V1MicroTime(ms);

function toRecord(lease: V1Lease): VersionedRecord {
  const s = lease.spec ?? {};
  return {
    version: lease.metadata!.resourceVersion!,
    record: {
      holderIdentity: s.holderIdentity ?? '',
      leaseDurationMs: (s.leaseDurationSeconds ?? 0) * 1000,
      acquireTime: s.acquireTime ? new Date(s.acquireTime).getTime() : 0,
      renewTime: s.renewTime ? new Date(s.renewTime).getTime() : 0,
      leaseTransitions: s.leaseTransitions ?? 0,
    },
  };
}

function toSpec(r: LeaseRecord): V1Lease['spec'] {
  return {
    holderIdentity: r.holderIdentity,
    leaseDurationSeconds: seconds(r.leaseDurationMs),
    acquireTime: micro(r.acquireTime),
    renewTime: micro(r.renewTime),
    leaseTransitions: r.leaseTransitions,
  };
}

export function createKubeCoordination(options: KubeOptions): Coordination {
  const kc = loadKubeConfig({ kubeconfig: options.kubeconfig, server: options.server });
  const namespace = options.namespace ?? contextNamespace(kc);
  checkName('namespace', namespace);
  const timings = options.timings;
  const leases = kc.makeApiClient(CoordinationV1Api);
  const core = kc.makeApiClient(CoreV1Api);
  const registry = new CampaignRegistry();
  const announcements = new Set<{ cancel(): Promise<void> }>();
  const lists = new Set<LiveServiceList>();

  const store: LeaseRecordStore = {
    async get(name) {
      try {
        return toRecord(await leases.readNamespacedLease({ name, namespace }));
      } catch (e) {
        if (status(e) === 404) return null;
        throw e;
      }
    },
    async create(name, record) {
      try {
        return toRecord(await leases.createNamespacedLease({ namespace, body: { metadata: { name, namespace, labels: MANAGED }, spec: toSpec(record) } }));
      } catch (e) {
        if (status(e) === 409) throw new ConflictError(`lease ${name} already exists`);
        throw e;
      }
    },
    async update(name, record, version) {
      try {
        return toRecord(
          await leases.replaceNamespacedLease({ name, namespace, body: { metadata: { name, namespace, labels: MANAGED, resourceVersion: version }, spec: toSpec(record) } }),
        );
      } catch (e) {
        if (status(e) === 409 || status(e) === 404) throw new ConflictError(`lease ${name} changed since resourceVersion ${version}`);
        throw e;
      }
    },
  };

  // The Leases that announce services (labelled weft.io/service), in one informer shared by every
  // discover() of this Coordination: started by the first, stopped when the last list closes.
  const announcedLeases = sharedInformer(() => {
    let failFirstSync: (error: unknown) => void = () => undefined;
    const firstSyncFailed = new Promise<never>((_, reject) => (failFirstSync = reject));
    const informer: Informer<V1Lease> = new Informer<V1Lease>({
      kubeConfig: kc,
      path: `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`,
      labelSelector: SERVICE_LABEL,
      list: (page) => leases.listNamespacedLease({ namespace, ...page }) as Promise<ListPage<V1Lease>>,
      // Before the first list completes an error is the caller's (e.g. no access); after it, the informer retries by itself.
      onError: (error) => {
        if (!informer.isSynced) failFirstSync(error);
      },
    });
    const synced = Promise.race([informer.start(), firstSyncFailed]).catch((error: unknown) => {
      throw new Error(`cannot list Leases in namespace ${namespace}: ${(error as Error).message ?? String(error)}`);
    });
    return { informer, synced };
  });

  const discovery: Discovery = {
    async announce(service: string, endpoint: ServiceEndpoint): Promise<Cancellable> {
      checkName('service name', service);
      checkEndpoint(endpoint);
      const id = randomUUID();
      const name = `weft-svc-${service.slice(0, 40)}-${id.slice(0, 8)}`;
      const body = (now: number, resourceVersion?: string): V1Lease => ({
        metadata: {
          name,
          namespace,
          resourceVersion,
          labels: { ...MANAGED, [SERVICE_LABEL]: service },
          annotations: { [ANN.service]: service, [ANN.host]: endpoint.host, [ANN.port]: String(endpoint.port), ...(endpoint.payload !== undefined ? { [ANN.payload]: endpoint.payload } : {}) },
        },
        spec: { holderIdentity: id, leaseDurationSeconds: seconds(timings.leaseDurationMs), acquireTime: micro(now), renewTime: micro(now) },
      });
      let current = await leases.createNamespacedLease({ namespace, body: body(Date.now()) });
      let cancelled = false;
      let renewing: Promise<void> = Promise.resolve();
      const renew = async () => {
        try {
          const rv = current.metadata?.resourceVersion;
          const b = body(Date.now(), rv);
          b.spec!.acquireTime = current.spec?.acquireTime;
          current = await leases.replaceNamespacedLease({ name, namespace, body: b });
        } catch (e) {
          // Deleted (e.g. collected as expired after a long partition): announce again.
          if (status(e) === 404) current = await leases.createNamespacedLease({ namespace, body: body(Date.now()) }).catch(() => current);
          else if (status(e) === 409) current = await leases.readNamespacedLease({ name, namespace }).catch(() => current);
        }
      };
      const timer = setInterval(() => {
        if (!cancelled) renewing = renew();
      }, timings.retryPeriodMs);
      const a = {
        async cancel() {
          if (cancelled) return;
          cancelled = true;
          clearInterval(timer);
          announcements.delete(a);
          await renewing;
          await leases.deleteNamespacedLease({ name, namespace }).catch(() => undefined);
        },
      };
      announcements.add(a);
      return a;
    },

    async discover(service: string): Promise<ServiceDiscovered> {
      checkName('service name', service);
      const informer = await announcedLeases.acquire();
      const ofService = (l: V1Lease) => l.metadata?.labels?.[SERVICE_LABEL] === service;
      // Liveness by local observation (as client-go does): when did we last see each lease change?
      const observed = new Map<string, { rv: string; at: number }>();
      const collecting = new Set<string>();
      const recompute = () => {
        const now = Date.now();
        const alive: ServiceInstance[] = [];
        const seen = new Set<string>();
        for (const l of informer.list()) {
          if (!ofService(l)) continue;
          const key = l.metadata!.name!;
          seen.add(key);
          const rv = l.metadata!.resourceVersion!;
          const o = observed.get(key);
          // A lease changed at most at its renewTime: a renewTime older than now (a lease left
          // behind by a crashed announcer, seen for the first time) counts from then, so a
          // fresh discoverer does not list the dead for another leaseDuration.
          const renewed = l.spec?.renewTime ? new Date(l.spec.renewTime).getTime() : now;
          if (!o || o.rv !== rv) observed.set(key, { rv, at: Math.min(now, renewed) });
          const at = observed.get(key)!.at;
          const ann = l.metadata?.annotations ?? {};
          const holder = l.spec?.holderIdentity;
          const durationMs = (l.spec?.leaseDurationSeconds ?? 0) * 1000;
          if (!holder || at + durationMs <= now) {
            // Long expired: collect it (conditional on its resourceVersion, so a renewal wins).
            if (at + 2 * durationMs <= now && !collecting.has(key)) {
              collecting.add(key);
              leases
                .deleteNamespacedLease({ name: key, namespace, body: { preconditions: { resourceVersion: rv } } })
                .catch(() => undefined)
                .finally(() => collecting.delete(key));
            }
            continue;
          }
          alive.push({ service, id: holder, host: ann[ANN.host] ?? '', port: Number(ann[ANN.port]), ...(ann[ANN.payload] !== undefined ? { payload: ann[ANN.payload] } : {}) });
        }
        for (const k of observed.keys()) if (!seen.has(k)) observed.delete(k);
        list.set(alive);
      };
      const off = informer.on((_event, lease) => {
        if (ofService(lease)) recompute();
      });
      const sweep = setInterval(recompute, Math.max(100, Math.floor(timings.retryPeriodMs / 2)));
      const list = new LiveServiceList(service, async () => {
        clearInterval(sweep);
        off();
        lists.delete(list);
        announcedLeases.release();
      });
      recompute();
      lists.add(list);
      return list;
    },
  };

  const fencedLog = (name: string): FencedLog => {
    checkName('log name', name);
    const cm = `weft-fenced-log-${name}`;
    const read = async (): Promise<{ entries: FencedEntry[]; rv?: string }> => {
      try {
        const c = await core.readNamespacedConfigMap({ name: cm, namespace });
        return { entries: JSON.parse(c.data?.log ?? '[]') as FencedEntry[], rv: c.metadata?.resourceVersion };
      } catch (e) {
        if (status(e) === 404) return { entries: [] };
        throw e;
      }
    };
    return {
      async append(token, writer, data) {
        for (;;) {
          const { entries, rv } = await read();
          const latest = entries.length ? entries[entries.length - 1]!.token : -Infinity;
          if (token < latest) throw new StaleTokenError(token, latest);
          entries.push({ token, writer, data, at: Date.now() });
          const body = { metadata: { name: cm, namespace, labels: MANAGED, resourceVersion: rv }, data: { log: JSON.stringify(entries) } };
          try {
            if (rv) await core.replaceNamespacedConfigMap({ name: cm, namespace, body });
            else await core.createNamespacedConfigMap({ namespace, body });
            return;
          } catch (e) {
            if (status(e) !== 409) throw e; // conflict: someone wrote first; re-read and re-check
          }
        }
      },
      async read() {
        return (await read()).entries;
      },
      async clear() {
        await core.deleteNamespacedConfigMap({ name: cm, namespace }).catch((e: unknown) => {
          if (status(e) !== 404) throw e;
        });
      },
    };
  };

  return {
    backend: 'kubernetes',
    discovery,
    elector: leaseElector(store, timings, registry),
    locks: leaseLocks(store, timings, registry),
    fencedLog,
    async close() {
      await registry.closeAll();
      await Promise.all([...announcements].map((a) => a.cancel()));
      await Promise.all([...lists].map((l) => l.close()));
    },
  };
}

/**
 * One informer for many users: made and started by the first acquire(), stopped by the release()
 * of the last. A first list that fails is every waiting caller's error, and the next acquire() starts afresh.
 */
function sharedInformer<T extends V1Lease>(make: () => { informer: Informer<T>; synced: Promise<void> }) {
  let current: { informer: Informer<T>; synced: Promise<void>; users: number } | undefined;
  const drop = (entry: NonNullable<typeof current>) => {
    if (--entry.users > 0) return;
    entry.informer.stop();
    if (current === entry) current = undefined;
  };
  return {
    async acquire(): Promise<Informer<T>> {
      const entry = (current ??= { ...make(), users: 0 });
      entry.users++;
      try {
        await entry.synced;
      } catch (error) {
        if (current === entry) current = undefined;
        drop(entry);
        throw error;
      }
      return entry.informer;
    },
    release(): void {
      if (current) drop(current);
    },
  };
}
