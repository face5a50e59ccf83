import { giveToOwner, type SpoolOwner, wrapWriteError, writeDurably } from "./durable_write.ts";

/** How an address came onto the suppression list. */
export type SuppressionSource = "bounce" | "operator" | "import";

/** One suppressed address, as `suppress list --json` prints it. */
export interface Suppression {
  /** The address: local part as given, domain in lower case (see {@linkcode suppressionKey}). */
  address: string;
  added_at: string;
  /** When the entry stops counting: `added_at` plus the list's ttl. */
  expires_at: string;
  source: SuppressionSource;
  /** The remote reply of the hard bounce, or the operator's reason. */
  reply: string;
  /** RFC 3463 status of the bounce, e.g. "5.1.1"; null for an operator's entry. */
  status: string | null;
  /** Domain of the envelope sender whose mail bounced; null for an operator's entry. */
  sender_domain: string | null;
  /** The queue id of the message that bounced; null for an operator's entry. */
  queue_id: string | null;
}

/** What {@linkcode SuppressionList.add} needs; the list fills in the times. */
export type NewSuppression = Omit<Suppression, "added_at" | "expires_at">;

/** Options for {@linkcode SuppressionList.open}. */
export interface SuppressionListOptions {
  /** How long an entry counts. @default 30 days */
  ttlMs?: number;
  /** fsync each change before it counts. @default true */
  fsync?: boolean;
  /** The clock. @default () => new Date() */
  now?: () => Date;
  /**
   * The spool's owner: root running the CLI with the daemon stopped must not
   * leave a file the daemon's user cannot append to. @default null
   */
  owner?: SpoolOwner | null;
}

type Stored = Omit<Suppression, "expires_at">;
type LogRecord = ({ op: "add" } & Stored) | { op: "remove"; address: string; at: string };

/** The log's name in the spool folder. */
export const SUPPRESSION_FILE = "suppression.jsonl";
const FILE_MODE = 0o600;
const encoder = new TextEncoder();

/**
 * The key an address is suppressed under: RFC 5321 §2.4 lets only the
 * domain part be compared case-insensitively; the local part is kept as
 * given, since a receiving system may tell `Bob@` from `bob@`.
 */
export function suppressionKey(address: string): string {
  const at = address.lastIndexOf("@");
  return at < 0 ? address : address.slice(0, at + 1) + address.slice(at + 1).toLowerCase();
}

/**
 * Addresses whose mail bounced because they do not exist, kept in the spool
 * as an append-only log (`suppression.jsonl`, one JSON record a line, each
 * fsynced before it counts). Loading skips a line torn by a crash;
 * {@linkcode compact} rewrites the log with write-new-then-rename, dropping
 * removed and expired entries. One process writes it at a time: the daemon,
 * or the CLI under the spool lock when the daemon is stopped.
 */
export class SuppressionList {
  #dir: string;
  #path: string;
  #ttlMs: number;
  #fsync: boolean;
  #now: () => Date;
  #owner: SpoolOwner | null;
  #entries = new Map<string, Stored>();
  #writes: Promise<unknown> = Promise.resolve();
  /** The log does not end with a newline (a write cut by a crash): the next record starts a line. */
  #tornTail = false;

  private constructor(dir: string, options: SuppressionListOptions) {
    this.#dir = dir;
    this.#path = `${dir}/${SUPPRESSION_FILE}`;
    this.#ttlMs = options.ttlMs ?? 30 * 86_400_000;
    this.#fsync = options.fsync ?? true;
    this.#now = options.now ?? (() => new Date());
    this.#owner = options.owner ?? null;
  }

  /** Reads the log in spool folder `dir` (none yet: an empty list). */
  static async open(dir: string, options: SuppressionListOptions = {}): Promise<SuppressionList> {
    const list = new SuppressionList(dir, options);
    await list.#load();
    return list;
  }

  /** The live entry for `address`, or null when it is not (or no longer) suppressed. */
  find(address: string): Suppression | null {
    const entry = this.#entries.get(suppressionKey(address));
    return entry && this.#live(entry) ? this.#withExpiry(entry) : null;
  }

  /** Every live entry, newest first. */
  list(): Suppression[] {
    return [...this.#entries.values()].filter((e) => this.#live(e))
      .sort((a, b) => b.added_at.localeCompare(a.added_at))
      .map((e) => this.#withExpiry(e));
  }

  /**
   * Suppresses an address once the record is durable. Resolves with the new
   * entry, or null when the address was already suppressed (kept as it was).
   */
  add(entry: NewSuppression): Promise<Suppression | null> {
    return this.#serial(async () => {
      const address = suppressionKey(entry.address);
      if (this.find(address)) return null;
      const stored: Stored = { ...entry, address, added_at: this.#now().toISOString() };
      await this.#append({ op: "add", ...stored });
      this.#entries.set(address, stored);
      return this.#withExpiry(stored);
    });
  }

  /** Lifts a suppression; false when the address was not suppressed. */
  remove(address: string): Promise<boolean> {
    return this.#serial(async () => {
      const key = suppressionKey(address);
      const live = this.find(key) !== null;
      if (!this.#entries.has(key)) return false;
      await this.#append({ op: "remove", address: key, at: this.#now().toISOString() });
      this.#entries.delete(key);
      return live;
    });
  }

  /**
   * Rewrites the log with only the live entries (at start-up): written to
   * the spool's tmp/, fsynced, renamed over the log, the folder fsynced.
   */
  compact(): Promise<void> {
    return this.#serial(async () => {
      for (const [key, entry] of this.#entries) if (!this.#live(entry)) this.#entries.delete(key);
      const tmp = `${this.#dir}/tmp/suppression-${crypto.randomUUID().slice(0, 8)}.jsonl`;
      const lines = [...this.#entries.values()].map((e) => line({ op: "add", ...e }));
      try {
        await writeDurably(tmp, lines, { fsync: this.#fsync, owner: this.#owner });
        await Deno.rename(tmp, this.#path);
        if (this.#fsync) await syncDir(this.#dir);
      } catch (error) {
        await Deno.remove(tmp).catch(() => {});
        throw wrapWriteError(error, SUPPRESSION_FILE);
      }
      this.#tornTail = false;
    });
  }

  async #load(): Promise<void> {
    let text: string;
    try {
      text = await Deno.readTextFile(this.#path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return;
      throw error;
    }
    this.#tornTail = text.length > 0 && !text.endsWith("\n");
    for (const raw of text.split("\n")) {
      const record = parseRecord(raw);
      if (record?.op === "add") {
        const { op: _, ...stored } = record;
        this.#entries.set(stored.address, stored);
      } else if (record?.op === "remove") {
        this.#entries.delete(record.address);
      }
    }
  }

  async #append(record: LogRecord): Promise<void> {
    const bytes = encoder.encode(`${this.#tornTail ? "\n" : ""}${JSON.stringify(record)}\n`);
    let created = false;
    let file: Deno.FsFile;
    try {
      file = await Deno.open(this.#path, { append: true, createNew: true, mode: FILE_MODE });
      created = true;
      // Owned before anything is in it; the first fsync below makes the owner durable too.
      const given = this.#owner && await giveToOwner(this.#path, this.#owner).catch(() => false);
      if (given && this.#fsync) await file.sync();
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) {
        throw wrapWriteError(error, SUPPRESSION_FILE);
      }
      file = await Deno.open(this.#path, { append: true });
    }
    try {
      let offset = 0;
      while (offset < bytes.length) offset += await file.write(bytes.subarray(offset));
      if (this.#fsync) await file.syncData();
    } catch (error) {
      throw wrapWriteError(error, SUPPRESSION_FILE);
    } finally {
      file.close();
    }
    this.#tornTail = false;
    if (created && this.#fsync) await syncDir(this.#dir);
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#writes.then(fn, fn);
    this.#writes = run.catch(() => {});
    return run;
  }

  #live(entry: Stored): boolean {
    return this.#now().getTime() < Date.parse(entry.added_at) + this.#ttlMs;
  }

  #withExpiry(entry: Stored): Suppression {
    const expires = new Date(Date.parse(entry.added_at) + this.#ttlMs).toISOString();
    return { ...entry, expires_at: expires };
  }
}

function line(record: LogRecord): Uint8Array {
  return encoder.encode(JSON.stringify(record) + "\n");
}

// A line that is not a whole record (torn by a crash, or edited by hand) is skipped.
function parseRecord(raw: string): LogRecord | null {
  if (!raw.trim()) return null;
  try {
    const value = JSON.parse(raw) as LogRecord;
    if (typeof value !== "object" || value === null || typeof value.address !== "string") {
      return null;
    }
    if (value.op === "remove") return value;
    if (value.op === "add" && typeof value.added_at === "string") return value;
    return null;
  } catch {
    return null;
  }
}

async function syncDir(path: string): Promise<void> {
  const dir = await Deno.open(path, { read: true });
  try {
    await dir.sync();
  } finally {
    dir.close();
  }
}
