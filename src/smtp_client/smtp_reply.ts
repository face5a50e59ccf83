/** One SMTP reply, possibly multiline (RFC 5321 §4.2). */
export interface SmtpReply {
  /** Three-digit reply code, e.g. 250. */
  code: number;
  /** RFC 3463 enhanced status code `x.y.z` from the first line, or null when absent. */
  enhanced: string | null;
  /**
   * Human-readable text: every line with its enhanced code removed, joined by a space.
   * Control characters are replaced with `?` so the text is safe for logs and DSNs.
   */
  text: string;
  /** The text part of every line as sent (after the code and its separator), sanitised. */
  lines: string[];
  /** True when minimta made this reply up without asking the server (e.g. SIZE pre-check). */
  local?: boolean;
}

/** The outcome class of one reply. */
export type ReplyClass = "success" | "temporary" | "permanent";

/**
 * Decide whether a reply means success, a temporary failure or a permanent one.
 *
 * This is the one place where minimta decides temporary versus permanent.
 * RFC 5321 §4.2.1: 2yz success, 3yz intermediate (success so far), 4yz temporary,
 * 5yz permanent. RFC 3463 §3.1 gives the enhanced code's class the same meaning; a
 * reply is permanent only when nothing contradicts it, so `550 4.7.1` and `450 5.1.1`
 * are both temporary (like Postfix, we bounce only when sure). Anything else is
 * temporary: a broken server must never make us bounce mail.
 */
export function classifyReply(reply: SmtpReply): ReplyClass {
  const first = Math.floor(reply.code / 100);
  const enhancedClass = reply.enhanced === null ? null : Number(reply.enhanced[0]);
  if (first === 2 || first === 3) return "success";
  if (first === 5 && (enhancedClass === null || enhancedClass === 5)) return "permanent";
  return "temporary";
}

/** Build a reply generated locally by minimta (never sent by the server). */
export function localReply(code: number, enhanced: string, text: string): SmtpReply {
  return { code, enhanced, text, lines: [`${enhanced} ${text}`], local: true };
}

/** Format a reply for error messages, e.g. `550 5.1.1 no such user`. */
export function formatReply(reply: SmtpReply): string {
  return [String(reply.code), reply.enhanced, reply.text].filter((s) => s).join(" ");
}
