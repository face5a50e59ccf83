import { createHash } from "node:crypto";
import type { User, UserLimits } from "./users.ts";

const HOUR_MS = 3_600_000;
/** Hour buckets kept per user: a day's worth, the current hour included. */
const DAY_BUCKETS = 24;

/** One user's counts as stored: recipients accepted per hour, by the hour's start (ms). */
export interface LimitRecord {
  username: string;
  buckets: [number, number][];
}

/** Where the counts are kept (an outbox folder of the spool); structural, so tests can fake it. */
export interface LimitStore {
  list(): Promise<{ id: string; value: LimitRecord }[]>;
  put(id: string, value: LimitRecord): Promise<void>;
}

/** A limit a submission would go over. */
export interface LimitVerdict {
  limit: number;
  window: "hour" | "day";
  /** When the window has room again. */
  retryAt: Date;
}

/** A user's use against their limits. */
export interface LimitUsage {
  hour: number;
  day: number;
}

/** Options for {@linkcode SendingLimits.open}. */
export interface SendingLimitsOptions {
  /** The clock. @default () => new Date() */
  now?: () => Date;
}

/**
 * Per-user sending limits (`"limits": {"per_hour", "per_day"}` in the users
 * file), counted in recipients. Counts are kept in hour buckets: the hourly
 * limit counts the current clock hour, the daily one the last 24 buckets
 * (a window sliding by the hour). The buckets of a user are written to the
 * store after every accepted message, so the counts survive a restart, and
 * at most 24 are kept per user.
 */
export class SendingLimits {
  #store: LimitStore;
  #now: () => Date;
  #counts = new Map<string, Map<number, number>>();
  #writes = new Map<string, Promise<void>>();

  private constructor(store: LimitStore, now: () => Date) {
    this.#store = store;
    this.#now = now;
  }

  /** Loads the stored counts. */
  static async open(store: LimitStore, options: SendingLimitsOptions = {}): Promise<SendingLimits> {
    const limits = new SendingLimits(store, options.now ?? (() => new Date()));
    for (const { value } of await store.list()) {
      if (typeof value?.username !== "string" || !Array.isArray(value.buckets)) continue;
      const buckets = new Map<number, number>();
      for (const entry of value.buckets) {
        if (
          Array.isArray(entry) && Number.isSafeInteger(entry[0]) && Number.isSafeInteger(entry[1])
        ) {
          buckets.set(entry[0], entry[1]);
        }
      }
      limits.#counts.set(value.username.toLowerCase(), buckets);
    }
    return limits;
  }

  /** Recipients counted for `username` this hour and in the last 24 hours. */
  usage(username: string): LimitUsage {
    const buckets = this.#prune(username.toLowerCase());
    const hour = hourOf(this.#now().getTime());
    let day = 0;
    for (const count of buckets?.values() ?? []) day += count;
    return { hour: buckets?.get(hour) ?? 0, day };
  }

  /** The limit that `adding` more recipients would exceed, or null when there is room. */
  check(user: User, adding: number): LimitVerdict | null {
    const limits: UserLimits | undefined = user.limits;
    if (!limits) return null;
    const now = this.#now().getTime();
    const used = this.usage(user.username);
    if (limits.per_hour !== null && used.hour + adding > limits.per_hour) {
      return { limit: limits.per_hour, window: "hour", retryAt: new Date(hourOf(now) + HOUR_MS) };
    }
    if (limits.per_day !== null && used.day + adding > limits.per_day) {
      const buckets = this.#counts.get(user.username.toLowerCase());
      const counted = [...(buckets ?? [])].filter(([, n]) => n > 0).map(([at]) => at);
      const oldest = counted.length ? Math.min(...counted) : hourOf(now);
      return {
        limit: limits.per_day,
        window: "day",
        retryAt: new Date(oldest + DAY_BUCKETS * HOUR_MS),
      };
    }
    return null;
  }

  /** Counts `count` accepted recipients for `username`; resolves once stored. */
  async add(username: string, count: number): Promise<void> {
    const key = username.toLowerCase();
    const buckets = this.#prune(key) ?? new Map<number, number>();
    const hour = hourOf(this.#now().getTime());
    buckets.set(hour, (buckets.get(hour) ?? 0) + count);
    this.#counts.set(key, buckets);
    // One write at a time per user, each with the counts as they are then.
    const write = (this.#writes.get(key) ?? Promise.resolve()).catch(() => {}).then(() =>
      this.#store.put(storeId(key), { username: key, buckets: [...buckets] })
    );
    this.#writes.set(key, write);
    await write;
  }

  /** Drops buckets older than a day; the user's buckets, or undefined when none. */
  #prune(key: string): Map<number, number> | undefined {
    const buckets = this.#counts.get(key);
    if (!buckets) return undefined;
    const first = hourOf(this.#now().getTime()) - (DAY_BUCKETS - 1) * HOUR_MS;
    for (const at of buckets.keys()) if (at < first) buckets.delete(at);
    return buckets;
  }
}

function hourOf(ms: number): number {
  return ms - (ms % HOUR_MS);
}

// A file name for any user name: user names may hold "@", "/" or spaces.
function storeId(key: string): string {
  return `user-${createHash("sha256").update(key).digest("hex").slice(0, 32)}`;
}
