/** A counting semaphore: at most `limit` holders at once, the rest wait in order. */
export class Semaphore {
  #free: number;
  #waiting: (() => void)[] = [];

  constructor(limit: number) {
    this.#free = limit;
  }

  /** Callers waiting for a slot. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /** Waits for a slot. */
  acquire(): Promise<void> {
    if (this.#free > 0) {
      this.#free--;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  /** Gives a slot back, to the longest waiter if any. */
  release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#free++;
  }
}

/** One semaphore per key (e.g. per recipient domain), dropped when idle. */
export class KeyedSemaphore {
  #limit: number;
  #map = new Map<string, { sem: Semaphore; users: number }>();

  constructor(limit: number) {
    this.#limit = limit;
  }

  /** Runs `fn` holding a slot of `key`'s semaphore. */
  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    let entry = this.#map.get(key);
    if (!entry) {
      entry = { sem: new Semaphore(this.#limit), users: 0 };
      this.#map.set(key, entry);
    }
    entry.users++;
    await entry.sem.acquire();
    try {
      return await fn();
    } finally {
      entry.sem.release();
      if (--entry.users === 0) this.#map.delete(key);
    }
  }
}
