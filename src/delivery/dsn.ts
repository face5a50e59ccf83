import type { EmitEvent } from "../events/mod.ts";
import { log } from "../log/mod.ts";
import type { MessageMeta, Spool } from "../spool/mod.ts";

/** A recipient that could not be delivered, for the DSN. */
export interface FailedRecipient {
  address: string;
  status: string;
  diagnostic: string;
  remote: string | null;
}

/** Options for {@linkcode buildDsn}. */
export interface DsnOptions {
  hostname: string;
  now: Date;
  /**
   * A delay warning instead of a failure report: `Action: delayed` with
   * `Will-Retry-Until` this date (RFC 3464 §2.3.3, §2.3.8). @default null
   */
  willRetryUntil?: Date | null;
}

/** Options for {@linkcode bounceFailed}. */
export interface BounceOptions extends DsnOptions {
  /** Receives the `bounced` event. */
  emit: EmitEvent;
}

const encoder = new TextEncoder();
const utf8 = new TextDecoder();

/**
 * Builds a delivery status notification (RFC 3464) for the failed
 * recipients of `meta`: a multipart/report with a human-readable part, the
 * message/delivery-status part and the original message's headers. It is
 * sent from MAILER-DAEMON with the null reverse-path (RFC 5321 §4.5.5).
 */
export function buildDsn(
  meta: MessageMeta,
  originalBody: Uint8Array,
  failed: FailedRecipient[],
  options: DsnOptions,
): Uint8Array {
  const boundary = `${meta.id}/${options.hostname}/${crypto.randomUUID().slice(0, 8)}`;
  const date = rfc5322(options.now);
  const until = options.willRetryUntil ?? null;
  const lines = [
    `From: Mail Delivery System <MAILER-DAEMON@${options.hostname}>`,
    `To: <${meta.from}>`,
    `Subject: ${
      until ? "Delayed Mail (still being retried)" : "Undelivered Mail Returned to Sender"
    }`,
    `Date: ${date}`,
    `Message-ID: <${meta.id}.dsn.${crypto.randomUUID().slice(0, 8)}@${options.hostname}>`,
    `Auto-Submitted: auto-replied`,
    `MIME-Version: 1.0`,
    `Content-Type: multipart/report; report-type=delivery-status;`,
    `\tboundary="${boundary}"`,
    ``,
    `This is a MIME-encapsulated message.`,
    ``,
    `--${boundary}`,
    `Content-Description: Notification`,
    `Content-Type: text/plain; charset=us-ascii`,
    ``,
    ...(until
      ? delayedPart(meta, failed, options.hostname, until)
      : humanPart(meta, failed, options.hostname)),
    ``,
    `--${boundary}`,
    `Content-Description: Delivery report`,
    `Content-Type: message/delivery-status`,
    ``,
    `Reporting-MTA: dns; ${options.hostname}`,
    `X-Minimta-Queue-ID: ${meta.id}`,
    `Arrival-Date: ${rfc5322(new Date(meta.created_at))}`,
    // RFC 3464 §2.1: one blank line before each per-recipient block, none more.
    ...failed.flatMap((f) => recipientFields(f, date, until)),
    ``,
    `--${boundary}`,
    `Content-Description: ${until ? "Delayed" : "Undelivered"} Message Headers`,
    `Content-Type: text/rfc822-headers`,
    ``,
    ...originalHeaders(originalBody),
    ``,
    `--${boundary}--`,
    ``,
  ];
  return encoder.encode(lines.join("\r\n"));
}

function humanPart(meta: MessageMeta, failed: FailedRecipient[], hostname: string): string[] {
  return [
    `This is the mail system at host ${hostname}.`,
    ``,
    `I'm sorry to have to inform you that your message could not`,
    `be delivered to one or more recipients. It's attached below.`,
    ``,
    ...recipientLines(failed),
    `Queue ID: ${meta.id}`,
  ];
}

// One line per recipient and a blank line after it, each within the 998-octet limit (RFC 5322 §2.1.1).
function recipientLines(recipients: FailedRecipient[]): string[] {
  return recipients.flatMap((
    f,
  ) => [`<${ascii(f.address)}>: ${ascii(f.diagnostic)}`.slice(0, 990), ``]);
}

function delayedPart(
  meta: MessageMeta,
  delayed: FailedRecipient[],
  hostname: string,
  until: Date,
): string[] {
  return [
    `This is the mail system at host ${hostname}.`,
    ``,
    `####################################################################`,
    `# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #`,
    `####################################################################`,
    ``,
    `Your message could not be delivered yet to one or more recipients.`,
    `It will be retried until ${rfc5322(until)}.`,
    ``,
    ...recipientLines(delayed),
    `Queue ID: ${meta.id}`,
  ];
}

function recipientFields(f: FailedRecipient, date: string, until: Date | null): string[] {
  // RFC 3464 §2.3.4: a delayed recipient's status is a persistent transient failure, 4.x.x.
  const status = until && !/^4\./.test(f.status) ? "4.0.0" : f.status;
  const fields = [
    ``,
    `Final-Recipient: rfc822; ${ascii(f.address)}`,
    `Action: ${until ? "delayed" : "failed"}`,
    `Status: ${status}`,
  ];
  if (f.remote) fields.push(`Remote-MTA: dns; ${ascii(f.remote.replace(/\[.*\]$/, ""))}`);
  fields.push(
    `Diagnostic-Code: ${f.remote ? "smtp" : "x-minimta"}; ${ascii(f.diagnostic).slice(0, 900)}`,
  );
  fields.push(`Last-Attempt-Date: ${date}`);
  if (until) fields.push(`Will-Retry-Until: ${rfc5322(until)}`);
  return fields;
}

// The original header section, as text/rfc822-headers (RFC 3462). Header
// bytes are read as UTF-8 (RFC 6532); lines are CRLF in the spool already.
function originalHeaders(body: Uint8Array): string[] {
  const text = utf8.decode(body.subarray(0, 256 * 1024));
  const end = text.indexOf("\r\n\r\n");
  return (end < 0 ? text : text.slice(0, end)).split("\r\n");
}

function ascii(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, "?");
}

function rfc5322(date: Date): string {
  return date.toUTCString().replace(/GMT$/, "+0000");
}

const logger = log("delivery");

/**
 * Spools one DSN to the sender for the failed recipients of `meta` (none
 * when nothing failed). A message with the null sender, or one minimta made
 * itself, never bounces (RFC 5321 §4.5.5): it is dropped with a log line.
 * The caller removes the original only after this resolves, so a crash in
 * between can duplicate the DSN but never lose it.
 */
export async function bounceFailed(
  spool: Spool,
  meta: MessageMeta,
  body: Uint8Array,
  options: BounceOptions,
): Promise<void> {
  const failed: FailedRecipient[] = meta.recipients.filter((r) => r.status === "failed").map((
    r,
  ) => ({
    address: r.address,
    status: r.last_status ?? "5.0.0",
    diagnostic: r.last_error ?? "",
    remote: r.remote,
  }));
  if (!failed.length) return;
  if (meta.from === "" || meta.is_bounce) {
    logger.warn("Dropping undeliverable bounce {queue_id}", { queue_id: meta.id });
    return;
  }
  const created = await spoolDsn(spool, meta, buildDsn(meta, body, failed, options));
  options.emit({
    type: "bounced",
    queue_id: meta.id,
    dsn_id: created.id,
    to: meta.from,
    recipients: failed.map((f) => f.address),
  });
}

// A DSN goes to the original sender from the null reverse-path and is itself
// marked a bounce, so that it never causes another (RFC 5321 §4.5.5).
function spoolDsn(spool: Spool, meta: MessageMeta, dsn: Uint8Array): Promise<MessageMeta> {
  return spool.create([dsn], {
    from: "",
    recipients: [meta.from],
    message_id: null,
    auth_user: null,
    client_ip: null,
    is_bounce: true,
    smtputf8: false,
    eight_bit: false,
  });
}

/** Options for {@linkcode warnDelayed}. */
export interface WarnDelayedOptions extends DsnOptions {
  willRetryUntil: Date;
}

/**
 * Spools one delay warning (`Action: delayed`, RFC 3464) to the sender for
 * the recipients of `meta` named in `delayed`; resolves with its queue id,
 * or null when none may go: a message with the null sender, or one minimta
 * made itself, never gets a DSN (RFC 5321 §4.5.5).
 */
export async function warnDelayed(
  spool: Spool,
  meta: MessageMeta,
  body: Uint8Array,
  delayed: FailedRecipient[],
  options: WarnDelayedOptions,
): Promise<string | null> {
  if (!delayed.length || meta.from === "" || meta.is_bounce) return null;
  const created = await spoolDsn(spool, meta, buildDsn(meta, body, delayed, options));
  return created.id;
}
