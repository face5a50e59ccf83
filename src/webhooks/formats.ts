import { createHash, createHmac, createPrivateKey, createPublicKey, createSign } from "node:crypto";
import type { DelayedEvent, MailEvent, RecipientEvent, SuppressedEvent } from "../events/mod.ts";

/** The body a receiver reads: minimta's own, listmonk's bounce API, or Postal's webhooks. */
export type WebhookFormat = "minimta" | "listmonk" | "postal";

/**
 * What happened to one recipient (the names `webhooks[].events` takes);
 * `suppressed`: the address was put on the suppression list.
 */
export type WebhookEventType =
  | "delivered"
  | "deferred"
  | "bounced"
  | "expired"
  | "delayed"
  | "suppressed";

/** A configured receiver (`webhooks:` in the config). */
export interface WebhookTarget {
  url: string;
  events: WebhookEventType[];
  /** HMAC key of `X-Minimta-Signature`; "" sends none. */
  secret: string;
  /** @default "minimta" */
  format?: WebhookFormat;
  /** HTTP basic auth, added when each request is sent (never stored in the outbox). */
  username?: string;
  password?: string;
  /** PEM RSA private key for Postal's signature headers; null or absent for none. */
  signingKey?: string | null;
}

/** minimta's JSON body for one recipient and attempt. */
export interface WebhookEvent {
  /** Unique per event, the same on every retry: receivers de-duplicate on it. */
  id: string;
  event: WebhookEventType;
  queue_id: string;
  message_id: string | null;
  sender: string;
  recipient: string;
  reply: { code: number | null; status: string; text: string; remote: string | null };
  attempt: number;
  occurred_at: string;
}

/** A request ready to post: the body and its headers, signatures included. */
export interface WebhookRequest {
  event: WebhookEventType;
  body: string;
  headers: Record<string, string>;
}

type OutcomeEvent = RecipientEvent | DelayedEvent;
/** The webhook names of a recipient's outcome (all but `suppressed`). */
type OutcomeType = Exclude<WebhookEventType, "suppressed">;

/** The webhook name of a mail event; null for events webhooks do not carry. */
export function webhookType(event: MailEvent): WebhookEventType | null {
  switch (event.type) {
    case "delivered":
    case "deferred":
    case "expired":
    case "delayed":
    case "suppressed":
      return event.type;
    case "failed":
      // A receiver's name for a permanent failure is "bounced".
      return "bounced";
    default:
      return null;
  }
}

/** The minimta-format event for one recipient's mail event; null for events webhooks do not carry. */
export function toWebhookEvent(event: MailEvent, now: number): WebhookEvent | null {
  const type = webhookType(event);
  if (type === null) return null;
  if (event.type === "suppressed") return suppressedEvent(event, now);
  const e = event as OutcomeEvent;
  return {
    id: crypto.randomUUID(),
    event: type,
    queue_id: e.queue_id,
    message_id: e.message_id,
    sender: e.from,
    recipient: e.recipient,
    reply: { code: e.code, status: e.status, text: e.text, remote: e.relay },
    attempt: e.attempt,
    occurred_at: new Date(now).toISOString(),
  };
}

/**
 * The request for `target` about one mail event, in the target's format;
 * null when the target does not take it (its `events`, or a format that
 * has no word for it: listmonk hears only of bounces).
 */
export function buildRequest(
  target: WebhookTarget,
  event: MailEvent,
  now: number,
): WebhookRequest | null {
  const type = webhookType(event);
  if (type === null || !target.events.includes(type)) return null;
  const format = target.format ?? "minimta";
  if (event.type === "suppressed") {
    // Only minimta's format has a word for it (listmonk and Postal hear of the bounce itself).
    if (format !== "minimta") return null;
    const body = JSON.stringify(suppressedEvent(event, now));
    return { event: type, body, headers: minimtaHeaders(target.secret, type, body) };
  }
  const e = event as OutcomeEvent;
  if (format === "listmonk") {
    if (type !== "bounced" && type !== "expired") return null;
    const body = JSON.stringify(listmonkBody(e, type));
    return { event: type, body, headers: { "content-type": "application/json" } };
  }
  if (format === "postal") {
    const body = JSON.stringify(postalBody(e, type as OutcomeType, now));
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (target.signingKey) Object.assign(headers, postalSignatures(target.signingKey, body));
    if (target.secret) headers["x-minimta-signature"] = `sha256=${sign(target.secret, body)}`;
    return { event: type, body, headers };
  }
  const body = JSON.stringify(toWebhookEvent(e, now));
  return { event: type, body, headers: minimtaHeaders(target.secret, type, body) };
}

// The bounce that put the address on the list (queue_id and reply), or an
// operator's addition (queue_id "", the reason as the reply text).
function suppressedEvent(event: SuppressedEvent, now: number): WebhookEvent {
  return {
    id: crypto.randomUUID(),
    event: "suppressed",
    queue_id: event.queue_id ?? "",
    message_id: event.message_id,
    sender: event.from,
    recipient: event.recipient,
    reply: { code: event.code, status: event.status ?? "", text: event.text, remote: event.relay },
    attempt: 0,
    occurred_at: new Date(now).toISOString(),
  };
}

/** The headers of a minimta-format request. */
export function minimtaHeaders(
  secret: string,
  event: WebhookEventType,
  body: string,
): Record<string, string> {
  return {
    "content-type": "application/json",
    "x-minimta-event": event,
    "x-minimta-signature": `sha256=${sign(secret, body)}`,
  };
}

/** HMAC-SHA256 of the body under the target's secret, hex. */
export function sign(secret: string, body: string): string {
  return createHmac("sha256", secret).update(body).digest("hex");
}

/**
 * listmonk's bounce webhook API (`POST /webhooks/bounce`, docs "Bounce
 * processing"): `email`, `source`, `type` (`hard` for a permanent refusal,
 * `soft` for a message that expired in the queue) and `meta` (any JSON),
 * with the campaign and subscriber UUIDs when the message carried
 * listmonk's headers; listmonk refuses a `subscriber_uuid` that is not a
 * UUID, so the intake keeps only those that are.
 */
function listmonkBody(e: OutcomeEvent, type: "bounced" | "expired"): Record<string, unknown> {
  const body: Record<string, unknown> = {
    email: e.recipient,
    source: "minimta",
    type: type === "bounced" ? "hard" : "soft",
    meta: {
      queue_id: e.queue_id,
      message_id: e.message_id,
      sender: e.from,
      code: e.code,
      status: e.status,
      text: e.text,
      remote: e.relay,
      attempt: e.attempt,
    },
  };
  if (e.list_ids?.listmonk_campaign) body.campaign_uuid = e.list_ids.listmonk_campaign;
  if (e.list_ids?.listmonk_subscriber) body.subscriber_uuid = e.list_ids.listmonk_subscriber;
  return body;
}

const POSTAL_EVENTS: Record<OutcomeType, [string, string]> = {
  delivered: ["MessageSent", "Sent"],
  deferred: ["MessageDelayed", "SoftFail"],
  delayed: ["MessageDelayed", "SoftFail"],
  bounced: ["MessageDeliveryFailed", "HardFail"],
  expired: ["MessageDeliveryFailed", "HardFail"],
};

/**
 * Postal's webhook request: `{event, timestamp, payload, uuid}` with the
 * message status payload (`status`, `details`, `output`, `time`,
 * `sent_with_ssl`, `timestamp`, `message`). Postal numbers its messages;
 * minimta has queue ids, so `message.id` is a stable 48-bit number made
 * from queue id and recipient (Postal keeps one message per recipient) and
 * `message.token` is the queue id. `MessageBounced` (a DSN received later
 * for an accepted message) never comes: minimta receives no mail.
 */
function postalBody(e: OutcomeEvent, type: OutcomeType, now: number): unknown {
  const [event, status] = POSTAL_EVENTS[type];
  const seconds = now / 1000;
  // `output` is the remote's reply as it came: code, enhanced status, text.
  const reply = e.code !== null ? `${e.code} ${e.status} ${e.text}` : e.text;
  return {
    event,
    timestamp: seconds,
    payload: {
      status,
      details: postalDetails(e, type),
      output: reply,
      time: e.duration_ms === null ? null : e.duration_ms / 1000,
      sent_with_ssl: e.tls?.used ?? false,
      timestamp: seconds,
      message: {
        id: numericId(`${e.queue_id} ${e.recipient}`),
        token: e.queue_id,
        direction: "outgoing",
        message_id: e.message_id?.replace(/^<|>$/g, "") ?? null,
        to: e.recipient,
        from: e.from,
        subject: e.subject ?? "",
        timestamp: seconds - e.delay_s,
        spam_status: "NotChecked",
        tag: null,
      },
    },
    uuid: crypto.randomUUID(),
  };
}

function postalDetails(e: OutcomeEvent, type: OutcomeType): string {
  const where = e.relay ? ` by ${e.relay}` : "";
  switch (type) {
    case "delivered":
      return `Message for ${e.recipient} accepted${where}`;
    case "deferred":
      return `Message for ${e.recipient} deferred${where} (attempt ${e.attempt}); will retry`;
    case "delayed":
      return `Message for ${e.recipient} delayed ${e.delay_s} s; the sender was warned`;
    case "bounced":
      return `Message for ${e.recipient} refused${where}`;
    case "expired":
      return `Message for ${e.recipient} expired in the queue after ${e.attempt - 1} attempts`;
  }
}

function numericId(text: string): number {
  return parseInt(createHash("sha256").update(text).digest("hex").slice(0, 12), 16);
}

/**
 * Postal's signature headers: `X-Postal-Signature` is the base64 RSA-SHA1
 * signature of the raw body, `X-Postal-Signature-256` the RSA-SHA256 one,
 * both under the server's RSA key. `X-Postal-Signature-KID` names the key:
 * here the hex SHA-256 of its public key (DER), so receivers holding several
 * keys can pick the right one.
 */
export function postalSignatures(pem: string, body: string): Record<string, string> {
  const key = createPrivateKey(pem);
  const der = createPublicKey(key).export({ type: "spki", format: "der" });
  const signWith = (algorithm: string) =>
    createSign(algorithm).update(body).sign(key).toString("base64");
  return {
    "x-postal-signature": signWith("RSA-SHA1"),
    "x-postal-signature-256": signWith("RSA-SHA256"),
    "x-postal-signature-kid": createHash("sha256").update(der).digest("hex"),
  };
}
