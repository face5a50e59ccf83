import { senderAllowed, type SendingLimits, type User } from "../auth/mod.ts";
import type { EmitEvent } from "../events/mod.ts";
import { log } from "../log/mod.ts";
import {
  newQueueId,
  type Spool,
  SpoolFullError,
  type Suppression,
  type SuppressionList,
} from "../spool/mod.ts";
import { bulkSignal, lintBulk, listIds } from "./bulk_lint.ts";
import { checkRecipient, checkSender } from "./envelope_address.ts";
import { type IntakeMessage, prepareIntakeMessage } from "./intake_message.ts";
import type { Mailbox } from "./mailbox_list.ts";
import { checkHeaderSize } from "./header_limits.ts";
import type { LineEndingNormalizer } from "./normalizer.ts";
import { SmtpRejection } from "./rejection.ts";

/**
 * Signs a message for `fromDomain` (the A-label of its From: address, as the intake
 * read it); returns the header lines to prepend, or null when no key applies.
 */
export type SignFunction = (
  message: Uint8Array,
  fromDomain: string,
) => Promise<{ headers: Uint8Array; domains: string[] } | null>;

/** Options for {@linkcode Intake}. */
export interface IntakeOptions {
  hostname: string;
  spool: Spool;
  /** DKIM signing; no signing when absent. */
  sign?: SignFunction;
  /** `server.max_message_size`. */
  maxMessageSize: number;
  /** `server.bare_newline`. */
  bareNewline: "normalize" | "reject";
  /** Receives the `received`, `signed` and `queued` events. */
  emit: EmitEvent;
  /** Addresses refused at RCPT because they hard-bounced; null for none. @default null */
  suppressions?: SuppressionList | null;
  /**
   * Bulk mail without RFC 8058 one-click unsubscribe: let through (`off`),
   * let through with a `bulk_lint` event (`warn`), or refuse (`reject`)
   * (`server.bulk_lint`).
   */
  bulkLint: "off" | "warn" | "reject";
  /** Per-user sending limits; none when absent. */
  limits?: SendingLimits;
  /**
   * The suppression and sending-limit checks of another thread, in place of
   * `suppressions` and `limits` (an intake worker asks the main thread).
   */
  shared?: SharedChecks;
  /** The clock. @default () => new Date() */
  now?: () => Date;
}

/**
 * Suppression and sending limits kept by another thread: intake workers
 * (`server.workers`) ask the main thread, so every connection sees one list
 * and one count.
 */
export interface SharedChecks {
  /** As {@linkcode Intake.checkSuppressed}. */
  checkSuppressed(address: string): Promise<SmtpRejection | null>;
  /** As {@linkcode Intake.checkLimit}. */
  checkLimit(user: User, pending: number): Promise<SmtpRejection | null>;
  /** Counts `recipients` more messages for `username`, once they are queued. */
  count(username: string, recipients: number): Promise<void>;
}

/** One submitted message, its bytes already through a {@linkcode LineEndingNormalizer}. */
export interface Submission {
  from: string;
  recipients: string[];
  /** CRLF message bytes. */
  bytes: Uint8Array;
  /** What the normaliser saw: bare line ends, NUL, 8-bit. */
  normalizer: Pick<LineEndingNormalizer, "bare" | "nul" | "eightBit" | "longestLine" | "header">;
  sizeExceeded: boolean;
  /** The authenticated user, null for trusted networks and local sendmail. */
  user: User | null;
  clientIp: string;
  heloName: string;
  tls: { version: string; cipher: string } | null;
  /** MAIL FROM had SMTPUTF8 (RFC 6531). */
  smtputf8: boolean;
}

const logger = log("submission");

/**
 * The intake pipeline after DATA, shared by the SMTP server and `minimta
 * sendmail`: hygiene checks, RFC 6409 header fixes, the From: rule, DKIM
 * signing, and the durable write that must finish before anyone says 250.
 * Refusals are {@linkcode SmtpRejection}s with the reply to give.
 */
export class Intake {
  #o: Required<Omit<IntakeOptions, "sign" | "limits" | "shared">> & IntakeOptions;

  constructor(options: IntakeOptions) {
    this.#o = { now: () => new Date(), suppressions: null, ...options };
  }

  /**
   * Refuses a new transaction when the spool's disk is nearly full: less free
   * space than 1.5 × the size limit, or the size the client declared (SIZE=)
   * plus that margin, as Postfix's smtpd does. Better a 452 at MAIL than a body
   * streamed in only to be refused at the final dot. Null when there is room
   * (or the free space cannot be read: the write still fails safely).
   */
  async checkRoom(declaredSize = 0): Promise<SmtpRejection | null> {
    const free = await this.#o.spool.freeBytes();
    const margin = Math.ceil(1.5 * this.#o.maxMessageSize);
    if (free === null || free >= margin + declaredSize) return null;
    logger.warn("Spool disk nearly full ({free} bytes free, {needed} needed): refusing new mail", {
      free,
      needed: margin + declaredSize,
    });
    return new SmtpRejection(452, "4.3.1", "Insufficient system storage, try again later");
  }

  /**
   * The refusal for a recipient on the suppression list, so the submitting
   * application learns at RCPT that the address bounced; null otherwise.
   */
  async checkSuppressed(address: string): Promise<SmtpRejection | null> {
    if (this.#o.shared) return await this.#o.shared.checkSuppressed(address);
    const entry = this.#o.suppressions?.find(address);
    return entry ? suppressedRefusal(address, entry) : null;
  }

  /**
   * The refusal for one more RCPT of `user` when it would go over the user's
   * sending limit (`pending` recipients of the transaction, this one
   * included); null when there is room. RFC 3463 §3.8: 4.7.1, a temporary
   * policy refusal, so the client tries again later.
   */
  async checkLimit(user: User | null, pending: number): Promise<SmtpRejection | null> {
    if (user?.limits && this.#o.shared) return await this.#o.shared.checkLimit(user, pending);
    if (!user || !this.#o.limits) return null;
    const verdict = this.#o.limits.check(user, pending);
    if (!verdict) return null;
    const at = verdict.retryAt.toISOString().slice(11, 16);
    return new SmtpRejection(
      452,
      "4.7.1",
      `sending limit of ${verdict.limit} per ${verdict.window} reached; try again after ${at} UTC`,
    );
  }

  /** Checks, fixes, signs and spools a message; resolves with its queue id. */
  async accept(sub: Submission): Promise<string> {
    try {
      return await this.#accept(sub);
    } catch (error) {
      throw error instanceof SmtpRejection ? error : storageError(error);
    }
  }

  async #accept(sub: Submission): Promise<string> {
    checkEnvelope(sub);
    checkHygiene(sub, this.#o.maxMessageSize, this.#o.bareNewline);
    // SMTP refused these at RCPT already; `minimta sendmail` has no RCPT.
    for (const address of sub.recipients) {
      const refusal = await this.checkSuppressed(address);
      if (refusal) throw refusal;
    }
    const queueId = newQueueId(this.#o.now());
    const message = prepareIntakeMessage(sub.bytes, sub.from, {
      queueId,
      hostname: this.#o.hostname,
      heloName: sub.heloName,
      clientIp: sub.clientIp,
      tls: sub.tls,
      authUser: sub.user?.username ?? null,
      recipients: sub.recipients,
      now: this.#o.now(),
    });
    if (sub.user) checkAuthor(sub.user, message);
    // Parallel sessions may each have passed their RCPT check: the last word is here.
    const over = await this.checkLimit(sub.user, sub.recipients.length);
    if (over) throw over;
    const bulk = this.#lintBulk(queueId, sub, message);
    this.#o.emit({
      type: "received",
      queue_id: queueId,
      from: sub.from,
      to: sub.recipients,
      size: sub.bytes.length,
      user: sub.user?.username ?? null,
      client_ip: sub.clientIp,
      bare_newlines: sub.normalizer.bare,
    });
    // The signing domain is the From: address the check above read, never a second
    // reading of the header; a From: the parser refused (only possible without a user)
    // is not signed.
    const domain = message.from?.[0]?.domain ?? null;
    const parts = await this.#sign(queueId, message.parts, domain);
    if (bulk && parts === message.parts) {
      // DMARC aligns a DKIM signature only with the From: domain (RFC 7489 §3.1.1).
      logger.warn(
        "Bulk mail {queue_id} from {domain} is not DKIM-signed: no dkim[] key for that domain, so DMARC cannot pass on DKIM",
        { queue_id: queueId, domain: domain ?? "(none)" },
      );
    }
    const ids = listIds(message.fields);
    const meta = await this.#o.spool.create(parts, {
      id: queueId,
      from: sub.from,
      recipients: sub.recipients,
      message_id: message.messageId,
      auth_user: sub.user?.username ?? null,
      client_ip: sub.clientIp,
      is_bounce: false,
      smtputf8: sub.smtputf8 ||
        [sub.from, ...sub.recipients].some((a) => /[\u0080-\uffff]/.test(a)),
      eight_bit: sub.normalizer.eightBit,
      ...(ids ? { list_ids: ids } : {}),
      subject: message.subject,
    });
    if (sub.user?.limits && (this.#o.limits || this.#o.shared)) {
      const { username } = sub.user;
      const count = this.#o.shared
        ? this.#o.shared.count(username, sub.recipients.length)
        : this.#o.limits!.add(username, sub.recipients.length);
      // The message is queued whatever happens here: a lost count must not make the client resend.
      await count.catch((error) =>
        logger.error("Cannot store the sending count of {user}: {error}", {
          user: sub.user?.username,
          error: String(error),
        })
      );
    }
    this.#o.emit({
      type: "queued",
      queue_id: meta.id,
      from: sub.from,
      recipients: sub.recipients.length,
      size: meta.size,
      message_id: message.messageId,
    });
    return meta.id;
  }

  /**
   * `server.bulk_lint`: a message that looks like bulk mail but lacks
   * one-click unsubscribe is counted (`warn`) or refused (`reject`). Returns
   * whether the message looks like bulk mail.
   */
  #lintBulk(queueId: string, sub: Submission, message: IntakeMessage): boolean {
    if (this.#o.bulkLint === "off") return false;
    const finding = lintBulk(message.fields);
    if (!finding) return bulkSignal(message.fields) !== null;
    const reject = this.#o.bulkLint === "reject";
    this.#o.emit({
      type: "bulk_lint",
      queue_id: queueId,
      result: reject ? "rejected" : "warned",
      reason: `missing ${finding.missing}`,
      signal: finding.signal,
      from: sub.from,
      user: sub.user?.username ?? null,
    });
    if (reject) {
      throw new SmtpRejection(
        550,
        "5.7.9",
        "Bulk mail needs one-click unsubscribe (RFC 8058): add List-Unsubscribe: <https://…> and List-Unsubscribe-Post: List-Unsubscribe=One-Click",
      );
    }
    return true;
  }

  async #sign(queueId: string, parts: Uint8Array[], domain: string | null): Promise<Uint8Array[]> {
    if (!this.#o.sign || domain === null) return parts;
    try {
      const signed = await this.#o.sign(concat(parts), domain);
      if (!signed) return parts;
      this.#o.emit({ type: "signed", queue_id: queueId, domains: signed.domains });
      return [signed.headers, ...parts];
    } catch (error) {
      logger.error("DKIM signing failed for {queue_id}: {error}", {
        queue_id: queueId,
        error: String(error),
      });
      throw new SmtpRejection(
        451,
        "4.7.0",
        "Temporary failure signing the message, try again later",
        { cause: error },
      );
    }
  }
}

/**
 * The From: rule for an authenticated user: the field must be a valid mailbox-list,
 * every mailbox in it the user's, and a From: of several mailboxes needs a Sender:
 * (RFC 5322 §3.6.2), which must be the user's too.
 */
function checkAuthor(user: User, message: IntakeMessage): void {
  const { from, sender } = message;
  if (from === null || from.length === 0) {
    throw new SmtpRejection(
      550,
      "5.6.0",
      'From: header has no valid address (RFC 5322 §3.4: mailbox, e.g. "Name" <user@example.com>)',
    );
  }
  if (sender === null || sender.length > 1) {
    throw new SmtpRejection(550, "5.6.0", "Sender: header must be exactly one valid address");
  }
  if (from.length > 1 && sender.length === 0) {
    throw new SmtpRejection(
      550,
      "5.6.0",
      `From: header with ${from.length} addresses needs a Sender: header (RFC 5322 §3.6.2)`,
    );
  }
  for (const mailbox of from) checkOwned(user, "From", mailbox);
  if (sender.length === 1) checkOwned(user, "Sender", sender[0]);
}

function checkOwned(user: User, field: string, mailbox: Mailbox): void {
  if (senderAllowed(user, mailbox.address)) return;
  throw new SmtpRejection(
    550,
    "5.7.1",
    `${field}: address <${mailbox.address}> not owned by user ${user.username}`,
  );
}

// The SMTP server checks each address as it comes (MAIL, RCPT); the local
// ways in (sockets, offline sendmail) meet the same rules here.
function checkEnvelope(sub: Submission): void {
  const refusal = checkSender(sub.from) ??
    sub.recipients.map(checkRecipient).find((r) => r !== null);
  if (refusal) throw refusal;
}

function checkHygiene(sub: Submission, maxSize: number, bareNewline: string): void {
  if (sub.sizeExceeded) {
    throw new SmtpRejection(552, "5.3.4", `Message exceeds the size limit of ${maxSize} bytes`);
  }
  if (sub.normalizer.nul > 0) {
    throw new SmtpRejection(554, "5.6.0", "NUL characters are not allowed in messages");
  }
  if (sub.normalizer.bare > 0 && bareNewline === "reject") {
    throw new SmtpRejection(
      550,
      "5.5.2",
      "Bare <CR> or <LF> received; lines must end with <CR><LF>",
    );
  }
  // RFC 5321 §4.5.3.1.6 / RFC 5322 §2.1.1: no line over 998 octets may be
  // sent, and folding it later would break the DKIM signature, so such a
  // message is refused here, where the sender can still encode it properly.
  if (sub.normalizer.longestLine > 998) {
    throw new SmtpRejection(
      554,
      "5.6.0",
      `Line of ${sub.normalizer.longestLine} octets; lines must not exceed 998 (use quoted-printable or base64)`,
    );
  }
  checkHeaderSize(sub.normalizer.header);
  if (sub.recipients.length === 0) throw new SmtpRejection(554, "5.5.1", "No valid recipients");
}

// RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets; the remote reply is cut to fit.
function suppressedRefusal(address: string, entry: Suppression): SmtpRejection {
  // deno-lint-ignore no-control-regex
  const reply = entry.reply.replace(/[\u0000-\u001f\u007f]+/g, " ").slice(0, 200);
  const when = entry.added_at.replace(/\.\d+Z$/, "Z");
  const why = entry.source === "bounce" ? "after a hard bounce" : "by an operator";
  return new SmtpRejection(
    550,
    "5.1.1",
    `<${address}>: address suppressed ${why} on ${when} (${reply})`,
  );
}

function storageError(error: unknown): SmtpRejection {
  if (error instanceof SpoolFullError) {
    logger.error("Spool full: {error}", { error: error.message });
    return new SmtpRejection(452, "4.3.1", "Insufficient system storage", { cause: error });
  }
  logger.error("Cannot accept message: {error}", {
    error: error instanceof Error ? error.message : String(error),
  });
  return new SmtpRejection(451, "4.3.0", "Local error in processing, try again later", {
    cause: error,
  });
}

/** Joins byte chunks into one array (no copy for a single chunk). */
export function concat(chunks: Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}
