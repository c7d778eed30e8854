// A small shared informer: list, then watch from the list's resourceVersion
// with bookmarks; relist on 410 Gone; re-watch with backoff after errors;
// periodic resync (a fresh list, diffed against the store).
//
// Why not client-node's makeInformer: its ListWatch gives up after any watch
// error that is not 410 (it only calls the error callbacks), never asks for
// bookmarks, has no periodic resync, and lists without pagination.
import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import { Watch } from '@kubernetes/client-node';

export type InformerEvent = 'add' | 'update' | 'delete';
export type InformerHandler<T> = (event: InformerEvent, obj: T) => void;

export interface ListPage<T> {
  items: T[];
  metadata?: { resourceVersion?: string; _continue?: string };
}

export interface InformerOptions<T> {
  kubeConfig: KubeConfig;
  /** Watch path, e.g. /api/v1/namespaces/default/pods. */
  path: string;
  labelSelector?: string;
  /** One page of the list (limit/continue). */
  list: (params: { labelSelector?: string; limit: number; _continue?: string }) => Promise<ListPage<T>>;
  resyncMs?: number;
  pageSize?: number;
  /** Counts API requests (for benchmarks). */
  onRequest?: (kind: 'list' | 'watch') => void;
  /** Applied to every object before it is stored or handed on (like client-go's SetTransform): keep only what is read. */
  transform?: (obj: T) => T;
  onError?: (error: unknown) => void;
}

interface Meta {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; uid?: string };
}

function keyOf(obj: Meta): string {
  return `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
}

export class Informer<T extends KubernetesObject> {
  private readonly store = new Map<string, T>();
  private readonly handlers = new Set<InformerHandler<T>>();
  private resourceVersion = '';
  private abort: AbortController | undefined;
  private stopped = true;
  private resyncTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private backoffMs = 250;
  private syncedResolve!: () => void;
  /** Resolves after the first complete list. */
  readonly synced: Promise<void>;
  private hasSynced = false;
  private relistRunning: Promise<void> | undefined;
  /** Keys the watch changed while a resync's list was in flight: the watch is newer than that list's snapshot. */
  private touchedDuringResync: Set<string> | undefined;
  /** Number of relists caused by 410 Gone (for tests and benchmarks). */
  relists = 0;

  constructor(private readonly options: InformerOptions<T>) {
    this.synced = new Promise((resolve) => (this.syncedResolve = resolve));
  }

  on(handler: InformerHandler<T>): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  get(namespace: string, name: string): T | undefined {
    return this.store.get(`${namespace}/${name}`);
  }

  list(): T[] {
    return [...this.store.values()];
  }

  get isSynced(): boolean {
    return this.hasSynced;
  }

  start(): Promise<void> {
    if (!this.stopped) return this.synced;
    this.stopped = false;
    void this.relistAndWatch();
    const resync = this.options.resyncMs ?? 300_000;
    if (resync > 0) {
      this.resyncTimer = setInterval(() => void this.resync(), resync);
      this.resyncTimer.unref();
    }
    return this.synced;
  }

  stop(): void {
    this.stopped = true;
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.abort?.abort();
    this.abort = undefined;
  }

  private emit(event: InformerEvent, obj: T): void {
    for (const handler of [...this.handlers]) {
      try {
        handler(event, obj);
      } catch (error) {
        this.options.onError?.(error);
      }
    }
  }

  private apply(event: 'ADDED' | 'MODIFIED' | 'DELETED', raw: T): void {
    const obj = this.options.transform ? this.options.transform(raw) : raw;
    const key = keyOf(obj as Meta);
    if (event === 'DELETED') {
      this.touchedDuringResync?.add(key);
      const old = this.store.get(key);
      this.store.delete(key);
      this.emit('delete', old && (old as Meta).metadata?.uid !== (obj as Meta).metadata?.uid ? old : obj);
      return;
    }
    this.touchedDuringResync?.add(key);
    const existed = this.store.has(key);
    this.store.set(key, obj);
    this.emit(existed ? 'update' : 'add', obj);
  }

  /**
   * Lists every page and replaces the store, emitting the differences (deletes for vanished objects).
   * A resync lists while the watch keeps running: objects the watch added, changed or deleted since
   * the list began are newer than the list's snapshot, so the list neither overwrites nor deletes
   * them (else a run created during a resync would be reported gone), and the watch keeps its place.
   */
  private async relist(resync = false): Promise<void> {
    const items: T[] = [];
    let cont: string | undefined;
    let rv = '';
    const touched = resync ? new Set<string>() : undefined;
    this.touchedDuringResync = touched;
    try {
      do {
        this.options.onRequest?.('list');
        const page = await this.options.list({ labelSelector: this.options.labelSelector, limit: this.options.pageSize ?? 500, _continue: cont });
        // Transformed page by page, so the full objects of a page can be collected before the next one arrives.
        const transform = this.options.transform;
        for (const item of page.items) items.push(transform ? transform(item) : item);
        cont = page.metadata?._continue || undefined;
        rv = page.metadata?.resourceVersion ?? rv;
      } while (cont);
    } finally {
      if (this.touchedDuringResync === touched) this.touchedDuringResync = undefined;
    }
    const seen = new Set<string>();
    for (const item of items) {
      const key = keyOf(item as Meta);
      seen.add(key);
      if (touched?.has(key)) continue;
      const old = this.store.get(key);
      this.store.set(key, item);
      // A resync re-delivers unchanged objects as updates too, so derived state is recomputed.
      this.emit(old ? 'update' : 'add', item);
    }
    for (const [key, old] of [...this.store]) {
      if (!seen.has(key) && !touched?.has(key)) {
        this.store.delete(key);
        this.emit('delete', old);
      }
    }
    if (!resync) this.resourceVersion = rv;
    if (!this.hasSynced) {
      this.hasSynced = true;
      this.syncedResolve();
    }
  }

  private async resync(): Promise<void> {
    if (this.stopped || this.relistRunning) return;
    this.relistRunning = this.relist(true).catch((error) => this.options.onError?.(error));
    await this.relistRunning;
    this.relistRunning = undefined;
  }

  private async relistAndWatch(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.relist();
      this.backoffMs = 250;
    } catch (error) {
      this.options.onError?.(error);
      this.scheduleRetry(true);
      return;
    }
    await this.watch();
  }

  private scheduleRetry(relist: boolean): void {
    if (this.stopped) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, 5000);
    this.retryTimer = setTimeout(() => void (relist ? this.relistAndWatch() : this.watch()), delay);
  }

  private async watch(): Promise<void> {
    if (this.stopped) return;
    let gone = false;
    let sawEvent = false;
    const watcher = new Watch(this.options.kubeConfig);
    this.options.onRequest?.('watch');
    const params: Record<string, string | number | boolean | undefined> = {
      allowWatchBookmarks: true,
      resourceVersion: this.resourceVersion,
      labelSelector: this.options.labelSelector,
      // Like client-go: let the server end the watch after 5-10 minutes, then resume.
      timeoutSeconds: 300 + Math.floor(Math.random() * 300),
    };
    try {
      const controller = await watcher.watch(
        this.options.path,
        params,
        (type: string, obj: T & { code?: number; metadata?: { resourceVersion?: string } }) => {
          sawEvent = true;
          if (type === 'ERROR') {
            if (obj.code === 410) gone = true;
            else this.options.onError?.(new Error(`watch ${this.options.path}: ${JSON.stringify(obj)}`));
            return;
          }
          const rv = obj.metadata?.resourceVersion;
          if (type === 'BOOKMARK') {
            if (rv) this.resourceVersion = rv;
            return;
          }
          if (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED') this.apply(type, obj);
          if (rv) this.resourceVersion = rv;
        },
        (err: { statusCode?: number; code?: number } | null) => {
          this.abort = undefined;
          if (this.stopped) return;
          if (err && (err.statusCode === 410 || err.code === 410)) gone = true;
          if (gone) {
            this.relists++;
            this.resourceVersion = '';
            void this.relistAndWatch();
          } else if (err) {
            this.options.onError?.(err);
            this.scheduleRetry(false);
          } else {
            // Normal end (timeout, or the server went away): resume from the last resourceVersion.
            if (sawEvent) this.backoffMs = 250;
            this.scheduleRetry(false);
          }
        },
      );
      // stop() may have run while the request was being made: abort it now, or it would keep the process alive.
      if (this.stopped) controller.abort();
      else this.abort = controller;
    } catch (error) {
      this.options.onError?.(error);
      this.scheduleRetry(false);
    }
  }
}
