import { DirSync } from "./dir_sync.ts";
import { newQueueId } from "./queue_id.ts";
import { type SpoolOwner, wrapWriteError, writeDurably } from "./durable_write.ts";

/** Options for the {@linkcode Outbox} constructor. */
export interface OutboxOptions {
  /** Where records are written before they are renamed into place. */
  tmp: string;
  /** fsync each record and the folder. */
  fsync: boolean;
  /** The spool's owner, given every record another user writes. @default null */
  owner?: SpoolOwner | null;
}

/**
 * A small durable queue of JSON records in a folder of the spool (e.g.
 * webhook events not yet delivered): each record is one file, written
 * with write-new-then-rename and fsynced, so records survive a crash.
 */
export class Outbox<T> {
  #dir: string;
  #tmp: string;
  #sync: DirSync;
  #fsync: boolean;
  #owner: SpoolOwner | null;

  constructor(dir: string, options: OutboxOptions) {
    this.#dir = dir;
    this.#tmp = options.tmp;
    this.#sync = new DirSync(dir);
    this.#fsync = options.fsync;
    this.#owner = options.owner ?? null;
  }

  /** Stores a new record; resolves with its id once durable. */
  async add(value: T): Promise<string> {
    const id = newQueueId();
    await this.put(id, value);
    return id;
  }

  /** Replaces (or creates) record `id`. */
  async put(id: string, value: T): Promise<void> {
    const tmp = `${this.#tmp}/outbox-${id}-${crypto.randomUUID().slice(0, 8)}.json`;
    try {
      await writeDurably(tmp, [new TextEncoder().encode(JSON.stringify(value))], {
        fsync: this.#fsync,
        owner: this.#owner,
      });
      await Deno.rename(tmp, `${this.#dir}/${id}.json`);
      if (this.#fsync) await this.#sync.sync();
    } catch (error) {
      await Deno.remove(tmp).catch(() => {});
      throw wrapWriteError(error, id);
    }
  }

  /** Every record, oldest first; unreadable ones are skipped. */
  async list(): Promise<{ id: string; value: T }[]> {
    const out: { id: string; value: T }[] = [];
    const names: string[] = [];
    for await (const entry of Deno.readDir(this.#dir)) {
      if (entry.name.endsWith(".json")) names.push(entry.name);
    }
    for (const name of names.sort()) {
      try {
        out.push({
          id: name.slice(0, -5),
          value: JSON.parse(await Deno.readTextFile(`${this.#dir}/${name}`)) as T,
        });
      } catch {
        // Removed meanwhile or unreadable; skipped.
      }
    }
    return out;
  }

  /** Removes record `id`. */
  async remove(id: string): Promise<void> {
    await Deno.remove(`${this.#dir}/${id}.json`).catch(() => {});
  }
}
