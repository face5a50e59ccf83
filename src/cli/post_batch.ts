/**
 * @module
 * Messages between the main thread and an intake worker, sent in batches:
 * what one side posts during one turn of its event loop goes over as one
 * array, after that turn's I/O (`setImmediate`). Each `postMessage` wakes the
 * other thread's event loop, and a submitted message took about 13 of them;
 * a batch wakes it once for all the sessions served in that turn. Order is
 * kept, within a batch and between batches.
 */
import { setImmediate } from "node:timers";

/** Something with a `postMessage`: a `Worker`, or a worker's global scope. */
export interface PostTarget<T> {
  postMessage(messages: T[]): void;
}

/** Collects messages and posts them together once the current turn is over. */
export class PostBatch<T> {
  #target: PostTarget<T>;
  #pending: T[] = [];

  constructor(target: PostTarget<T>) {
    this.#target = target;
  }

  /** Queues `message` for this turn's batch. */
  post(message: T): void {
    if (this.#pending.length === 0) setImmediate(this.#flush);
    this.#pending.push(message);
  }

  #flush = (): void => {
    const batch = this.#pending;
    this.#pending = [];
    if (batch.length > 0) this.#target.postMessage(batch);
  };
}
