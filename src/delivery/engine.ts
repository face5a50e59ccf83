import type { EmitEvent } from "../events/mod.ts";
import { log } from "../log/mod.ts";
import {
  type MessageMeta,
  MessageNotFoundError,
  type RecipientState,
  type Spool,
  type SuppressionList,
} from "../spool/mod.ts";
import { DomainGate } from "./domain_gate.ts";
import { DueQueue } from "./due_queue.ts";
import { QueueIndex } from "./queue_index.ts";
import { applyOperation } from "./operations.ts";
import { bounceFailed, warnDelayed } from "./dsn.ts";
import { describe, local, type RecipientOutcome } from "./outcome.ts";
import { nextStep } from "./next_step.ts";
import { recordOutcomes } from "./record_outcomes.ts";
import { KeyedSemaphore, Semaphore } from "./semaphore.ts";
import { suppressible } from "./suppress_policy.ts";
import type { AttemptRequest } from "./smtp_transport.ts";
import { isDeferral, type ProviderShaper, type ProviderStatus } from "./shaper.ts";

/** What the engine delivers through: one attempt for one message at one domain (`SmtpTransport`). */
export interface DeliveryTransport {
  attempt(req: AttemptRequest): Promise<RecipientOutcome[]>;
  close(): Promise<void>;
}

/** Options for {@linkcode DeliveryEngine}. */
export interface DeliveryEngineOptions {
  spool: Spool;
  transport: DeliveryTransport;
  /** Our name, for DSNs. */
  hostname: string;
  /** Outbound transactions in all (`delivery.concurrency`). */
  concurrency: number;
  /** Outbound transactions per recipient domain (`delivery.per_domain_concurrency`). */
  perDomainConcurrency: number;
  /** Waits between attempts, the last repeating (`delivery.retry_schedule`). */
  retrySchedule: number[];
  /** Deferred recipients fail after this long in the queue (`delivery.max_queue_lifetime`). */
  maxQueueLifetimeMs: number;
  /**
   * Once a recipient is still deferred this long after the message was
   * queued, the sender gets one `Action: delayed` DSN (Postfix's
   * delay_warning_time); 0 for none (`delivery.delay_warning`).
   */
  delayWarningMs: number;
  /** Where delivery events (attempts, bounces, expiry, operator actions) go. */
  emit: EmitEvent;
  /**
   * Resolves once every event emitted so far is stored by the listeners that
   * keep them (the webhook outbox): a message leaves the spool only after
   * its outcomes are kept, so a crash cannot lose a bounce's webhook.
   * @default resolved at once
   */
  eventsStored?: () => Promise<void>;
  /** Where recipients that hard-bounce (see {@linkcode suppressible}) are added; null for none. @default null */
  suppressions?: SuppressionList | null;
  /** The clock. @default () => new Date() */
  now?: () => Date;
  /** Limits per mailbox provider and throttle rules; null for per-domain limits only. @default null */
  shaper?: ProviderShaper | null;
  /**
   * The queue index to keep current, e.g. one filled by start-up repair
   * (`Spool.recover`'s `onMessage`), so {@linkcode DeliveryEngine.start} need
   * not read the spool again. @default a new, empty index
   */
  index?: QueueIndex;
}

const logger = log("delivery");
const MAX_TIMER_MS = 60_000;
/** The ± fraction of a retry step added as jitter (see `retryDelay` in retry.ts). */
const RETRY_JITTER = 0.1;
const LOCAL_RETRY_MS = 60_000;

/**
 * The delivery engine: an in-memory schedule rebuilt from the spool at
 * start-up, concurrency limits in all and per domain, one transaction per
 * message and domain, per-recipient state written to the spool after every
 * attempt, retries along the schedule, expiry, and one DSN per message for
 * its failed recipients. Transports only make attempts; this class decides.
 */
export class DeliveryEngine {
  #o: Required<DeliveryEngineOptions>;
  #due = new DueQueue();
  #inFlight = new Map<string, Promise<void>>();
  #slots: Semaphore;
  #domains: KeyedSemaphore;
  #messageLimit: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  /** Set when {@linkcode stop} gives up waiting: late outcomes are dropped. */
  #abandoned = false;
  /** The clock at the last pump; a smaller reading means the clock went back. */
  #lastNow = -Infinity;
  // Operator actions on messages in flight, applied when the attempt ends.
  #pendingOps = new Map<string, "hold" | "delete">();
  /** When messages scheduled during their own attempt are due, applied as the attempt ends. */
  #dueAfterAttempt = new Map<string, number>();
  // Operator actions under way on messages not in flight, by id (the last
  // one queued); no attempt starts for such a message (see #exclusive).
  #operating = new Map<string, Promise<void>>();
  #active = 0;
  #gate: DomainGate;
  /** Every queued message in summary, for status pages and metrics. */
  readonly index: QueueIndex;

  constructor(options: DeliveryEngineOptions) {
    this.#o = {
      now: () => new Date(),
      suppressions: null,
      shaper: null,
      index: new QueueIndex(),
      eventsStored: () => Promise.resolve(),
      ...options,
    };
    this.index = this.#o.index;
    this.#slots = new Semaphore(this.#o.concurrency);
    this.#domains = new KeyedSemaphore(this.#o.perDomainConcurrency);
    this.#gate = new DomainGate(this.#o.perDomainConcurrency * 2);
    // Enough messages in flight to keep every connection busy, few enough
    // that a huge queue is not all read into memory at once.
    this.#messageLimit = this.#o.concurrency * 4;
  }

  /**
   * Rebuilds the schedule from the spool (or from `initial`, the metadata
   * that start-up repair already read; or, with `"index"`, from the index
   * given in the options, already filled) and starts delivering.
   */
  async start(initial?: MessageMeta[] | "index"): Promise<void> {
    if (initial === "index") {
      for (const [id, due] of this.index.due()) this.#due.set(id, due);
    } else {
      for (const meta of initial ?? await this.#o.spool.list()) this.schedule(meta);
    }
    // New messages (and DSNs) come in through the spool.
    this.#o.spool.subscribe((meta) => this.schedule(meta));
    // The spool may have been written under a clock that was ahead of this one.
    this.#bringForward(this.#o.now().getTime());
    this.#pump();
  }

  /** Delivery attempts (outbound transactions) running now. */
  get activeAttempts(): number {
    return this.#active;
  }

  /** Mailbox providers' connections, rates and suspensions (empty without a shaper). */
  providerStatus(): ProviderStatus[] {
    return this.#o.shaper?.status() ?? [];
  }

  /** Number of messages scheduled or in flight. */
  get queued(): number {
    return this.#due.size + this.#inFlight.size + this.#gate.parked;
  }

  /** Puts a message on the schedule at its `next_attempt_at` (held messages wait for release). */
  schedule(meta: MessageMeta): void {
    this.index.set(meta);
    if (this.#stopped || meta.state === "held") {
      this.#due.delete(meta.id);
      this.#dueAfterAttempt.delete(meta.id);
      return;
    }
    const due = Date.parse(meta.next_attempt_at) || 0;
    // Never on the schedule while in flight: an entry due before the attempt
    // ends (a short retry step, a slow metadata write) would be popped and
    // skipped by #pump, and the message never tried again.
    if (this.#inFlight.has(meta.id)) {
      this.#dueAfterAttempt.set(meta.id, due);
      return;
    }
    this.#due.set(meta.id, due);
    this.#pump();
  }

  /**
   * Operator action on one message (`minimta queue hold|release|retry|delete`).
   * A message in flight finishes its attempt first: hold and delete are then
   * applied when it ends, retry and release have nothing left to do.
   * Returns what happened, for the CLI to print.
   */
  async operate(id: string, op: "hold" | "release" | "retry" | "delete"): Promise<string> {
    if (this.#inFlight.has(id)) {
      if (op === "hold" || op === "delete") {
        this.#pendingOps.set(id, op);
        return `${id}: delivery attempt in progress; ${
          op === "hold" ? "held" : "deleted"
        } when it ends`;
      }
      return `${id}: delivery attempt in progress`;
    }
    const result = await this.#exclusive(id, async () => {
      const meta = await this.#o.spool.get(id);
      return await applyOperation(this.#o.spool, meta, {
        op,
        now: this.#o.now(),
        emit: this.#o.emit,
      });
    });
    if (op === "delete") this.index.delete(id);
    else if (result.schedule) this.schedule(result.meta);
    else this.index.set(result.meta);
    return result.text;
  }

  /** Schedules every message that is not held for an attempt now. */
  async retryAll(): Promise<number> {
    let count = 0;
    for (const id of await this.#o.spool.ids()) {
      if (this.#inFlight.has(id)) continue;
      try {
        const result = await this.#exclusive(id, async () => {
          const meta = await this.#o.spool.get(id);
          if (meta.state === "held") return null;
          return await applyOperation(this.#o.spool, meta, {
            op: "retry",
            now: this.#o.now(),
            emit: this.#o.emit,
          });
        });
        if (!result) continue;
        if (result.schedule) this.schedule(result.meta);
        count++;
      } catch (error) {
        if (!(error instanceof MessageNotFoundError)) throw error;
      }
    }
    return count;
  }

  /**
   * Runs an operator action on a message that is not in flight, after any
   * earlier one on it. The message leaves the schedule and the domain gate
   * at once, and #pump starts no attempt for it until the action is done:
   * otherwise an attempt begun from the metadata read before a hold or
   * delete is written (e.g. the gate releasing the message just then) would
   * deliver it and then overwrite the hold. The caller schedules it again
   * afterwards if the action says so.
   */
  async #exclusive<T>(id: string, action: () => Promise<T>): Promise<T> {
    this.#due.delete(id);
    this.#gate.forget(id);
    const earlier = this.#operating.get(id);
    let done!: () => void;
    const mine = new Promise<void>((resolve) => (done = resolve));
    this.#operating.set(id, mine);
    try {
      await earlier;
      return await action();
    } finally {
      if (this.#operating.get(id) === mine) this.#operating.delete(id);
      done();
    }
  }

  /** True once {@linkcode stop} ended with attempts still running (they are retried after a restart). */
  get abandoned(): boolean {
    return this.#abandoned;
  }

  /**
   * Stops taking new work and waits up to `graceMs` for attempts in flight.
   * Those still running then are abandoned: whatever they later learn is
   * not written, so their recipients keep their last recorded state and are
   * tried again after the restart (at least once; a remote that already had
   * the data may get it twice, RFC 1047).
   */
  async stop(graceMs = 5_000): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    const inFlight = Promise.allSettled([...this.#inFlight.values()]);
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([inFlight, new Promise((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
    if (this.#inFlight.size) {
      this.#abandoned = true;
      logger.warn(
        "Stopping with {count} delivery attempts unfinished; they will be retried: {ids}",
        {
          count: this.#inFlight.size,
          ids: [...this.#inFlight.keys()].join(" "),
        },
      );
    }
    await this.#o.transport.close();
    await this.#o.shaper?.flush();
  }

  /**
   * The latest a retry can legitimately be due: the longest retry step plus
   * its jitter. A message due later than this was scheduled by a clock that
   * has since gone back (NTP step, VM restore, a wrong clock fixed between
   * restarts); left alone it would wait out the jump too.
   */
  get #horizonMs(): number {
    return Math.ceil(Math.max(...this.#o.retrySchedule) * (1 + RETRY_JITTER)) + 1_000;
  }

  /** Brings retries due beyond the horizon back within it (see {@linkcode #horizonMs}). */
  #bringForward(now: number): void {
    const latest = now + this.#horizonMs;
    if ((this.#due.peekLast() ?? 0) <= latest) return;
    const moved = this.#due.clampAfter(latest);
    logger.warn(
      "The clock went back: {count} retries were due later than the longest retry step allows; due by {latest} instead",
      { count: moved, latest: new Date(latest).toISOString() },
    );
  }

  #pump(): void {
    if (this.#stopped) return;
    const now = this.#o.now().getTime();
    if (now < this.#lastNow) this.#bringForward(now);
    this.#lastNow = now;
    while (this.#inFlight.size < this.#messageLimit) {
      const id = this.#due.popDue(now);
      if (id === null) break;
      // In flight already, or an operator action decides what happens next.
      if (this.#inFlight.has(id) || this.#operating.has(id)) continue;
      const domains = this.#domainsOf(id);
      if (!this.#gate.admit(id, domains)) continue;
      let failed = false;
      const run = this.#process(id)
        .catch((error) => {
          // A local failure (the spool could not be written or read, e.g. a
          // full disk): the message keeps its last durable state and is
          // tried again later, never dropped and never wrongly bounced.
          failed = true;
          logger.error("Delivery of {queue_id} failed, retrying in a minute: {error}", {
            queue_id: id,
            error: String(error),
          });
        })
        .finally(() => {
          this.#inFlight.delete(id);
          const due = this.#dueAfterAttempt.get(id);
          this.#dueAfterAttempt.delete(id);
          if (due !== undefined && !this.#stopped) this.#due.set(id, due);
          for (const parked of this.#gate.release(domains)) {
            if (!this.#stopped) this.#due.set(parked, this.#o.now().getTime());
          }
          if (failed && !this.#stopped) this.#due.set(id, this.#o.now().getTime() + LOCAL_RETRY_MS);
          this.#pump();
        });
      this.#inFlight.set(id, run);
    }
    clearTimeout(this.#timer);
    const next = this.#due.peek();
    if (next !== null && this.#inFlight.size < this.#messageLimit) {
      this.#timer = setTimeout(() => this.#pump(), Math.min(Math.max(next - now, 0), MAX_TIMER_MS));
    }
  }

  #domainsOf(id: string): string[] {
    return this.index.openDomains(id);
  }

  async #process(id: string): Promise<void> {
    let meta: MessageMeta;
    let body: Uint8Array;
    try {
      ({ meta, body } = await this.#o.spool.load(id));
      if (meta.state === "held") return;
    } catch (error) {
      if (error instanceof MessageNotFoundError) return;
      throw error;
    }
    const groups = groupByDomain(
      meta.recipients.filter((r) => r.status === "pending" || r.status === "deferred"),
    );
    let writes = Promise.resolve();
    const notBefore = new Map<string, number | undefined>();
    await Promise.all([...groups].map(async ([domain, recipients]) => {
      const started = performance.now();
      const outcomes = await this.#attempt(meta, body, domain, recipients);
      if (this.#abandoned) return;
      for (const o of outcomes) notBefore.set(o.address, o.notBefore);
      this.#apply(meta, outcomes, { durationMs: Math.round(performance.now() - started) });
      // Before the metadata: a crash in between retries the recipient and
      // meets the same bounce, instead of losing the suppression.
      await this.#suppress(meta, outcomes);
      // Per-recipient results reach the disk after every attempt, one write
      // at a time; except when every recipient is now delivered: then the
      // removal of the message in #finish is the record (a crash before it
      // re-sends, exactly as a crash before this write would).
      if (meta.recipients.every((r) => r.status === "delivered")) return;
      writes = writes.then(() => this.#o.spool.writeMeta(meta));
      await writes;
      this.index.set(meta);
    }));
    if (this.#abandoned) return;
    await this.#finish(meta, body, notBefore);
  }

  async #attempt(
    meta: MessageMeta,
    body: Uint8Array,
    domain: string,
    recipients: RecipientState[],
  ): Promise<RecipientOutcome[]> {
    return await this.#domains.run(domain, async () => {
      // The provider's turn is taken before a slot in all: a message that
      // waits for its provider must not keep others' mail from going.
      const ticket = this.#o.shaper ? await this.#o.shaper.enter(domain, meta.from) : null;
      if (ticket && isDeferral(ticket)) {
        return recipients.map((r) => ({
          ...local(r.address, "temporary", ticket.status, ticket.text),
          notBefore: ticket.deferUntil,
        }));
      }
      let outcomes: RecipientOutcome[] = [];
      await this.#slots.acquire();
      this.#active++;
      try {
        // Held or deleted by an operator while waiting for a slot: no attempt.
        if (this.#pendingOps.has(meta.id)) return [];
        outcomes = await this.#o.transport.attempt({
          from: meta.from,
          domain,
          recipients: recipients.map((r) => r.address),
          body,
          smtputf8: meta.smtputf8,
          eightBit: meta.eight_bit,
          route: ticket?.route,
          destination: ticket?.key,
        });
        return outcomes;
      } finally {
        this.#active--;
        this.#slots.release();
        ticket?.release(outcomes);
      }
    });
  }

  #apply(
    meta: MessageMeta,
    outcomes: RecipientOutcome[],
    how: { durationMs: number } | { expired: true },
  ): void {
    recordOutcomes(meta, outcomes, {
      now: this.#o.now(),
      durationMs: "durationMs" in how ? how.durationMs : null,
      expired: "expired" in how,
      emit: this.#o.emit,
    });
  }

  /** Adds recipients whose address does not exist to the suppression list (DSNs excepted). */
  async #suppress(meta: MessageMeta, outcomes: RecipientOutcome[]): Promise<void> {
    const list = this.#o.suppressions;
    if (!list || meta.is_bounce || meta.from === "") return;
    for (const outcome of outcomes.filter(suppressible)) {
      try {
        const added = await list.add({
          address: outcome.address,
          source: "bounce",
          reply: describe(outcome),
          status: outcome.status,
          sender_domain: meta.from.slice(meta.from.lastIndexOf("@") + 1).toLowerCase(),
          queue_id: meta.id,
        });
        if (added) {
          this.#o.emit({
            type: "suppressed",
            queue_id: meta.id,
            recipient: added.address,
            from: meta.from,
            message_id: meta.message_id,
            source: added.source,
            code: outcome.code,
            status: outcome.status,
            text: outcome.text,
            relay: outcome.remote,
            expires_at: added.expires_at,
          });
        }
      } catch (error) {
        // The bounce itself goes on; only the suppression is lost.
        logger.error("Cannot suppress {recipient} of {queue_id}: {error}", {
          recipient: outcome.address,
          queue_id: meta.id,
          error: String(error),
        });
      }
    }
  }

  async #finish(
    meta: MessageMeta,
    body: Uint8Array,
    notBefore: Map<string, number | undefined> = new Map(),
  ): Promise<void> {
    const now = this.#o.now();
    const op = this.#pendingOps.get(meta.id);
    this.#pendingOps.delete(meta.id);
    const step = nextStep(meta, {
      now,
      op,
      maxQueueLifetimeMs: this.#o.maxQueueLifetimeMs,
      retrySchedule: this.#o.retrySchedule,
      jitter: RETRY_JITTER,
      notBefore,
    });
    switch (step.kind) {
      case "delete":
        await this.#o.eventsStored();
        await this.#o.spool.remove(meta.id, { durable: true });
        this.index.delete(meta.id);
        this.#o.emit({ type: "removed", queue_id: meta.id, by: "operator" });
        return;
      case "hold":
        meta.state = "held";
        await this.#o.spool.writeMeta(meta);
        this.index.set(meta);
        this.#o.emit({ type: "held", queue_id: meta.id });
        return;
      case "defer":
        await this.#warnDelayed(
          meta,
          body,
          meta.recipients.filter((r) => r.status === "pending" || r.status === "deferred"),
          now,
        );
        meta.state = "deferred";
        meta.next_attempt_at = step.nextAttemptAt.toISOString();
        await this.#o.spool.writeMeta(meta);
        this.schedule(meta);
        return;
      case "expire":
        this.#apply(meta, step.outcomes, { expired: true });
        this.#o.emit({
          type: "message_expired",
          queue_id: meta.id,
          recipients: step.outcomes.map((o) => o.address),
        });
        break;
      case "bounce":
        break;
    }
    // One DSN for the failed recipients of a message; spooled before the
    // original is removed, so a crash in between duplicates, never loses it.
    await bounceFailed(this.#o.spool, meta, body, {
      hostname: this.#o.hostname,
      now,
      emit: this.#o.emit,
    });
    // The outcomes' events are kept before the message goes (eventsStored).
    await this.#o.eventsStored();
    await this.#o.spool.remove(meta.id);
    this.index.delete(meta.id);
    this.#o.emit({ type: "removed", queue_id: meta.id });
  }

  /**
   * `delivery.delay_warning`: the deferred recipients that have waited that
   * long and were not warned yet get one `Action: delayed` DSN to the sender
   * and a `delayed` event each. `delay_warned_at` is set in the metadata,
   * which the caller writes next: the warning goes once, also across
   * restarts (a crash between the DSN and that write sends it twice, as
   * with bounces, never not at all).
   */
  async #warnDelayed(
    meta: MessageMeta,
    body: Uint8Array,
    open: RecipientState[],
    now: Date,
  ): Promise<void> {
    const after = this.#o.delayWarningMs;
    const age = now.getTime() - Date.parse(meta.created_at);
    if (after <= 0 || age < after) return;
    const due = open.filter((r) => r.status === "deferred" && !r.delay_warned_at);
    if (!due.length) return;
    const dsnId = await warnDelayed(
      this.#o.spool,
      meta,
      body,
      due.map((r) => ({
        address: r.address,
        status: r.last_status ?? "4.0.0",
        diagnostic: r.last_error ?? "",
        remote: r.remote,
      })),
      {
        hostname: this.#o.hostname,
        now,
        willRetryUntil: new Date(Date.parse(meta.created_at) + this.#o.maxQueueLifetimeMs),
      },
    );
    for (const r of due) {
      r.delay_warned_at = now.toISOString();
      const last = r.history?.at(-1);
      this.#o.emit({
        type: "delayed",
        queue_id: meta.id,
        recipient: r.address,
        relay: r.remote,
        code: last ? Number(/^\d{3}/.exec(last.text)?.[0]) || null : null,
        status: r.last_status ?? "4.0.0",
        text: r.last_error ?? "",
        attempt: r.attempts,
        delay_s: Math.round(age / 1000),
        duration_ms: null,
        from: meta.from,
        message_id: meta.message_id,
        tls: null,
        ...(meta.list_ids ? { list_ids: meta.list_ids } : {}),
        ...(meta.subject !== undefined ? { subject: meta.subject } : {}),
        dsn_id: dsnId,
      });
    }
  }
}

function groupByDomain(recipients: RecipientState[]): Map<string, RecipientState[]> {
  const groups = new Map<string, RecipientState[]>();
  for (const r of recipients) {
    const domain = r.address.slice(r.address.lastIndexOf("@") + 1).toLowerCase();
    const list = groups.get(domain) ?? [];
    list.push(r);
    groups.set(domain, list);
  }
  return groups;
}
