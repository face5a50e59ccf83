import type { MessageMeta, MessageState } from "../spool/mod.ts";

/** A queued message as the status page and metrics see it. */
export interface IndexEntry {
  id: string;
  state: MessageState;
  from: string;
  created_at: string;
  next_attempt_at: string;
  /** Recipients not yet delivered or failed. */
  open: string[];
  recipients: number;
  last_error: string | null;
  /** Lowercase text searched by {@linkcode QueueIndex.search}. */
  haystack: string;
  /** The metadata without attempt histories (for `queue list` through the daemon). */
  meta: MessageMeta;
}

/** Options for {@linkcode QueueIndex.search}. */
export interface SearchOptions {
  /** Matches id, sender, any recipient or domain (case-insensitive substring). */
  q?: string;
  state?: MessageState;
  offset?: number;
  /** @default 50 */
  limit?: number;
}

/**
 * An in-memory summary of every queued message, kept current by the
 * delivery engine, so that counts, search and pagination over 100,000
 * messages never read the spool.
 */
export class QueueIndex {
  #entries = new Map<string, IndexEntry>();

  /** Records a message's current metadata. */
  set(meta: MessageMeta): void {
    const open = meta.recipients.filter((r) => r.status === "pending" || r.status === "deferred");
    const lastError = open.map((r) => r.last_error).find((e) => e) ?? null;
    this.#entries.set(meta.id, {
      id: meta.id,
      state: meta.state,
      from: meta.from,
      created_at: meta.created_at,
      next_attempt_at: meta.next_attempt_at,
      open: open.map((r) => r.address),
      recipients: meta.recipients.length,
      last_error: lastError,
      haystack: [meta.id, meta.from, ...meta.recipients.map((r) => r.address)].join("\n")
        .toLowerCase(),
      meta: { ...meta, recipients: meta.recipients.map(({ history: _, ...r }) => r) },
    });
  }

  /** Forgets a removed message. */
  delete(id: string): void {
    this.#entries.delete(id);
  }

  /** One message's summary. */
  get(id: string): IndexEntry | undefined {
    return this.#entries.get(id);
  }

  /** Every message's metadata (without histories), oldest first. */
  all(): MessageMeta[] {
    return [...this.#entries.values()].map((e) => e.meta).sort((
      a,
      b,
    ) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Messages by state. */
  counts(): Record<MessageState, number> {
    const counts = { queued: 0, deferred: 0, held: 0 };
    for (const e of this.#entries.values()) counts[e.state]++;
    return counts;
  }

  /** The oldest message, or null. */
  oldest(): IndexEntry | null {
    let oldest: IndexEntry | null = null;
    for (const e of this.#entries.values()) {
      if (!oldest || e.created_at < oldest.created_at) oldest = e;
    }
    return oldest;
  }

  /** Recipient domains with the most deferred recipients, each with one recent error. */
  topDeferredDomains(
    n: number,
  ): { domain: string; recipients: number; last_error: string | null }[] {
    const domains = new Map<string, { recipients: number; last_error: string | null }>();
    for (const e of this.#entries.values()) {
      if (e.state !== "deferred") continue;
      for (const address of e.open) {
        const domain = address.slice(address.lastIndexOf("@") + 1).toLowerCase();
        const d = domains.get(domain) ?? { recipients: 0, last_error: null };
        d.recipients++;
        d.last_error ??= e.last_error;
        domains.set(domain, d);
      }
    }
    return [...domains].map(([domain, d]) => ({ domain, ...d })).sort((a, b) =>
      b.recipients - a.recipients
    ).slice(0, n);
  }

  /** Newest first, filtered, one page at a time. */
  search(options: SearchOptions = {}): { total: number; items: IndexEntry[] } {
    const q = options.q?.trim().toLowerCase() ?? "";
    const matches: IndexEntry[] = [];
    for (const e of this.#entries.values()) {
      if (options.state && e.state !== options.state) continue;
      if (q && !e.haystack.includes(q)) continue;
      matches.push(e);
    }
    matches.sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
    const offset = Math.max(0, options.offset ?? 0);
    return { total: matches.length, items: matches.slice(offset, offset + (options.limit ?? 50)) };
  }
}
