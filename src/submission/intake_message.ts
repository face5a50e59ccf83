import {
  fieldValue,
  type HeaderField,
  latin1Encode,
  parseMessage,
  serializeMessage,
} from "./headers.ts";
import { type Mailbox, parseMailboxList } from "./mailbox_list.ts";
import { SmtpRejection } from "./rejection.ts";

/** What the intake knows about a submission when the data has arrived. */
export interface IntakeContext {
  queueId: string;
  hostname: string;
  heloName: string;
  clientIp: string;
  /** e.g. "TLSv1.3" with cipher, or null on a plaintext session. */
  tls: { version: string; cipher: string } | null;
  authUser: string | null;
  recipients: string[];
  now: Date;
}

/** A message ready for signing: its parts and what was learnt from its headers. */
export interface IntakeMessage {
  parts: Uint8Array[];
  /**
   * The mailboxes of the From: field, the one reading of it that both the sender check
   * and the DKIM signing domain use: empty when there is no From: field (and none was
   * added), null when the field is not a valid mailbox-list (RFC 5322 §3.6.2).
   */
  from: Mailbox[] | null;
  /** The mailboxes of the Sender: field, likewise (valid with exactly one). */
  sender: Mailbox[] | null;
  messageId: string | null;
  /** The header fields of the submitted message (after the removals), for checks on them. */
  fields: HeaderField[];
  /** The Subject: field (UTF-8 where it decodes), at most 200 characters; null when absent. */
  subject: string | null;
}

// Postfix's hopcount_limit: a message with this many Received: fields is looping.
const HOP_LIMIT = 50;
// Postfix cleanup(8) removes these before the message goes anywhere (docs/testing.md SPOOF-08).
const STRIPPED = new Set(["bcc", "resent-bcc", "return-path"]);

/**
 * Applies the submission rules of RFC 6409 §8 to a CRLF message: adds
 * `Received:`, and `Date:`, `Message-ID:` and `From:` when missing; removes
 * Bcc and Return-Path; refuses loops and a second From: or Sender: field.
 */
export function prepareIntakeMessage(
  bytes: Uint8Array,
  envelopeFrom: string,
  ctx: IntakeContext,
): IntakeMessage {
  const { fields, body } = parseMessage(bytes);
  const hops = fields.filter((f) => f.name === "received").length;
  if (hops >= HOP_LIMIT) {
    throw new SmtpRejection(554, "5.4.6", `Too many hops (${hops} Received: fields): mail loop`);
  }
  const froms = fields.filter((f) => f.name === "from");
  const senders = fields.filter((f) => f.name === "sender");
  // RFC 5322 §3.6: at most one of each; with two, readers pick different ones.
  if (froms.length > 1) {
    throw new SmtpRejection(550, "5.7.1", "Message has more than one From: field");
  }
  if (senders.length > 1) {
    throw new SmtpRejection(550, "5.7.1", "Message has more than one Sender: field");
  }
  const kept = fields.filter((f) => !STRIPPED.has(f.name));
  const added: HeaderField[] = [];
  let from = froms.length ? mailboxes(froms[0]) : [];
  if (!froms.length && envelopeFrom) {
    added.push({ name: "from", raw: `From: <${envelopeFrom}>` });
    from = parseMailboxList(`<${envelopeFrom}>`);
  }
  const sender = senders.length ? mailboxes(senders[0]) : [];
  if (!kept.some((f) => f.name === "date")) {
    added.push({ name: "date", raw: `Date: ${rfc5322Date(ctx.now)}` });
  }
  const existingId = kept.find((f) => f.name === "message-id");
  let messageId = existingId ? fieldValue(existingId) : null;
  if (!existingId) {
    messageId = `<${ctx.queueId}.${crypto.randomUUID().slice(0, 8)}@${ctx.hostname}>`;
    added.push({ name: "message-id", raw: `Message-ID: ${messageId}` });
  }
  const all = [receivedField(ctx), ...kept, ...added];
  const subjectField = kept.find((f) => f.name === "subject");
  return {
    parts: serializeMessage(all, body),
    from,
    sender,
    messageId,
    fields: kept,
    subject: subjectField ? utf8OrLatin1(fieldValue(subjectField)).slice(0, 200) : null,
  };
}

// Header bytes are kept as latin1 (one char per byte); a mailbox is read from their
// UTF-8 (RFC 6532), and bytes that are not UTF-8 make the field unreadable.
function mailboxes(field: HeaderField): Mailbox[] | null {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(latin1Encode(fieldValue(field)));
  } catch {
    return null;
  }
  return parseMailboxList(text);
}

function utf8OrLatin1(text: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(latin1Encode(text));
  } catch {
    return text;
  }
}

/** `Sun, 22 Nov 2026 00:25:00 +0000` (RFC 5322 §3.3). */
export function rfc5322Date(date: Date): string {
  return date.toUTCString().replace(/GMT$/, "+0000");
}

function receivedField(ctx: IntakeContext): HeaderField {
  const protocol = `ESMTP${ctx.tls ? "S" : ""}${ctx.authUser ? "A" : ""}`;
  const helo = safeToken(ctx.heloName) || "unknown";
  const lines = [
    `Received: from ${helo} ([${safeToken(ctx.clientIp)}])`,
    `\tby ${ctx.hostname} (minimta)`,
  ];
  if (ctx.tls) {
    lines.push(`\t(using ${safeToken(ctx.tls.version)} with cipher ${safeToken(ctx.tls.cipher)})`);
  }
  const forClause = ctx.recipients.length === 1 ? ` for <${safeToken(ctx.recipients[0])}>` : "";
  lines.push(`\twith ${protocol} id ${ctx.queueId}${forClause};`, `\t${rfc5322Date(ctx.now)}`);
  return { name: "received", raw: lines.join("\r\n") };
}

// What a client sent goes into a header only as printable ASCII without
// spaces or angle brackets, so it can never inject a field (docs/testing.md INJ-01).
function safeToken(text: string): string {
  return text.replace(/[^\x21-\x7e]|[<>()]/g, "").slice(0, 255);
}
