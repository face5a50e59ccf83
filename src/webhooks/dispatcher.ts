import type { MailEvent } from "../events/mod.ts";
import { log } from "../log/mod.ts";
import type { Outbox } from "../spool/mod.ts";
import {
  buildRequest,
  minimtaHeaders,
  type WebhookEventType,
  type WebhookFormat,
  type WebhookTarget,
} from "./formats.ts";

/** An outbox record: one event for one target. */
export interface Pending {
  url: string;
  body: string;
  event: WebhookEventType;
  /** The target's format; absent in records written before formats existed (minimta). */
  format?: WebhookFormat;
  /**
   * The headers to send, signatures included, made when the event was
   * stored. Basic-auth credentials are not among them: they are added from
   * the config at each attempt, so no password is written to the spool.
   * Absent in older records: the minimta headers are made when posting.
   */
  headers?: Record<string, string>;
  attempts: number;
  next_at: number;
  created_at: number;
}

/** Options for {@linkcode WebhookDispatcher}. */
export interface WebhookDispatcherOptions {
  targets: WebhookTarget[];
  outbox: Outbox<Pending>;
  /** @default fetch */
  fetch?: typeof fetch;
  /** @default Date.now */
  now?: () => number;
  /** First retry delay; doubles per failure up to an hour. @default 10000 */
  retryBaseMs?: number;
  /** Events older than this are dropped (logged). @default 3 days */
  maxAgeMs?: number;
  /** Per request. @default 10000 */
  timeoutMs?: number;
}

const logger = log("webhooks");
const MAX_RETRY_MS = 3_600_000;
/** Requests in flight to one receiver at once. */
const POSTS_PER_TARGET = 4;

type Entry = { id: string; value: Pending };

/**
 * Posts a signed JSON event per delivered, deferred, bounced, expired and
 * delayed recipient, and per address put on the suppression list, to each configured URL, in the target's format
 * (`src/webhooks/formats.ts`). Events go first into a durable outbox
 * in the spool, so a receiver that is down gets them later, also after a
 * restart; posting never blocks delivery.
 */
export class WebhookDispatcher {
  #o: Required<WebhookDispatcherOptions>;
  /** Outbox writes not yet ended; they run side by side, each fsynced on its own. */
  #writes = new Set<Promise<void>>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = 0;
  #running: Promise<void> | null = null;
  /** Receivers being drained now, by URL. */
  #busy = new Map<string, Promise<void>>();
  /** Receivers whose last request failed: nothing is posted to them before their retry. */
  #blockedUntil = new Map<string, number>();
  #stopped = false;

  constructor(options: WebhookDispatcherOptions) {
    this.#o = {
      fetch,
      now: Date.now,
      retryBaseMs: 10_000,
      maxAgeMs: 3 * 86_400_000,
      timeoutMs: 10_000,
      ...options,
    };
  }

  /** Starts posting what the outbox holds. */
  start(): void {
    this.#kick(0);
  }

  /** Takes one mail event; recipient outcomes go to the targets that want them. Bound. */
  readonly record = (event: MailEvent): void => {
    if (this.#stopped) return;
    const now = this.#o.now();
    for (const target of this.#o.targets) {
      const request = buildRequest(target, event, now);
      if (!request) continue;
      this.#enqueue({
        url: target.url,
        body: request.body,
        event: request.event,
        format: target.format ?? "minimta",
        headers: request.headers,
        attempts: 0,
        next_at: now,
        created_at: now,
      });
    }
  };

  /**
   * Resolves once every event recorded so far is in the outbox (or its
   * write failed and was logged). Bound.
   */
  readonly stored = async (): Promise<void> => {
    await Promise.all(this.#writes);
  };

  /** Stops; events still in the outbox are posted after the next start. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.stored();
    await this.#running;
    await Promise.all(this.#busy.values());
  }

  #enqueue(pending: Pending): void {
    const write: Promise<void> = this.#o.outbox.add(pending).then(
      () => this.#kick(0),
      (error) => logger.error("Cannot store webhook event: {error}", { error: String(error) }),
    ).finally(() => this.#writes.delete(write));
    this.#writes.add(write);
  }

  #kick(delay: number): void {
    if (this.#stopped) return;
    // Never push back a drain already due sooner: a drain ending with only
    // far-off retries must not cancel the one asked for by a newer event.
    const at = performance.now() + delay;
    if (this.#timer !== undefined && this.#timerAt <= at) return;
    clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#running) return this.#kick(1_000);
      this.#running = this.#drain().finally(() => (this.#running = null));
    }, delay);
  }

  async #drain(): Promise<void> {
    let nextDue = Infinity;
    const now = this.#o.now();
    const byUrl = new Map<string, Entry[]>();
    // A receiver being drained when the listing starts may finish (and
    // remove what it posted) while the outbox is read: what this listing
    // holds of it can be stale, so it is left to the drain that receiver's
    // end asks for. Checking only after the listing posted an event twice.
    const busyAtStart = new Set(this.#busy.keys());
    for (const entry of await this.#o.outbox.list()) {
      const url = entry.value.url;
      // Picked up when that receiver's drain ends.
      if (busyAtStart.has(url) || this.#busy.has(url)) continue;
      const due = Math.max(entry.value.next_at, this.#blockedUntil.get(url) ?? 0);
      if (due > now) {
        nextDue = Math.min(nextDue, due);
        continue;
      }
      const list = byUrl.get(url) ?? [];
      list.push(entry);
      byUrl.set(url, list);
    }
    // Each receiver is drained on its own: a slow or hung one holds back only its own events.
    for (const [url, entries] of byUrl) {
      const run = this.#drainTarget(entries)
        .then((retryAt) => {
          if (retryAt < Infinity) this.#blockedUntil.set(url, retryAt);
          else this.#blockedUntil.delete(url);
        })
        .catch((error) => logger.error("Webhook drain for {url} failed: {error}", { url, error }))
        .finally(() => {
          this.#busy.delete(url);
          this.#kick(0);
        });
      this.#busy.set(url, run);
    }
    if (nextDue < Infinity) this.#kick(Math.max(0, nextDue - this.#o.now()));
  }

  /**
   * Posts one receiver's due events, a few at a time (so they may arrive out
   * of order: receivers sort by `occurred_at` and de-duplicate by `id`). The
   * first failure puts the rest off until that event's retry, so a receiver
   * that is down costs one request per retry, not one per event. Returns
   * when the next retry is due.
   */
  async #drainTarget(entries: Entry[]): Promise<number> {
    let next = 0;
    let retryAt: number | null = null;
    const worker = async () => {
      while (next < entries.length && retryAt === null && !this.#stopped) {
        const { id, value } = entries[next++];
        const at = await this.#attempt(id, value);
        if (at !== null) retryAt = Math.min(retryAt ?? Infinity, at);
      }
    };
    await Promise.all(Array.from({ length: POSTS_PER_TARGET }, worker));
    // Events not tried this time: those past the age limit go, the rest wait for the retry.
    for (const { id, value } of entries.slice(next)) {
      if (this.#o.now() - value.created_at > this.#o.maxAgeMs) await this.#drop(id, value);
    }
    return retryAt ?? Infinity;
  }

  /** Posts one event; null when it is done with (posted or dropped), else its next retry time. */
  async #attempt(id: string, value: Pending): Promise<number | null> {
    const now = this.#o.now();
    if (await this.#post(value)) {
      await this.#o.outbox.remove(id);
      return null;
    }
    if (now - value.created_at > this.#o.maxAgeMs) {
      await this.#drop(id, value);
      return null;
    }
    value.attempts++;
    value.next_at = now + Math.min(this.#o.retryBaseMs * 2 ** (value.attempts - 1), MAX_RETRY_MS);
    await this.#o.outbox.put(id, value);
    return value.next_at;
  }

  async #drop(id: string, value: Pending): Promise<void> {
    logger.warn("Dropping webhook event for {url} after {attempts} attempts", {
      url: value.url,
      attempts: value.attempts,
    });
    await this.#o.outbox.remove(id);
  }

  async #post(pending: Pending): Promise<boolean> {
    const format = pending.format ?? "minimta";
    const target = this.#o.targets.find((t) =>
      t.url === pending.url && (t.format ?? "minimta") === format
    );
    if (!target) return true; // no longer configured: nothing to deliver to
    const headers: Record<string, string> = {
      ...(pending.headers ?? minimtaHeaders(target.secret, pending.event, pending.body)),
      "user-agent": "minimta-webhooks",
    };
    if (target.username) {
      // RFC 7617: user-id ":" password, base64 of its UTF-8.
      const pair = new TextEncoder().encode(`${target.username}:${target.password ?? ""}`);
      headers.authorization = `Basic ${btoa(String.fromCharCode(...pair))}`;
    }
    try {
      const response = await this.#o.fetch(pending.url, {
        method: "POST",
        headers,
        body: pending.body,
        signal: AbortSignal.timeout(this.#o.timeoutMs),
      });
      await response.body?.cancel();
      return response.ok;
    } catch (error) {
      logger.debug("Webhook {url} failed: {error}", { url: pending.url, error: String(error) });
      return false;
    }
  }
}
