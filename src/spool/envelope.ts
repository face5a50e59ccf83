/**
 * @module
 * The envelope a new message's file starts with. Intake writes one file per
 * message, `msg/ID.eml`: this envelope (the message's first metadata, as
 * JSON), then the message bytes. `meta/ID.json` appears only once that
 * metadata changes (an attempt, a hold) and from then on wins over the
 * envelope. One new file per message instead of two halves what the file
 * system spends at intake (inode, data sync, rename: bench/lib/experiments/).
 *
 * Layout: `NUL "minimta-envelope " LENGTH LF JSON LF MESSAGE`, LENGTH the
 * decimal byte length of JSON. The NUL cannot start a stored message of the
 * older layout (intake refuses NUL, and every stored message starts with a
 * header minimta wrote), so both layouts are told apart by the first byte.
 */

const MAGIC = new TextEncoder().encode("\0minimta-envelope ");
/** Metadata larger than this is not an envelope this code wrote. */
export const MAX_ENVELOPE = 64 * 1024 * 1024;
/** Enough bytes to hold the magic and the length line. */
export const HEAD_PROBE = 4096;

const encoder = new TextEncoder();

/** The bytes to put before the message, from the metadata's JSON bytes. */
export function encodeEnvelope(body: Uint8Array): Uint8Array {
  const head = encoder.encode(`\0minimta-envelope ${body.length}\n`);
  const out = new Uint8Array(head.length + body.length + 1);
  out.set(head, 0);
  out.set(body, head.length);
  out[out.length - 1] = 0x0a;
  return out;
}

/** Where the envelope's JSON lies in a file, and where the message starts. */
export interface EnvelopeSpan {
  jsonStart: number;
  jsonEnd: number;
  /** Offset of the message bytes. */
  bodyOffset: number;
}

/**
 * Reads the envelope line at the start of `head` (the file's first bytes):
 * null when the file is of the older layout (message bytes only), the span
 * when it has an envelope, or a reason string when it is damaged.
 */
export function envelopeSpan(head: Uint8Array): EnvelopeSpan | null | string {
  if (head.length === 0 || head[0] !== 0) return null;
  for (let i = 0; i < MAGIC.length; i++) {
    if (head[i] !== MAGIC[i]) return "message file starts with NUL but has no envelope";
  }
  let length = 0;
  let i = MAGIC.length;
  for (; i < head.length && head[i] !== 0x0a; i++) {
    const digit = head[i] - 0x30;
    if (digit < 0 || digit > 9 || i - MAGIC.length >= 9) return "envelope length is not a number";
    length = length * 10 + digit;
  }
  if (i >= head.length) return "envelope is cut short";
  if (length > MAX_ENVELOPE) return "envelope is too large";
  const jsonStart = i + 1;
  return { jsonStart, jsonEnd: jsonStart + length, bodyOffset: jsonStart + length + 1 };
}
