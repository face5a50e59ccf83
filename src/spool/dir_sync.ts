/**
 * Group commit for directory fsyncs. After a rename, the directory must be
 * fsynced before the rename is durable; when many messages arrive at once,
 * one fsync covers all renames made before it started, so callers join the
 * next fsync instead of each paying for one.
 */
export class DirSync {
  #path: string;
  #running: Promise<void> | null = null;
  #next: Promise<void> | null = null;
  #dir: Deno.FsFile | null = null;

  constructor(path: string) {
    this.#path = path;
  }

  /** Resolves once an fsync that began after this call has completed. */
  sync(): Promise<void> {
    if (!this.#running) {
      this.#running = this.#fsync().finally(() => (this.#running = null));
      return this.#running;
    }
    // A sync is in flight, but it may have started before our rename: wait
    // for it, then share exactly one more.
    this.#next ??= this.#running.catch(() => {}).then(() => {
      this.#next = null;
      return this.sync();
    });
    return this.#next;
  }

  // The directory stays open between syncs: opening it for each one cost
  // as much as the fsync itself under load (bench/).
  async #fsync(): Promise<void> {
    this.#dir ??= await Deno.open(this.#path, { read: true });
    try {
      await this.#dir.sync();
    } catch (error) {
      this.#dir.close();
      this.#dir = null;
      throw error;
    }
  }

  /** Closes the directory kept open for syncing. */
  close(): void {
    this.#dir?.close();
    this.#dir = null;
  }
}
