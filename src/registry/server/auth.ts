// htpasswd Basic authentication (bcrypt entries, as written by `htpasswd -B`).
//
// bcrypt is slow on purpose, which makes it a lever for anyone who can send
// requests: a flood of wrong passwords would keep the server busy hashing. So:
// verification runs on worker threads (BcryptPool) with a fair queue across
// clients and a cap on each client's pending checks; a verified credential is
// cached (a good client never waits for bcrypt again); and each client has a
// budget of failed logins (ClientBudget) beyond which it gets 429 without any
// hashing until the budget refills.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { RegistryError } from './errors.js';
import { ClientBudget } from './limits.js';

export interface AuthLimits {
  /** Failed logins a client may make at once, refilled at the same number per minute (default 10). */
  failuresPerMinute?: number;
  /** bcrypt worker threads (default: cores - 1, between 1 and 4). */
  workers?: number;
  /** Verifications one client may have queued or running (default 2); more get 429. */
  pendingPerClient?: number;
}

/** A set remembering at most `max` entries, dropping the least recently used. */
class BoundedSet {
  private readonly entries = new Map<string, true>();
  constructor(private readonly max: number) {}
  has(key: string): boolean {
    if (!this.entries.delete(key)) return false;
    this.entries.set(key, true);
    return true;
  }
  add(key: string): void {
    this.entries.delete(key);
    this.entries.set(key, true);
    if (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value as string);
  }
}

interface Job {
  id: number;
  client: string;
  password: string;
  hash: string;
  resolve: (ok: boolean) => void;
  reject: (error: Error) => void;
}

/** Order in which clients' checks are served: lower first. */
export enum Priority {
  /** An address that logged in successfully before and has no recent failed login. */
  trusted = 0,
  /** An address not seen before. */
  unknown = 1,
  /** An address with recent failed logins. */
  suspect = 2,
}

/** bcrypt comparisons on worker threads, taken from the clients' queues in turn. */
export class BcryptPool {
  private readonly idle: Worker[] = [];
  private readonly running = new Map<Worker, Job>();
  private readonly workers = new Set<Worker>();
  /**
   * Waiting jobs per client, in tiers (see Priority): a newcomer from an address
   * that logged in before does not wait behind attackers. Map order is the
   * round-robin order within a tier.
   */
  private readonly queues = [new Map<string, Job[]>(), new Map<string, Job[]>(), new Map<string, Job[]>()] as const;
  private readonly pendingByClient = new Map<string, number>();
  private queued = 0;
  private nextId = 1;
  private closed = false;

  constructor(private readonly size: number, private readonly pendingPerClient: number, private readonly maxQueued = 1024) {}

  verify(client: string, password: string, hash: string, priority: Priority = Priority.unknown): Promise<boolean> {
    if (this.closed) return Promise.reject(new Error('the registry is shutting down'));
    const pending = this.pendingByClient.get(client) ?? 0;
    if (pending >= this.pendingPerClient || this.queued >= this.maxQueued) {
      return Promise.reject(new RegistryError('TOOMANYREQUESTS', 'too many logins being checked for this client: retry shortly', { headers: { 'Retry-After': '1' } }));
    }
    this.pendingByClient.set(client, pending + 1);
    return new Promise<boolean>((resolve, reject) => {
      const job: Job = { id: this.nextId++, client, password, hash, resolve, reject };
      const tier = this.queues[priority];
      const queue = tier.get(client);
      if (queue) queue.push(job);
      else tier.set(client, [job]);
      this.queued++;
      this.dispatch();
    });
  }

  private settle(job: Job): void {
    const left = (this.pendingByClient.get(job.client) ?? 1) - 1;
    if (left > 0) this.pendingByClient.set(job.client, left);
    else this.pendingByClient.delete(job.client);
  }

  private takeNext(): Job | undefined {
    for (const tier of this.queues) {
      const first = tier.entries().next();
      if (first.done) continue;
      const [client, queue] = first.value;
      const job = queue.shift()!;
      // move this client to the back of the rotation (or drop it when it has nothing left)
      tier.delete(client);
      if (queue.length > 0) tier.set(client, queue);
      this.queued--;
      return job;
    }
    return undefined;
  }

  private spawn(): Worker {
    const worker = new Worker(new URL('./bcrypt-worker.js', import.meta.url));
    worker.unref();
    worker.on('message', (message: { id: number; ok: boolean }) => {
      const job = this.running.get(worker);
      this.running.delete(worker);
      if (job && job.id === message.id) {
        this.settle(job);
        job.resolve(message.ok);
      }
      this.idle.push(worker);
      this.dispatch();
    });
    worker.on('error', (error) => this.lose(worker, error));
    worker.on('exit', (code) => this.lose(worker, new Error(`bcrypt worker exited with code ${code}`)));
    this.workers.add(worker);
    return worker;
  }

  private lose(worker: Worker, error: Error): void {
    if (!this.workers.delete(worker)) return;
    const idleAt = this.idle.indexOf(worker);
    if (idleAt >= 0) this.idle.splice(idleAt, 1);
    const job = this.running.get(worker);
    this.running.delete(worker);
    if (job) {
      this.settle(job);
      job.reject(error);
    }
    if (!this.closed) this.dispatch();
  }

  private dispatch(): void {
    while (this.queued > 0) {
      let worker = this.idle.pop();
      if (!worker) {
        if (this.workers.size >= this.size) return;
        worker = this.spawn();
      }
      const job = this.takeNext()!;
      this.running.set(worker, job);
      worker.postMessage({ id: job.id, password: job.password, hash: job.hash });
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const tier of this.queues) {
      for (const queue of tier.values()) for (const job of queue) job.reject(new Error('the registry is shutting down'));
      tier.clear();
    }
    this.queued = 0;
    await Promise.all([...this.workers].map((worker) => worker.terminate()));
  }
}

export class Htpasswd {
  private readonly users = new Map<string, string>();
  /** sha256(user:password:hash) of credentials already verified, so bcrypt runs once per credential. */
  private readonly verified = new BoundedSet(10_000);
  /** ... and of credentials already refused, so a repeated wrong password costs no bcrypt either. */
  private readonly refused = new BoundedSet(10_000);
  /** Client addresses that logged in successfully: their new logins are checked first. */
  private readonly trustedClients = new BoundedSet(10_000);
  private readonly failures: ClientBudget;
  private readonly pool: BcryptPool;

  constructor(file: string, limits: AuthLimits = {}) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new Error(`cannot read htpasswd file ${file}: ${(error as Error).message}`);
    }
    text.split(/\r?\n/).forEach((line, index) => {
      const trimmed = line.trim();
      if (!trimmed || trimmed.startsWith('#')) return;
      const colon = trimmed.indexOf(':');
      const user = trimmed.slice(0, colon);
      const hash = trimmed.slice(colon + 1);
      if (colon <= 0 || !/^\$2[abxy]\$\d\d\$/.test(hash)) {
        throw new Error(`${file}:${index + 1}: only bcrypt entries are supported; create them with "htpasswd -B ${file} <user>"`);
      }
      this.users.set(user, hash);
    });
    if (this.users.size === 0) throw new Error(`htpasswd file ${file} has no users; add one with "htpasswd -B ${file} <user>"`);
    const perMinute = limits.failuresPerMinute ?? 10;
    this.failures = new ClientBudget(perMinute, perMinute);
    this.pool = new BcryptPool(limits.workers ?? Math.max(1, Math.min(4, availableParallelism() - 1)), limits.pendingPerClient ?? 2);
  }

  /**
   * True when the Authorization header carries valid Basic credentials; false for
   * none or wrong ones. Throws TOOMANYREQUESTS (429 + Retry-After) when `client`
   * has used up its budget of failed logins, unless the credentials are already
   * known to be good.
   */
  async check(header: string | undefined, client: string): Promise<boolean> {
    if (!header || !/^basic /i.test(header)) return false; // an anonymous probe is not a failed login
    const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    const user = colon < 0 ? decoded : decoded.slice(0, colon);
    const password = colon < 0 ? '' : decoded.slice(colon + 1);
    const hash = this.users.get(user);
    const key = createHash('sha256').update(`${user}\u0000${password}\u0000${hash ?? ''}`).digest('hex');
    if (hash && this.verified.has(key)) {
      this.trustedClients.add(client);
      return true;
    }
    const wait = this.failures.retryAfter(client);
    if (wait > 0) {
      throw new RegistryError('TOOMANYREQUESTS', `too many failed logins from this client: retry in ${wait} s`, { headers: { 'Retry-After': String(wait) } });
    }
    let ok = false;
    if (hash && colon >= 0 && !this.refused.has(key)) {
      const priority = this.failures.hasSpent(client) ? Priority.suspect : this.trustedClients.has(client) ? Priority.trusted : Priority.unknown;
      ok = await this.pool.verify(client, password, hash, priority);
    }
    if (ok) {
      this.verified.add(key);
      this.trustedClients.add(client);
      return true;
    }
    this.refused.add(key);
    this.failures.spend(client);
    return false;
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}
