/**
 * @module
 * Mail events: what happened to a session or a message, as typed data. The
 * intake and the delivery engine emit them; `src/cli/serve.ts` subscribes
 * the mail log, the metrics and the webhooks, so a consumer reads fields the
 * compiler checks instead of decoding log records. {@linkcode writeMailLog}
 * turns an event into its mail-log line.
 */
import { mailLog } from "../log/mod.ts";
import type { ListIds } from "../spool/mod.ts";

/** A session opened (after the connection limits let it in). */
export interface ConnectEvent {
  type: "connect";
  session: string;
  client_ip: string;
  trusted: boolean;
}

/** A login succeeded. */
export interface AuthSuccessEvent {
  type: "auth_success";
  session: string;
  client_ip: string;
  username: string;
}

/** A login failed or was refused by the throttle (SMTP AUTH or the status page). */
export interface AuthFailureEvent {
  type: "auth_failure";
  /** Absent for the status page, which has no SMTP session. */
  session?: string;
  client_ip: string;
  username: string;
  reason: string;
}

/** A submission refused at one SMTP stage. */
export interface RejectedEvent {
  type: "rejected";
  session: string;
  client_ip: string;
  /** `connect`, `mail_from`, `rcpt_to`, `data`, … */
  stage: string;
  code: number;
  reason: string;
  /** The sender or recipient refused, when the stage has one. */
  from?: string;
  to?: string;
}

/** A message read in full, before it is signed and spooled. */
export interface ReceivedEvent {
  type: "received";
  queue_id: string;
  from: string;
  to: string[];
  size: number;
  user: string | null;
  client_ip: string | null;
  bare_newlines: number;
}

/** A message signed with DKIM for these domains. */
export interface SignedEvent {
  type: "signed";
  queue_id: string;
  domains: string[];
}

/** A message durably spooled: from here on it is delivered or bounced. */
export interface QueuedEvent {
  type: "queued";
  queue_id: string;
  from: string;
  recipients: number;
  size: number;
  message_id: string | null;
}

/** TLS of the connection a reply came over. */
export interface AttemptTls {
  used: boolean;
  version: string | null;
  verified: boolean;
}

/** The result of one attempt, or of giving up, for one recipient. */
export interface RecipientEvent {
  /**
   * `delivered` (2xx), `deferred` (to be retried), `failed` (a permanent
   * refusal: bounced), `expired` (deferred past the queue lifetime: bounced).
   */
  type: "delivered" | "deferred" | "failed" | "expired";
  queue_id: string;
  recipient: string;
  /** `mx.example.com[192.0.2.1]` when a server was reached. */
  relay: string | null;
  /** The SMTP reply code, or null for a local decision. */
  code: number | null;
  /** RFC 3463 status. */
  status: string;
  text: string;
  /** Attempts made for this recipient, this one included. */
  attempt: number;
  /** Seconds since the message was queued. */
  delay_s: number;
  /** How long the attempt took; null for a local decision such as expiry. */
  duration_ms: number | null;
  from: string;
  message_id: string | null;
  tls: AttemptTls | null;
  /** The list manager's campaign and subscriber ids, when the message carried them. */
  list_ids?: ListIds;
  /** The message's Subject:, when the intake recorded it. */
  subject?: string | null;
}

/**
 * A recipient deferred longer than `delivery.delay_warning`: the sender was
 * told once with an `Action: delayed` DSN (RFC 3464 §2.3.3). The fields are
 * those of the recipient's last deferral.
 */
export interface DelayedEvent extends Omit<RecipientEvent, "type"> {
  type: "delayed";
  /** The warning DSN's queue id; null when none could go (null sender, a bounce). */
  dsn_id: string | null;
}

/**
 * A message that looks like bulk mail (List-Id, Precedence: bulk, a list
 * manager's headers) without RFC 8058 one-click unsubscribe, or whose From:
 * domain has no DKIM key. `warned` lets it through, `rejected` refused it.
 */
export interface BulkLintEvent {
  type: "bulk_lint";
  queue_id: string;
  result: "warned" | "rejected";
  /** What is missing, in words. */
  reason: string;
  /** Why it looks like bulk mail, e.g. `List-Id`. */
  signal: string;
  from: string;
  user: string | null;
}

/** A message's open recipients gave up after the queue lifetime. */
export interface MessageExpiredEvent {
  type: "message_expired";
  queue_id: string;
  recipients: string[];
}

/** A DSN was queued to the sender for these recipients. */
export interface BouncedEvent {
  type: "bounced";
  queue_id: string;
  dsn_id: string;
  to: string;
  recipients: string[];
}

/** An operator held, released or removed a message, or the engine removed a finished one. */
export interface MessageStateEvent {
  type: "held" | "released" | "removed";
  queue_id: string;
  /** `operator` when a person asked for it. */
  by?: "operator";
}

/** An address went on the suppression list (a hard bounce, or an operator). */
export interface SuppressedEvent {
  type: "suppressed";
  /** The message whose bounce suppressed it; null when an operator added it. */
  queue_id: string | null;
  recipient: string;
  /** The bounced message's envelope sender; "" when an operator added it. */
  from: string;
  message_id: string | null;
  source: "bounce" | "operator" | "import";
  code: number | null;
  status: string | null;
  /** The remote reply, or the operator's reason. */
  text: string;
  relay: string | null;
  expires_at: string;
}

/** An operator took an address off the suppression list. */
export interface UnsuppressedEvent {
  type: "unsuppressed";
  recipient: string;
}

/**
 * A throttling reply suspended delivery to a mailbox provider (or, when the
 * destination is no provider, to a domain): one event per suspension.
 */
export interface ProviderSuspendedEvent {
  type: "provider_suspended";
  /** The provider's name, or the recipient domain. */
  provider: string;
  /** When new transactions may start again. */
  until: string;
  /** The reply that caused it: code, enhanced status and text. */
  reply: string;
  /** `mx.example.com[192.0.2.1]` the reply came from. */
  relay: string | null;
  /** The `match` of the rule that named the reply. */
  rule: string;
}

/** Everything the intake emits. */
export type IntakeEvent =
  | ConnectEvent
  | AuthSuccessEvent
  | AuthFailureEvent
  | RejectedEvent
  | ReceivedEvent
  | SignedEvent
  | BulkLintEvent
  | QueuedEvent;

/** Everything the delivery engine (and the queue commands) emit. */
export type DeliveryEvent =
  | RecipientEvent
  | DelayedEvent
  | MessageExpiredEvent
  | BouncedEvent
  | MessageStateEvent
  | SuppressedEvent
  | UnsuppressedEvent
  | ProviderSuspendedEvent;

/** Any mail event. */
export type MailEvent = IntakeEvent | DeliveryEvent;

/** Where a component sends its events. */
export type EmitEvent = (event: MailEvent) => void;

/** What {@linkcode EventStream.stored} gives when no listener keeps events. */
const RESOLVED = Promise.resolve();

/**
 * A synchronous fan-out: every listener sees every event, in order. A
 * listener that throws is skipped for that event; it never breaks the mail
 * flow that emitted it.
 */
export class EventStream {
  #listeners: EmitEvent[] = [];
  #stores: (() => Promise<void>)[] = [];

  /**
   * Adds a listener; returns a function that removes it. A listener that
   * keeps events (the webhook outbox) passes `stored`, resolving once all it
   * was given is kept: {@linkcode EventStream.stored} waits for it.
   */
  on(listener: EmitEvent, stored?: () => Promise<void>): () => void {
    this.#listeners.push(listener);
    if (stored) this.#stores.push(stored);
    return () => {
      const i = this.#listeners.indexOf(listener);
      if (i >= 0) this.#listeners.splice(i, 1);
      const j = stored ? this.#stores.indexOf(stored) : -1;
      if (j >= 0) this.#stores.splice(j, 1);
    };
  }

  /** Resolves once every listener that keeps events has kept all emitted so far. Bound. */
  readonly stored = (): Promise<void> =>
    // Called for every message that leaves the queue: nothing to wait for costs nothing.
    this.#stores.length ? Promise.all(this.#stores.map((s) => s())).then(() => {}) : RESOLVED;

  /** Sends one event to every listener. Bound, so it can be passed as an {@linkcode EmitEvent}. */
  readonly emit: EmitEvent = (event) => {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch {
        // Metrics and webhooks must never break delivery or the intake.
      }
    }
  };
}

/**
 * Writes one event as its mail-log line. The names and fields are the mail
 * log's contract (README, "Mail log"): a recipient's attempt is one
 * `delivery` line with `outcome` `delivered`, `transient` or `permanent`
 * (and `expired: true` when the queue lifetime ran out), a message's expiry
 * is `expired`.
 */
export function writeMailLog(event: MailEvent): void {
  switch (event.type) {
    case "delivered":
    case "deferred":
    case "failed":
    case "expired": {
      const { type, ...fields } = event;
      mailLog("delivery", {
        queue_id: fields.queue_id,
        recipient: fields.recipient,
        // "transient" (not "temporary", the word inside minimta) is the
        // mail log's contract: log consumers match on it.
        outcome: type === "delivered"
          ? "delivered"
          : type === "deferred"
          ? "transient"
          : "permanent",
        relay: fields.relay,
        code: fields.code,
        status: fields.status,
        text: fields.text,
        attempt: fields.attempt,
        delay_s: fields.delay_s,
        duration_ms: fields.duration_ms,
        expired: type === "expired",
        from: fields.from,
        message_id: fields.message_id,
        tls: fields.tls,
      });
      return;
    }
    case "message_expired": {
      const { type: _, ...fields } = event;
      mailLog("expired", fields);
      return;
    }
    default: {
      const { type, ...fields } = event;
      mailLog(type, fields);
    }
  }
}
