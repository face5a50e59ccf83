import {
  formatSpoolTime,
  isQueueId,
  type MessageMeta,
  type MessageState,
  parseSpoolTime,
  type RecipientStatus,
} from "../spool/mod.ts";

/** A queued message as the status page and metrics see it (made on demand from the index). */
export interface IndexEntry {
  id: string;
  state: MessageState;
  from: string;
  created_at: string;
  next_attempt_at: string;
  size: number;
  /** Recipients not yet delivered or failed. */
  open: string[];
  recipients: number;
  last_error: string | null;
}

/**
 * One message as `queue list` shows it: the fields of the `queue list
 * --json` contract (README), in their stable order.
 */
export interface QueueSummary {
  id: string;
  from: string;
  state: MessageState;
  created_at: string;
  next_attempt_at: string;
  size: number;
  message_id: string | null;
  recipients: {
    address: string;
    status: RecipientStatus;
    attempts: number;
    last_error: string | null;
  }[];
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

const STATUSES: RecipientStatus[] = ["pending", "deferred", "delivered", "failed"];
const STATE_CODES: Record<MessageState, number> = { queued: 0, deferred: 1, held: 2 };
const STATES: MessageState[] = ["queued", "deferred", "held"];
/** Distinct senders and errors remembered for sharing; past this the table starts over. */
const INTERN_LIMIT = 4096;

/**
 * What the index keeps of one message: only what the scheduler, the status
 * page and `queue list` read, with times as numbers, state and recipient
 * status as small integers, and repeated strings (senders, errors) shared.
 * Everything else (attempt histories, remote hosts, submitter, flags) stays
 * in the spool and is read from there by `queue show` and the message page.
 */
class Compact {
  constructor(
    readonly id: string,
    readonly state: number,
    /** Shared with other entries (see QueueIndex's #intern), as are `errors`. */
    public from: string,
    /** ms since the epoch, or the stored text when it is not canonical ISO 8601. */
    readonly created: number | string,
    readonly next: number | string,
    readonly size: number,
    readonly messageId: string | null,
    /**
     * The recipients as parallel lists: addresses; status index + 4 ×
     * attempts; last errors (null when none has one). A single recipient
     * (most messages) is kept as a bare value in each, saving three arrays.
     */
    readonly addresses: string | string[],
    readonly codes: number | number[],
    public errors: string | null | (string | null)[],
  ) {}

  /** The fields in the constructor's order: one line of a snapshot. */
  row(): unknown[] {
    return [
      this.id,
      this.state,
      this.from,
      this.created,
      this.next,
      this.size,
      this.messageId,
      this.addresses,
      this.codes,
      this.errors,
    ];
  }
}

/**
 * An in-memory summary of every queued message, kept current by the
 * delivery engine, so that counts, search, pagination and `queue list` over
 * 100,000 messages never read the spool. It holds a compact form of each
 * message (see {@linkcode Compact}), a few hundred bytes.
 */
export class QueueIndex {
  #entries = new Map<string, Compact>();
  #interned = new Map<string, string>();
  /** False once an id was added out of order: {@linkcode #sorted} then sorts. */
  #inOrder = true;
  #lastId = "";

  /** Records a message's current metadata. */
  set(meta: MessageMeta): void {
    const rs = meta.recipients;
    let addresses: string | string[];
    let codes: number | number[];
    let errors: string | null | (string | null)[];
    if (rs.length === 1) {
      const r = rs[0];
      addresses = r.address;
      codes = codeOf(r.status, r.attempts);
      errors = r.last_error === null ? null : this.#intern(r.last_error);
    } else {
      const all = rs.map((r) => r.last_error === null ? null : this.#intern(r.last_error));
      addresses = rs.map((r) => r.address);
      codes = rs.map((r) => codeOf(r.status, r.attempts));
      errors = all.some((e) => e !== null) ? all : null;
    }
    if (!this.#entries.has(meta.id)) {
      if (meta.id < this.#lastId) this.#inOrder = false;
      else this.#lastId = meta.id;
    }
    this.#entries.set(
      meta.id,
      new Compact(
        meta.id,
        STATE_CODES[meta.state],
        this.#intern(meta.from),
        packTime(meta.created_at),
        packTime(meta.next_attempt_at),
        meta.size,
        meta.message_id,
        addresses,
        codes,
        errors,
      ),
    );
  }

  /** Whether message `id` is in the index. */
  has(id: string): boolean {
    return this.#entries.has(id);
  }

  /** How many messages the index holds. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * The whole index for {@linkcode QueueIndex.fromSnapshot} after a
   * restart: one line per message, each a JSON array of its compact form's
   * fields in a fixed order. Made a line at a time.
   */
  *snapshot(): Generator<string> {
    for (const c of this.#sorted()) yield `${JSON.stringify(c.row())}\n`;
  }

  /**
   * An index read back from {@linkcode QueueIndex.snapshot}'s lines (each
   * as UTF-8, without its newline), one line at a time. Every entry is checked; throws a
   * `SyntaxError` naming the first bad line.
   */
  static fromSnapshot(lines: Iterable<Uint8Array>): QueueIndex {
    const index = new QueueIndex();
    const decoder = new TextDecoder("utf-8", { fatal: true });
    // Decoded and parsed a line at a time: each line's text is garbage at
    // once, which keeps the heap (and RSS) at what the index itself needs.
    let line = 0;
    for (const bytes of lines) {
      line++;
      let c: Compact | null;
      try {
        c = compactOf(JSON.parse(decoder.decode(bytes)));
      } catch {
        c = null;
      }
      if (!c) throw new SyntaxError(`line ${line} is not a queued message`);
      if (index.#entries.has(c.id)) throw new SyntaxError(`line ${line}: ${c.id} twice`);
      index.#add(c);
    }
    return index;
  }

  /** Forgets a removed message. */
  delete(id: string): void {
    this.#entries.delete(id);
  }

  /** One message's summary. */
  get(id: string): IndexEntry | undefined {
    const c = this.#entries.get(id);
    return c && entryOf(c);
  }

  /** Recipient domains (lowercase, distinct) still to deliver for message `id`. */
  openDomains(id: string): string[] {
    const c = this.#entries.get(id);
    if (!c) return [];
    const domains = new Set<string>();
    for (const r of recipientsOf(c)) if (isOpen(r.code)) domains.add(domainOf(r.address));
    return [...domains];
  }

  /** Ids of messages to schedule at start-up (not held), with when each is due (ms). */
  *due(): Generator<[string, number]> {
    for (const c of this.#entries.values()) {
      if (c.state === STATE_CODES.held) continue;
      yield [c.id, typeof c.next === "number" ? c.next : Date.parse(c.next) || 0];
    }
  }

  /** Every message as `queue list` shows it, oldest first, made one at a time. */
  *summaries(): Generator<QueueSummary> {
    for (const c of this.#sorted()) yield summaryOf(c);
  }

  /** Messages by state. */
  counts(): Record<MessageState, number> {
    const counts = { queued: 0, deferred: 0, held: 0 };
    for (const c of this.#entries.values()) counts[STATES[c.state]]++;
    return counts;
  }

  /** The oldest message, or null. */
  oldest(): IndexEntry | null {
    let oldest: Compact | null = null;
    let oldestAt = Infinity;
    for (const c of this.#entries.values()) {
      const at = timeOf(c.created);
      if (!oldest || at < oldestAt) (oldest = c, oldestAt = at);
    }
    return oldest && entryOf(oldest);
  }

  /** Recipient domains with the most deferred recipients, each with one recent error. */
  topDeferredDomains(
    n: number,
  ): { domain: string; recipients: number; last_error: string | null }[] {
    const domains = new Map<string, { recipients: number; last_error: string | null }>();
    for (const c of this.#entries.values()) {
      if (c.state !== STATE_CODES.deferred) continue;
      const error = firstOpenError(c);
      for (const r of recipientsOf(c)) {
        if (!isOpen(r.code)) continue;
        const domain = domainOf(r.address);
        const d = domains.get(domain) ?? { recipients: 0, last_error: null };
        d.recipients++;
        d.last_error ??= error;
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
    const state = options.state === undefined ? -1 : STATE_CODES[options.state];
    // Ids are upper-case letters and digits: compared in their own case.
    const qId = q.toUpperCase();
    const matches: Compact[] = [];
    for (const c of this.#entries.values()) {
      if (state >= 0 && c.state !== state) continue;
      if (q && !matchesQuery(c, q, qId)) continue;
      matches.push(c);
    }
    matches.sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
    const offset = Math.max(0, options.offset ?? 0);
    return {
      total: matches.length,
      items: matches.slice(offset, offset + (options.limit ?? 50)).map(entryOf),
    };
  }

  // The entries in id (= arrival) order. When one came out of order (start-up
  // reads in parallel), the map is rebuilt in order once.
  #sorted(): Iterable<Compact> {
    if (!this.#inOrder) {
      const sorted = [...this.#entries.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
      this.#entries = new Map(sorted.map((c) => [c.id, c]));
      this.#lastId = sorted.at(-1)?.id ?? "";
      this.#inOrder = true;
    }
    return this.#entries.values();
  }

  // A compact entry read back from a snapshot, its repeated strings shared.
  #add(c: Compact): void {
    if (c.id < this.#lastId) this.#inOrder = false;
    else this.#lastId = c.id;
    c.from = this.#intern(c.from);
    const errors = c.errors;
    if (typeof errors === "string") c.errors = this.#intern(errors);
    else if (errors) c.errors = errors.map((e) => e === null ? null : this.#intern(e));
    this.#entries.set(c.id, c);
  }

  // One shared copy of a string seen before (the same sender or error on many messages).
  #intern(s: string): string {
    const known = this.#interned.get(s);
    if (known !== undefined) return known;
    if (this.#interned.size >= INTERN_LIMIT) this.#interned.clear();
    this.#interned.set(s, s);
    return s;
  }
}

const isTime = (t: unknown) =>
  typeof t === "string" || (typeof t === "number" && Number.isFinite(t));
const isCode = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0;
const isError = (e: unknown) => e === null || typeof e === "string";

// One snapshot row as a compact entry, or null when any field has the wrong type.
function compactOf(row: unknown): Compact | null {
  if (!Array.isArray(row) || row.length !== 10) return null;
  const [id, state, from, created, next, size, messageId, addresses, codes, errors] = row;
  if (typeof id !== "string" || !isQueueId(id)) return null;
  if (state !== 0 && state !== 1 && state !== 2) return null;
  if (typeof from !== "string" || !isTime(created) || !isTime(next)) return null;
  if (!Number.isSafeInteger(size) || size < 0) return null;
  if (messageId !== null && typeof messageId !== "string") return null;
  if (typeof addresses === "string") {
    if (!isCode(codes) || !isError(errors)) return null;
  } else {
    if (!Array.isArray(addresses) || addresses.length === 0) return null;
    if (!addresses.every((a) => typeof a === "string")) return null;
    if (!Array.isArray(codes) || codes.length !== addresses.length || !codes.every(isCode)) {
      return null;
    }
    if (
      errors !== null &&
      (!Array.isArray(errors) || errors.length !== addresses.length || !errors.every(isError))
    ) return null;
  }
  return new Compact(id, state, from, created, next, size, messageId, addresses, codes, errors);
}

function matchesQuery(c: Compact, q: string, qId: string): boolean {
  if (c.id.includes(qId) || c.from.toLowerCase().includes(q)) return true;
  const a = c.addresses;
  return typeof a === "string"
    ? a.toLowerCase().includes(q)
    : a.some((x) => x.toLowerCase().includes(q));
}

function codeOf(status: RecipientStatus, attempts: number): number {
  return STATUSES.indexOf(status) + 4 * attempts;
}

function isOpen(code: number): boolean {
  const status = code & 3;
  return status === 0 || status === 1; // pending or deferred
}

function domainOf(address: string): string {
  return address.slice(address.lastIndexOf("@") + 1).toLowerCase();
}

// A message's recipients, unpacked.
function recipientsOf(c: Compact): { address: string; code: number; error: string | null }[] {
  const { addresses, codes, errors } = c;
  if (typeof addresses === "string") {
    return [{ address: addresses, code: codes as number, error: errors as string | null }];
  }
  return addresses.map((address, i) => ({
    address,
    code: (codes as number[])[i],
    error: (errors as (string | null)[] | null)?.[i] ?? null,
  }));
}

function firstOpenError(c: Compact): string | null {
  for (const r of recipientsOf(c)) if (isOpen(r.code) && r.error) return r.error;
  return null;
}

// A canonical ISO 8601 time (what the spool writes) as a number; any other text is kept as is.
function packTime(text: string): number | string {
  const ms = parseSpoolTime(text);
  return Number.isNaN(ms) ? text : ms;
}

function unpackTime(t: number | string): string {
  return typeof t === "number" ? formatSpoolTime(t) : t;
}

function timeOf(t: number | string): number {
  return typeof t === "number" ? t : Date.parse(t);
}

function entryOf(c: Compact): IndexEntry {
  const rs = recipientsOf(c);
  return {
    id: c.id,
    state: STATES[c.state],
    from: c.from,
    created_at: unpackTime(c.created),
    next_attempt_at: unpackTime(c.next),
    size: c.size,
    open: rs.filter((r) => isOpen(r.code)).map((r) => r.address),
    recipients: rs.length,
    last_error: firstOpenError(c),
  };
}

function summaryOf(c: Compact): QueueSummary {
  return {
    id: c.id,
    from: c.from,
    state: STATES[c.state],
    created_at: unpackTime(c.created),
    next_attempt_at: unpackTime(c.next),
    size: c.size,
    message_id: c.messageId,
    recipients: recipientsOf(c).map((r) => ({
      address: r.address,
      status: STATUSES[r.code & 3],
      attempts: Math.floor(r.code / 4),
      last_error: r.error,
    })),
  };
}
