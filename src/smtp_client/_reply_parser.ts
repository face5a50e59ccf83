import type { SmtpReply } from "./smtp_reply.ts";

/** Longest reply line we accept, CRLF excluded (RFC 5321 §4.5.3.1.5 says 512; be lenient). */
export const MAX_LINE_BYTES = 4096;
/** Most lines one reply may have; an endless `250-` stream is a protocol error. */
export const MAX_REPLY_LINES = 100;

const CR = 13;
const LF = 10;
const ENHANCED = /^([245])\.(\d{1,3})\.(\d{1,3})(?: |$)/;
const decoder = new TextDecoder();

/** A malformed or oversized reply (RFC 5321 §4.2). */
export class ProtocolError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ProtocolError";
  }
}

/**
 * Incremental reply parser: feed bytes as they arrive, take complete replies out.
 *
 * Memory is bounded by one partial line plus the last chunk pushed; the caller pushes
 * only when {@linkcode ReplyParser.next} has nothing complete.
 */
export class ReplyParser {
  #buf: Uint8Array = new Uint8Array(0);
  #lines: { code: number; text: string }[] = [];

  /** Bytes received but not yet consumed by a complete reply line. */
  get buffered(): number {
    return this.#buf.length;
  }

  /** True when part of a multiline reply has been read. */
  get inReply(): boolean {
    return this.#lines.length > 0;
  }

  /** Add bytes read from the server. */
  push(chunk: Uint8Array): void {
    if (this.#buf.length === 0) {
      this.#buf = chunk;
      return;
    }
    const joined = new Uint8Array(this.#buf.length + chunk.length);
    joined.set(this.#buf);
    joined.set(chunk, this.#buf.length);
    this.#buf = joined;
  }

  /** The next complete reply, or null when more bytes are needed; throws {@linkcode ProtocolError}. */
  next(): SmtpReply | null {
    for (;;) {
      const line = this.#takeLine();
      if (line === null) return null;
      const parsed = parseLine(line, this.#lines[0]?.code);
      this.#lines.push({ code: parsed.code, text: parsed.text });
      if (this.#lines.length > MAX_REPLY_LINES) {
        throw new ProtocolError(`Reply has more than ${MAX_REPLY_LINES} lines`);
      }
      if (parsed.last) return this.#finish();
    }
  }

  #takeLine(): Uint8Array | null {
    const lf = this.#buf.indexOf(LF);
    if (lf === -1) {
      if (this.#buf.length > MAX_LINE_BYTES + 1) {
        throw new ProtocolError(`Reply line longer than ${MAX_LINE_BYTES} bytes`);
      }
      return null;
    }
    // RFC 5321 §2.3.8: lines end with CRLF; a bare LF is not a line ending we accept.
    if (lf === 0 || this.#buf[lf - 1] !== CR) {
      throw new ProtocolError("Reply line ended by a bare LF");
    }
    if (lf - 1 > MAX_LINE_BYTES) {
      throw new ProtocolError(`Reply line longer than ${MAX_LINE_BYTES} bytes`);
    }
    const line = this.#buf.subarray(0, lf - 1);
    this.#buf = this.#buf.subarray(lf + 1);
    return line;
  }

  #finish(): SmtpReply {
    const lines = this.#lines.map((l) => l.text);
    const code = this.#lines[0].code;
    this.#lines = [];
    const m = ENHANCED.exec(lines[0]);
    const enhanced = m ? `${m[1]}.${Number(m[2])}.${Number(m[3])}` : null;
    const text = lines.map((l) => (enhanced !== null ? l.replace(ENHANCED, "") : l)).join(" ")
      .trim();
    return { code, enhanced, text, lines };
  }
}

/** Parse one reply line (CRLF removed): `Reply-code [ SP / "-" textstring ]` (RFC 5321 §4.2). */
function parseLine(
  line: Uint8Array,
  expectedCode: number | undefined,
): { code: number; text: string; last: boolean } {
  const head = String.fromCharCode(...line.subarray(0, 4));
  const m = /^([2-5][0-5][0-9])([ -]|$)/.exec(head);
  if (m === null) {
    throw new ProtocolError(
      `Malformed reply line "${sanitize(decoder.decode(line.subarray(0, 40)))}"`,
    );
  }
  const code = Number(m[1]);
  if (expectedCode !== undefined && code !== expectedCode) {
    throw new ProtocolError(`Reply code changed from ${expectedCode} to ${code} inside one reply`);
  }
  const text = sanitize(decoder.decode(line.subarray(4)));
  return { code, text, last: m[2] !== "-" };
}

/** Replace control characters so server text cannot inject lines into logs or DSNs. */
function sanitize(s: string): string {
  // deno-lint-ignore no-control-regex
  return s.replace(/[\x00-\x08\x0a-\x1f\x7f]/g, "?");
}
