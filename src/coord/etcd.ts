// etcd backend (the etcd3 package): every candidate, lock waiter and service
// instance is a key attached to its own etcd lease. Leadership goes to the key with
// the lowest create revision under the election prefix (as etcd's own
// concurrency.Election does); each waiter watches only its predecessor's key, so a
// leader's departure wakes one waiter, not a herd. The fencing token is the
// leader key's create revision: etcd revisions are global and strictly increase,
// and every later candidate key is created after the previous leader's.
//
// Why not etcd3's Election/Lock helpers: their Lease reports 'lost' only after
// 2 x TTL without a keepalive, which is after others may already lead. Here the
// keepalive loop is ours: we record when each successful keepalive was SENT and step
// down renewDeadline after it, which is before the server-side TTL can run out.
import { randomUUID } from 'node:crypto';
import { Etcd3, EtcdLeaseInvalidError, type Lease, type Watcher } from 'etcd3';
import { awaitElection, sleep, withTimeout, type ElectionOutcome } from './lease-campaign.js';
import { acquireLock } from './lock-handle.js';
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
  type LeaderCallbacks,
  type LeaderElector,
  type LeaderHandle,
  type LeaseTimings,
  type LockHandle,
  type LockOptions,
  type Locks,
  type ServiceDiscovered,
  type ServiceEndpoint,
  type ServiceInstance,
} from './types.js';

export interface EtcdOptions {
  /** e.g. ['http://127.0.0.1:2379'] */
  endpoints: string[];
  /** Key prefix for everything weft stores (default 'weft/'). */
  prefix?: string;
  timings: LeaseTimings;
}

const ttlSeconds = (t: LeaseTimings): number => Math.max(1, Math.ceil(t.leaseDurationMs / 1000));

/** One candidate (or lock waiter) in one election, across as many etcd leases as it needs. */
class EtcdCampaign {
  private stopped = false;
  private leading = false;
  private token: number | undefined;
  private hadTerm = false;
  private lease: Lease | undefined;
  private key: string | undefined;
  private endTerm: ((reason: string) => void) | undefined;
  private loop: Promise<void> | undefined;
  private elected: ElectionOutcome | undefined;

  constructor(
    private readonly client: Etcd3,
    private readonly prefix: string,
    private readonly identity: string,
    private readonly timings: LeaseTimings,
    private callbacks: LeaderCallbacks,
    private readonly once = false,
  ) {}

  get isLeader(): boolean {
    return this.leading;
  }
  get fencingToken(): number | undefined {
    return this.leading ? this.token : undefined;
  }

  start(): void {
    this.loop = this.run();
  }

  acquire(timeoutMs: number | undefined): Promise<number> {
    const waiting = awaitElection(timeoutMs);
    this.elected = waiting.elected;
    this.start();
    return waiting.token;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.term();
      } catch {
        // connection trouble: retry below
      }
      if (this.once && this.hadTerm) break;
      if (!this.stopped) await sleep(this.timings.retryPeriodMs * (1 + Math.random() * 0.2));
    }
  }

  /** One lease's lifetime: create our key, wait to be first, lead until the lease is lost or we stop. */
  private async term(): Promise<void> {
    const { renewDeadlineMs, retryPeriodMs } = this.timings;
    let ended: string | undefined;
    const termEnded = new Promise<string>((resolve) => {
      this.endTerm = (reason) => {
        if (ended === undefined) {
          ended = reason;
          resolve(reason);
        }
      };
    });
    const lease = this.client.lease(ttlSeconds(this.timings), { autoKeepAlive: false });
    this.lease = lease;
    lease.on('lost', () => undefined); // we handle loss ourselves
    let lastRenewSent = Date.now();
    let watchdog: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(
        () => this.endTerm?.(`could not renew the etcd lease within renewDeadline (${renewDeadlineMs} ms)`),
        Math.max(0, lastRenewSent + renewDeadlineMs - Date.now()),
      );
    };
    arm();
    let keepalive: Promise<void> = Promise.resolve();
    try {
      const leaseId = await Promise.race([withTimeout(lease.grant(), renewDeadlineMs, 'etcd lease grant'), termEnded.then(() => null)]);
      if (leaseId === null) return;
      this.key = `${this.prefix}${leaseId}`;
      const put = await Promise.race([withTimeout(lease.put(this.key).value(this.identity).exec(), renewDeadlineMs, 'etcd put'), termEnded.then(() => null)]);
      if (put === null) return;
      // Our key is fresh (named after our new lease), so this put created it: its revision is the create revision.
      const myRev = Number(put.header.revision);
      // Keepalive loop: renewal time = when the successful keepalive was sent.
      keepalive = (async () => {
        while (ended === undefined) {
          await Promise.race([sleep(retryPeriodMs), termEnded]);
          if (ended !== undefined) break;
          const sent = Date.now();
          try {
            const res = await withTimeout(lease.keepaliveOnce({ deadline: sent + renewDeadlineMs }), renewDeadlineMs, 'etcd keepalive');
            if (Number(res.TTL) <= 0) throw new EtcdLeaseInvalidError(String(res.ID));
            lastRenewSent = sent;
            arm();
          } catch (error) {
            if (error instanceof EtcdLeaseInvalidError) this.endTerm?.('the etcd lease expired');
          }
        }
      })();
      // Wait until no key with a lower create revision remains.
      for (;;) {
        if (ended !== undefined) return;
        const res = await Promise.race([
          withTimeout(this.client.getAll().prefix(this.prefix).sort('Create', 'Ascend').exec(), renewDeadlineMs, 'etcd range'),
          termEnded.then(() => null),
        ]);
        if (res === null) return;
        const mine = res.kvs.find((kv) => kv.key.toString() === this.key);
        if (!mine) {
          this.endTerm?.('our election key disappeared (the lease expired)');
          return;
        }
        const preds = res.kvs.filter((kv) => Number(kv.create_revision) < myRev);
        if (preds.length === 0) break;
        const pred = preds[preds.length - 1]!.key.toString();
        await this.waitDeleted(pred, Number(res.header.revision) + 1, termEnded);
      }
      if (ended !== undefined) return;
      // Elected.
      this.leading = true;
      this.hadTerm = true;
      this.token = myRev;
      this.callbacks.onElected?.(myRev);
      this.elected?.resolve(myRev);
      this.elected = undefined;
      const reason = await termEnded;
      this.leading = false;
      this.callbacks.onStepDown?.(reason);
    } finally {
      clearTimeout(watchdog);
      this.endTerm?.('term over');
      await keepalive;
      if (this.leading) {
        this.leading = false;
      }
      // Revoke so our key goes at once (best effort; if unreachable it expires with the TTL).
      await withTimeout(lease.revoke(), renewDeadlineMs, 'etcd revoke').catch(() => undefined);
      this.lease = undefined;
    }
  }

  private async waitDeleted(key: string, fromRevision: number, termEnded: Promise<string>): Promise<void> {
    let watcher: Watcher | undefined;
    let onGone: (() => void) | undefined;
    const gone = new Promise<void>((resolve) => (onGone = resolve));
    try {
      const created = this.client.watch().key(key).startRevision(String(fromRevision)).create();
      const w = await Promise.race([withTimeout(created, this.timings.renewDeadlineMs, 'etcd watch'), termEnded.then(() => undefined)]);
      if (!w) return;
      watcher = w;
      watcher.on('delete', () => onGone!());
      watcher.on('error', () => onGone!());
      // The key may have gone between the range and the watch start revision: covered by startRevision.
      // Re-check periodically anyway, in case the watch stream silently stalled.
      await Promise.race([gone, termEnded, sleep(this.timings.leaseDurationMs)]);
    } finally {
      await watcher?.cancel().catch(() => undefined);
    }
  }

  async stop(reason = 'resigned'): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.elected?.reject(new Error('stopped'));
    this.elected = undefined;
    this.endTerm?.(reason);
    await this.loop;
  }
}

export function createEtcdCoordination(options: EtcdOptions): Coordination {
  if (!options.endpoints?.length) throw new Error('the etcd backend needs endpoints, e.g. --etcd-endpoints http://127.0.0.1:2379');
  for (const e of options.endpoints) {
    if (!/^https?:\/\/[^/]+\/?$/.test(e)) throw new Error(`invalid etcd endpoint "${e}": use http://HOST:PORT or https://HOST:PORT`);
  }
  const timings = options.timings;
  const root = options.prefix ?? 'weft/';
  const client = new Etcd3({
    hosts: options.endpoints,
    dialTimeout: timings.renewDeadlineMs,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timings.renewDeadlineMs }),
  });
  const campaigns = new Set<EtcdCampaign>();
  const announcements = new Set<{ cancel(): Promise<void> }>();
  const lists = new Set<LiveServiceList>();

  const elector: LeaderElector = {
    async electLeader(name: string, candidateId: string, callbacks: LeaderCallbacks = {}): Promise<LeaderHandle> {
      checkName('election name', name);
      if (!candidateId) throw new Error('candidateId must not be empty: use a stable, unique id such as the pod name');
      const c = new EtcdCampaign(client, `${root}election/${name}/`, candidateId, timings, callbacks);
      campaigns.add(c);
      c.start();
      return {
        name,
        candidateId,
        get isLeader() { return c.isLeader; },
        get fencingToken() { return c.fencingToken; },
        async resign() {
          campaigns.delete(c);
          await c.stop();
        },
      };
    },
  };

  const locks: Locks = {
    async acquire(name: string, opts: LockOptions = {}): Promise<LockHandle> {
      checkName('lock name', name);
      return acquireLock(name, opts, {
        active: campaigns,
        create: (onStepDown) => new EtcdCampaign(client, `${root}lock/${name}/`, opts.owner ?? randomUUID(), timings, { onStepDown }, true),
        stop: (c, released) => (released ? c.stop('released') : c.stop()),
      });
    },
  };

  const discovery: Discovery = {
    async announce(service: string, endpoint: ServiceEndpoint): Promise<Cancellable> {
      checkName('service name', service);
      checkEndpoint(endpoint);
      const instance: ServiceInstance = { service, id: randomUUID(), ...endpoint };
      const key = `${root}services/${service}/${instance.id}`;
      let cancelled = false;
      let lease: Lease | undefined;
      // Announce under a lease kept alive by etcd3; if the lease is lost (e.g. after a
      // long partition), announce again under a new one.
      const put = async (): Promise<void> => {
        const l = client.lease(ttlSeconds(timings));
        lease = l;
        l.on('lost', () => {
          if (cancelled) return;
          void (async () => {
            while (!cancelled) {
              try {
                await put();
                return;
              } catch {
                await sleep(timings.retryPeriodMs);
              }
            }
          })();
        });
        await l.put(key).value(JSON.stringify(instance)).exec();
      };
      await put();
      const a = {
        async cancel() {
          cancelled = true;
          announcements.delete(a);
          await lease?.revoke().catch(() => undefined);
        },
      };
      announcements.add(a);
      return a;
    },
    async discover(service: string): Promise<ServiceDiscovered> {
      checkName('service name', service);
      const prefix = `${root}services/${service}/`;
      const byKey = new Map<string, ServiceInstance>();
      let watcher: Watcher | undefined;
      const list = new LiveServiceList(service, async () => {
        lists.delete(list);
        await watcher?.cancel().catch(() => undefined);
      });
      const parse = (v: Buffer): ServiceInstance | undefined => {
        try {
          return JSON.parse(v.toString()) as ServiceInstance;
        } catch {
          return undefined;
        }
      };
      const res = await client.getAll().prefix(prefix).exec();
      for (const kv of res.kvs) {
        const i = parse(kv.value);
        if (i) byKey.set(kv.key.toString(), i);
      }
      list.set([...byKey.values()]);
      watcher = await client.watch().prefix(prefix).startRevision(String(Number(res.header.revision) + 1)).create();
      watcher.on('put', (kv) => {
        const i = parse(kv.value);
        if (i) byKey.set(kv.key.toString(), i);
        list.set([...byKey.values()]);
      });
      watcher.on('delete', (kv) => {
        byKey.delete(kv.key.toString());
        list.set([...byKey.values()]);
      });
      lists.add(list);
      return list;
    },
  };

  return {
    backend: 'etcd',
    discovery,
    elector,
    locks,
    fencedLog(name: string): FencedLog {
      checkName('log name', name);
      const key = `${root}fenced-log/${name}`;
      return {
        async append(token: number, writer: string, data?: unknown) {
          for (;;) {
            const res = await client.get(key).exec();
            const kv = res.kvs[0];
            const entries: FencedEntry[] = kv ? (JSON.parse(kv.value.toString()) as FencedEntry[]) : [];
            const latest = entries.length ? entries[entries.length - 1]!.token : -Infinity;
            if (token < latest) throw new StaleTokenError(token, latest);
            entries.push({ token, writer, data, at: Date.now() });
            // Compare-and-swap on the key's mod revision (0 = does not exist yet).
            const tx = await client
              .if(key, 'Mod', '==', kv ? Number(kv.mod_revision) : 0)
              .then(client.put(key).value(JSON.stringify(entries)))
              .commit();
            if (tx.succeeded) return;
          }
        },
        async read() {
          const v = await client.get(key).string();
          return v ? (JSON.parse(v) as FencedEntry[]) : [];
        },
        async clear() {
          await client.delete().key(key).exec();
        },
      };
    },
    async close() {
      await Promise.all([...campaigns].map((c) => c.stop('coordination closed')));
      campaigns.clear();
      await Promise.all([...announcements].map((a) => a.cancel()));
      await Promise.all([...lists].map((l) => l.close()));
      client.close();
    },
  };
}
