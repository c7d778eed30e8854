// A tiny readers-writer lock: pushes (readers) run together, an inline garbage
// collection (writer) runs alone, so GC never sweeps between a manifest's
// validation and its commit.
export class RwLock {
  private readers = 0;
  private writer = false;
  private readonly waiting: Array<{ write: boolean; resolve: () => void }> = [];

  async read<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire(false);
    try {
      return await fn();
    } finally {
      this.readers--;
      this.wake();
    }
  }

  async write<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire(true);
    try {
      return await fn();
    } finally {
      this.writer = false;
      this.wake();
    }
  }

  private acquire(write: boolean): Promise<void> {
    if (this.canEnter(write) && this.waiting.length === 0) {
      this.enter(write);
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push({ write, resolve }));
  }

  private canEnter(write: boolean): boolean {
    return write ? !this.writer && this.readers === 0 : !this.writer;
  }

  private enter(write: boolean): void {
    if (write) this.writer = true;
    else this.readers++;
  }

  private wake(): void {
    while (this.waiting.length > 0 && this.canEnter(this.waiting[0].write)) {
      const next = this.waiting.shift()!;
      this.enter(next.write);
      next.resolve();
      if (next.write) break;
    }
  }
}

/**
 * One holder at a time per key (a repository name): a delete checks "nothing in
 * this repository references it" and removes it without a manifest push of the
 * same repository validating in between. Keys without holders are forgotten.
 */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = previous.then(() => mine);
    this.tails.set(key, tail);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}
