import type { EmitEvent } from "../events/mod.ts";
import type { RouteResult } from "../dns/mod.ts";
import {
  matchRule,
  parseRate,
  type Provider,
  providerFor,
  type ReplyLike,
  replyLine,
  type ThrottleRule,
} from "./shaping.ts";
import type { RecipientOutcome } from "./outcome.ts";
import { log } from "../log/mod.ts";

const logger = log("delivery");

/** A sending domain in warm-up: at most `start × growth^day` messages per provider and period. */
export interface Warmup {
  domain: string;
  start: number;
  growth: number;
  /** The period in ms (a day). */
  per: number;
}

/** Where the shaper keeps what must survive a restart (the spool's `throttle.json`). */
export interface ShaperStore {
  read(): Promise<unknown>;
  write(value: unknown): Promise<void>;
}

/** Options for {@linkcode ProviderShaper}. */
export interface ProviderShaperOptions {
  /** Built-ins and configured providers, merged (see `mergeProviders`). */
  providers: Provider[];
  rules: ThrottleRule[];
  /** The limit of a destination that is no provider. @default 5 */
  perDomainConcurrency?: number;
  /** How long a destination whose every host is down waits for its next probe. @default 300000 */
  probeIntervalMs?: number;
  warmup?: Warmup[];
  /** Finds a domain's MX hosts. */
  route: (domain: string) => Promise<RouteResult>;
  store?: ShaperStore | null;
  emit: EmitEvent;
  /** @default Date.now */
  now?: () => number;
}

/** Why no attempt is made now, and when one may be. */
export interface Deferral {
  deferUntil: number;
  status: string;
  text: string;
}

/** An admitted transaction: release it with its outcomes. */
export interface Ticket {
  /** `provider:NAME` or `domain:DOMAIN`. */
  key: string;
  provider: Provider | null;
  route: RouteResult;
  release(outcomes: RecipientOutcome[]): void;
}

/** One provider's (or destination's) state, for `queue stats`, the status page and /metrics. */
export interface ProviderStatus {
  name: string;
  /** Open connections (in use or idle). */
  connections: number;
  connections_limit: number | null;
  /** Concurrent transactions allowed now (lowered by failures). */
  concurrency: number;
  rate: string;
  suspended_until: string | null;
  suspended_reason: string | null;
  reduced_rate: string | null;
  reduced_until: string | null;
  throttle_replies: number;
  warmup: { domain: string; sent: number; cap: number }[];
}

interface Suspension {
  until: number;
  reason: string;
}

interface Reduced {
  rate: string;
  until: number;
}

interface WarmCount {
  first: number;
  period: number;
  count: number;
}

class Destination {
  window: number;
  active = 0;
  waiters: (() => void)[] = [];
  nextAt = 0;
  openConnections = 0;
  connWaiters: (() => void)[] = [];
  throttleReplies = 0;
  downUntil = 0;
  constructor(readonly key: string, readonly provider: Provider | null, readonly limit: number) {
    this.window = limit;
  }
}

/**
 * Traffic shaping per mailbox provider (or, for destinations that match no
 * provider, per recipient domain): concurrent transactions and connections,
 * messages per connection, a message rate, suspensions and reduced rates
 * from throttling replies, negative feedback on failures (like Postfix's
 * destination concurrency), a probe only per interval for a destination
 * whose every host is down, and warm-up caps per sending domain.
 */
export class ProviderShaper {
  #o: Required<ProviderShaperOptions>;
  #dest = new Map<string, Destination>();
  #suspended = new Map<string, Suspension>();
  #reduced = new Map<string, Reduced>();
  #warm = new Map<string, WarmCount>();
  #writes: Promise<void> = Promise.resolve();

  constructor(options: ProviderShaperOptions) {
    this.#o = {
      perDomainConcurrency: 5,
      probeIntervalMs: 300_000,
      warmup: [],
      store: null,
      now: Date.now,
      ...options,
    };
  }

  /** Reads suspensions and warm-up counts kept from before a restart. */
  async load(): Promise<void> {
    const raw = await this.#o.store?.read().catch(() => null) as {
      suspended?: Record<string, Suspension>;
      reduced?: Record<string, Reduced>;
      warmup?: Record<string, WarmCount>;
    } | null;
    if (!raw || typeof raw !== "object") return;
    const now = this.#o.now();
    for (const [k, s] of Object.entries(raw.suspended ?? {})) {
      if (typeof s?.until === "number" && s.until > now) this.#suspended.set(k, s);
    }
    for (const [k, r] of Object.entries(raw.reduced ?? {})) {
      if (typeof r?.until === "number" && r.until > now) this.#reduced.set(k, r);
    }
    for (const [k, w] of Object.entries(raw.warmup ?? {})) {
      if (typeof w?.count === "number") this.#warm.set(k, w);
    }
  }

  /** The provider of `domain` once its MX hosts are known, for status and pool keys. */
  provider(route: RouteResult): Provider | null {
    if (route.kind !== "ok") return null;
    return providerFor(route.targets.map((t) => t.host), this.#o.providers);
  }

  /**
   * Waits for a turn to send one message from `from` to `domain`: a
   * transaction slot of its provider (or domain), then the rate. Returns a
   * {@linkcode Deferral} instead when the destination is suspended, down
   * until its next probe, or over a warm-up cap.
   */
  async enter(domain: string, from: string): Promise<Ticket | Deferral> {
    const route = await this.#o.route(domain);
    const provider = this.provider(route);
    const key = provider ? `provider:${provider.name}` : `domain:${domain}`;
    const d = this.#destination(key, provider);
    const early = this.#blocked(d);
    if (early) return early;
    await this.#acquire(d);
    const blocked = this.#blocked(d) ?? await this.#warmup(d, from);
    if (blocked) {
      this.#releaseSlot(d);
      return blocked;
    }
    await this.#pace(d);
    let released = false;
    return {
      key,
      provider,
      route,
      release: (outcomes) => {
        if (released) return;
        released = true;
        this.#feedback(d, outcomes);
        this.#releaseSlot(d);
      },
    };
  }

  /**
   * A remote reply at `key`: when a rule names it as throttling, the
   * destination is suspended or slowed (persisted, one event) and the rule
   * is returned so the caller defers instead of failing. Local errors never
   * come here: only replies a server sent.
   */
  observe(
    key: string,
    reply: ReplyLike,
    remote: string | null,
  ): { rule: ThrottleRule; notBefore: number | null } | null {
    const d = this.#dest.get(key);
    const rule = matchRule(reply, d?.provider?.name ?? null, this.#o.rules);
    if (!rule) return null;
    if (d) d.throttleReplies++;
    const now = this.#o.now();
    const line = replyLine(reply);
    if (rule.suspend) {
      const current = this.#suspended.get(key);
      const until = now + rule.suspend;
      if (current && current.until >= until) return { rule, notBefore: current.until };
      this.#suspended.set(key, { until, reason: line });
      if (!current || current.until <= now) {
        this.#persist(() =>
          this.#o.emit({
            type: "provider_suspended",
            provider: nameOf(key),
            until: new Date(until).toISOString(),
            reply: line,
            relay: remote,
            rule: rule.match,
          })
        );
      } else this.#persist();
    } else if (rule.rate && rule.for) {
      this.#reduced.set(key, { rate: rule.rate, until: now + rule.for });
      this.#persist();
      return { rule, notBefore: null };
    }
    return { rule, notBefore: this.#suspended.get(key)?.until ?? null };
  }

  /**
   * Waits for one more open connection to `key`'s provider. `evictIdle`
   * closes an idle pooled connection of the provider (true when there was
   * one), so idle connections never hold the limit against work waiting.
   * Returns the release, to call once when the connection closes.
   */
  async connection(key: string, evictIdle: () => Promise<boolean>): Promise<() => void> {
    const d = this.#dest.get(key);
    if (!d?.provider) return () => {};
    while (d.openConnections >= d.provider.connections) {
      if (await evictIdle()) continue;
      await new Promise<void>((resolve) => d.connWaiters.push(resolve));
    }
    d.openConnections++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      d.openConnections--;
      d.connWaiters.shift()?.();
    };
  }

  /** Messages one connection to `key` may carry, or null for the pool's default. */
  messagesPerConnection(key: string): number | null {
    return this.#dest.get(key)?.provider?.messages_per_connection ?? null;
  }

  /** Every provider, and every other destination with something to show, for status. */
  status(): ProviderStatus[] {
    const now = this.#o.now();
    const keys = new Set([
      ...this.#o.providers.map((p) => `provider:${p.name}`),
      ...[...this.#suspended.keys()],
      ...[...this.#reduced.keys()],
    ]);
    return [...keys].map((key) => {
      const d = this.#dest.get(key);
      const provider = d?.provider ??
        this.#o.providers.find((p) => `provider:${p.name}` === key) ?? null;
      const s = this.#suspended.get(key);
      const r = this.#reduced.get(key);
      const live = (x: { until: number } | undefined) => x && x.until > now ? x : undefined;
      return {
        name: nameOf(key),
        connections: d?.openConnections ?? 0,
        connections_limit: provider?.connections ?? null,
        concurrency: d?.window ?? provider?.connections ?? this.#o.perDomainConcurrency,
        rate: provider?.rate ?? "",
        suspended_until: live(s) ? new Date(s!.until).toISOString() : null,
        suspended_reason: live(s) ? s!.reason : null,
        reduced_rate: live(r) ? r!.rate : null,
        reduced_until: live(r) ? new Date(r!.until).toISOString() : null,
        throttle_replies: d?.throttleReplies ?? 0,
        warmup: this.#warmStatus(key, now),
      };
    });
  }

  /** Waits until pending state writes are done. */
  async flush(): Promise<void> {
    await this.#writes;
  }

  #destination(key: string, provider: Provider | null): Destination {
    let d = this.#dest.get(key);
    if (!d) {
      d = new Destination(key, provider, provider?.connections ?? this.#o.perDomainConcurrency);
      this.#dest.set(key, d);
    }
    return d;
  }

  #blocked(d: Destination): Deferral | null {
    const now = this.#o.now();
    const s = this.#suspended.get(d.key);
    if (s && s.until > now) {
      return {
        deferUntil: s.until,
        status: "4.7.0",
        text: `Delivery to ${nameOf(d.key)} suspended until ${
          new Date(s.until).toISOString()
        } after: ${s.reason}`,
      };
    }
    if (d.downUntil > now) {
      return {
        deferUntil: d.downUntil,
        status: "4.4.1",
        text: `No host of ${nameOf(d.key)} could be reached; next probe at ${
          new Date(d.downUntil).toISOString()
        }`,
      };
    }
    return null;
  }

  async #acquire(d: Destination): Promise<void> {
    while (d.active >= d.window) {
      await new Promise<void>((resolve) => d.waiters.push(resolve));
    }
    d.active++;
  }

  #releaseSlot(d: Destination): void {
    d.active--;
    // Wake as many waiters as the window now allows.
    for (let free = d.window - d.active; free > 0 && d.waiters.length; free--) {
      d.waiters.shift()!();
    }
  }

  /** Spaces messages evenly at the provider's rate, or the reduced rate while it lasts. */
  async #pace(d: Destination): Promise<void> {
    const now = this.#o.now();
    const reduced = this.#reduced.get(d.key);
    const gaps = [
      d.provider?.rate ? parseRate(d.provider.rate) : null,
      reduced && reduced.until > now ? parseRate(reduced.rate) : null,
    ].filter((g): g is number => g !== null);
    if (!gaps.length) return;
    const gap = Math.max(...gaps);
    const at = Math.max(now, d.nextAt);
    d.nextAt = at + gap;
    if (at > now) await new Promise((resolve) => setTimeout(resolve, at - now));
  }

  /**
   * Negative feedback (like Postfix's destination concurrency): a failed
   * connection or a 421 lowers the destination's concurrency by one, down to
   * 1; a delivery raises it by one, up to its limit. When every host was
   * unreachable the destination waits for one probe per interval.
   */
  #feedback(d: Destination, outcomes: RecipientOutcome[]): void {
    if (!outcomes.length) return;
    const unreachable = outcomes.every((o) => o.code === null && o.status === "4.4.1");
    const failed = unreachable || outcomes.some((o) => o.code === 421);
    if (failed) {
      d.window = Math.max(1, d.window - 1);
      if (unreachable) d.downUntil = this.#o.now() + this.#o.probeIntervalMs;
      return;
    }
    d.downUntil = 0;
    if (outcomes.some((o) => o.kind === "delivered")) d.window = Math.min(d.limit, d.window + 1);
  }

  async #warmup(d: Destination, from: string): Promise<Deferral | null> {
    const domain = from.slice(from.lastIndexOf("@") + 1).toLowerCase();
    const w = this.#o.warmup.find((x) => x.domain.toLowerCase() === domain);
    if (!w) return null;
    const now = this.#o.now();
    const period = Math.floor(now / w.per);
    const wk = `${domain}|${d.key}`;
    const count = this.#warm.get(wk) ?? { first: period, period, count: 0 };
    if (count.period !== period) Object.assign(count, { period, count: 0 });
    const cap = Math.floor(w.start * w.growth ** (period - count.first));
    if (count.count >= cap) {
      const next = (period + 1) * w.per;
      return {
        deferUntil: next,
        status: "4.7.0",
        text: `Warm-up cap of ${cap} messages from ${domain} to ${
          nameOf(d.key)
        } reached; sending again at ${new Date(next).toISOString()}`,
      };
    }
    count.count++;
    this.#warm.set(wk, count);
    // Durable before the message goes: a crash never lets the cap be exceeded.
    this.#persist();
    await this.#writes;
    return null;
  }

  #warmStatus(key: string, now: number): { domain: string; sent: number; cap: number }[] {
    const out = [];
    for (const w of this.#o.warmup) {
      const c = this.#warm.get(`${w.domain.toLowerCase()}|${key}`);
      const period = Math.floor(now / w.per);
      const first = c?.first ?? period;
      out.push({
        domain: w.domain,
        sent: c && c.period === period ? c.count : 0,
        cap: Math.floor(w.start * w.growth ** (period - first)),
      });
    }
    return out;
  }

  /** Writes the state after earlier writes, then calls `after` (e.g. to emit an event). */
  #persist(after?: () => void): void {
    const store = this.#o.store;
    const snapshot = {
      suspended: Object.fromEntries(this.#suspended),
      reduced: Object.fromEntries(this.#reduced),
      warmup: Object.fromEntries(this.#warm),
    };
    this.#writes = this.#writes.then(async () => {
      try {
        await store?.write(snapshot);
      } catch (error) {
        // Kept in memory; the next write tries again.
        logger.error("Cannot save throttle state: {error}", { error: String(error) });
      }
      after?.();
    });
  }
}

function nameOf(key: string): string {
  return key.slice(key.indexOf(":") + 1);
}

/** True when `x` is a {@linkcode Deferral} rather than a {@linkcode Ticket}. */
export function isDeferral(x: Ticket | Deferral): x is Deferral {
  return "deferUntil" in x;
}
