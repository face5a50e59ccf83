import { classifyReply, type SmtpReply, type TlsInfo } from "../smtp_client/mod.ts";

/** What one delivery attempt did for one recipient. */
export interface RecipientOutcome {
  address: string;
  kind: "delivered" | "temporary" | "permanent";
  /** SMTP reply code, or null for a local decision (DNS, connection). */
  code: number | null;
  /** RFC 3463 status, e.g. "2.0.0", "4.4.1", "5.1.1". */
  status: string;
  text: string;
  /** "mx.example.com[192.0.2.1]" when a server was reached. */
  remote: string | null;
  tls: TlsInfo | null;
  /**
   * No attempt before this time (ms since the epoch): the destination is
   * suspended or over a warm-up cap, so the retry waits for it rather than
   * the retry schedule.
   */
  notBefore?: number;
}

/**
 * Most bytes of remote or error text an outcome keeps. A server may send 100
 * lines of 4 KB per reply (src/smtp_client/_reply_parser.ts); kept whole in
 * every recipient's last error, history and log line, a hostile MX grew one
 * metadata file to 180 MB in 30 s of 1 s retries.
 */
export const MAX_OUTCOME_TEXT_BYTES = 1024;
const TRUNCATED = " [truncated]";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * `text` cut to at most {@linkcode MAX_OUTCOME_TEXT_BYTES} UTF-8 bytes, marker
 * included, at a character boundary and ending in " [truncated]" when cut.
 * A text already short enough comes back unchanged, so clipping twice is safe.
 */
export function clipText(text: string): string {
  // A UTF-16 code unit is at most 3 UTF-8 bytes: short strings skip the encoding.
  if (text.length * 3 <= MAX_OUTCOME_TEXT_BYTES) return text;
  if (encoder.encode(text).length <= MAX_OUTCOME_TEXT_BYTES) return text;
  const room = new Uint8Array(MAX_OUTCOME_TEXT_BYTES - TRUNCATED.length);
  // encodeInto never splits a character.
  const { written } = encoder.encodeInto(text, room);
  return `${decoder.decode(room.subarray(0, written)).trimEnd()}${TRUNCATED}`;
}

/** Where a reply came from. */
export interface Peer {
  remote: string;
  tls: TlsInfo;
}

/** An outcome taken from a server's reply. */
export function fromReply(address: string, reply: SmtpReply, peer: Peer): RecipientOutcome {
  const cls = classifyReply(reply);
  const kind = cls === "success" ? "delivered" : cls;
  const status = reply.enhanced ?? `${String(reply.code)[0]}.0.0`;
  return {
    address,
    kind,
    code: reply.code,
    status,
    text: clipText(reply.text),
    remote: peer.remote,
    tls: peer.tls,
  };
}

/** An outcome decided locally (DNS answer, connection failure, expiry). */
export function local(
  address: string,
  kind: "temporary" | "permanent",
  status: string,
  text: string,
  remote: string | null = null,
): RecipientOutcome {
  return { address, kind, code: null, status, text: clipText(text), remote, tls: null };
}

/** One-line form for `last_error` and DSN diagnostics. */
export function describe(outcome: RecipientOutcome): string {
  const where = outcome.remote ? `${outcome.remote} said: ` : "";
  const code = outcome.code !== null ? `${outcome.code} ` : "";
  return `${where}${code}${outcome.status} ${outcome.text}`.trim();
}
