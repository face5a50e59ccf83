import { Buffer } from "node:buffer";

/** One header field as it appears in the message, folding kept. */
export interface HeaderField {
  /** Lowercase field name. */
  name: string;
  /** The whole field including its name and folded lines, without the final CRLF (latin1). */
  raw: string;
}

/** A message split into its header fields and the bytes after the blank line. */
export interface ParsedMessage {
  fields: HeaderField[];
  /** Everything after the header section's blank line (may be empty). */
  body: Uint8Array;
}

/**
 * Splits a CRLF message into header fields and body. Header bytes are
 * decoded as latin1, which maps every byte to one char, so encoding them
 * back gives the original bytes even for raw UTF-8 (RFC 6532) headers.
 */
export function parseMessage(bytes: Uint8Array): ParsedMessage {
  const end = headerEnd(bytes);
  const headerText = latin1Decode(bytes.subarray(0, end.headers));
  const fields: HeaderField[] = [];
  for (const line of headerText.split("\r\n")) {
    if (line === "") continue;
    if ((line[0] === " " || line[0] === "\t") && fields.length > 0) {
      fields[fields.length - 1].raw += `\r\n${line}`;
      continue;
    }
    const colon = line.indexOf(":");
    const name = (colon > 0 ? line.slice(0, colon) : line).trim().toLowerCase();
    fields.push({ name, raw: line });
  }
  return { fields, body: bytes.subarray(end.body) };
}

function headerEnd(bytes: Uint8Array): { headers: number; body: number } {
  if (bytes[0] === 0x0d && bytes[1] === 0x0a) return { headers: 0, body: 2 };
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (
      bytes[i] === 0x0d && bytes[i + 1] === 0x0a && bytes[i + 2] === 0x0d && bytes[i + 3] === 0x0a
    ) {
      return { headers: i + 2, body: i + 4 };
    }
  }
  return { headers: bytes.length, body: bytes.length };
}

/** The value of a field: what follows the colon, unfolded and trimmed. */
export function fieldValue(field: HeaderField): string {
  const colon = field.raw.indexOf(":");
  return field.raw.slice(colon + 1).replace(/\r\n[ \t]/g, " ").trim();
}

/** Encodes header fields (latin1, one char per byte) followed by the blank line and body. */
export function serializeMessage(fields: HeaderField[], body: Uint8Array): Uint8Array[] {
  const head = fields.map((f) => `${f.raw}\r\n`).join("") + "\r\n";
  return [latin1Encode(head), body];
}

/** Encodes a string whose chars are all below 256 as one byte each. */
export function latin1Encode(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, "latin1"));
}

// ISO-8859-1, one char per byte. Not TextDecoder("latin1"): the Encoding
// Standard maps that label to windows-1252, which turns 0x80–0x9F into
// other code points and so corrupts UTF-8 headers (RFC 6532) on the way back.
function latin1Decode(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
}

/**
 * The address in one member of a recipient list (sendmail -t): the part in
 * angle brackets, or the whole value when there are none. Lowercase domain.
 * Null if none found. Lenient; From: and Sender: are read by
 * `parseMailboxList` instead, which refuses what it would have to guess.
 */
export function extractAddress(value: string): string | null {
  const angle = /<([^<>\s]*)>/.exec(value);
  const candidate = angle ? angle[1] : value.replace(/\([^)]*\)/g, "").trim().split(/[\s,]/)[0];
  const at = candidate.lastIndexOf("@");
  if (at <= 0 || at === candidate.length - 1) return null;
  return `${candidate.slice(0, at)}@${candidate.slice(at + 1).toLowerCase()}`;
}

/**
 * The addresses in an address-list field such as To: or Cc: (RFC 5322
 * §3.4): commas inside quotes, comments or angle brackets do not split, and
 * group names (`team: a@x, b@y;`) are dropped.
 */
export function addressList(value: string): string[] {
  const out: string[] = [];
  let current = "";
  let quoted = false;
  let depth = 0;
  let angle = false;
  for (const ch of value) {
    if (ch === '"' && depth === 0) quoted = !quoted;
    else if (!quoted && ch === "(") depth++;
    else if (!quoted && ch === ")" && depth > 0) depth--;
    else if (!quoted && depth === 0 && ch === "<") angle = true;
    else if (!quoted && depth === 0 && ch === ">") angle = false;
    if (!quoted && depth === 0 && !angle && (ch === "," || ch === ";")) {
      out.push(current);
      current = "";
      continue;
    }
    current += ch;
  }
  out.push(current);
  return out
    .map((part) =>
      extractAddress(
        part.includes(":") && !part.includes("<") ? part.slice(part.indexOf(":") + 1) : part,
      )
    )
    .filter((a): a is string => a !== null);
}
