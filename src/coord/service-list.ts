// The live, watchable list of a service's instances that every backend's discover() returns.
import type { ServiceDiscovered, ServiceInstance } from './types.js';

const key = (i: ServiceInstance): string => `${i.id}|${i.host}|${i.port}|${i.payload ?? ''}`;

export class LiveServiceList implements ServiceDiscovered {
  private current: ServiceInstance[] = [];
  private readonly listeners = new Set<(instances: ServiceInstance[]) => void>();
  private closed = false;

  constructor(readonly service: string, private readonly onClose: () => Promise<void>) {}

  /** Replaces the list; notifies listeners if it changed. */
  set(instances: ServiceInstance[]): void {
    const next = [...instances].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    if (next.map(key).join('\n') === this.current.map(key).join('\n')) return;
    this.current = next;
    for (const l of [...this.listeners]) l(this.instances());
  }

  instances(): ServiceInstance[] {
    return this.current.map((i) => ({ ...i }));
  }

  [Symbol.iterator](): Iterator<ServiceInstance> {
    return this.instances()[Symbol.iterator]();
  }

  watch(listener: (instances: ServiceInstance[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  waitFor(predicate: (instances: ServiceInstance[]) => boolean, timeoutMs: number, what = 'condition'): Promise<ServiceInstance[]> {
    if (predicate(this.instances())) return Promise.resolve(this.instances());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        unwatch();
        reject(new Error(`service "${this.service}": ${what} not met within ${timeoutMs} ms; instances now: ${JSON.stringify(this.instances())}`));
      }, timeoutMs);
      const unwatch = this.watch((list) => {
        if (!predicate(list)) return;
        clearTimeout(timer);
        unwatch();
        resolve(list);
      });
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    await this.onClose();
  }
}
