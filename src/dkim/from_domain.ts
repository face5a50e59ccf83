import { domainToASCII } from "node:url";

const CR = 0x0d;
const LF = 0x0a;
const DOMAIN = /^(?!-)[a-z0-9_-]{1,63}(?<!-)(\.(?!-)[a-z0-9_-]{1,63}(?<!-))*$/;

/**
 * The domain of the first address in the first From: header of a message, as a
 * lowercase A-label; null when there is no From: header or no usable address in it.
 *
 * Only the header section is read, and it is decoded to text without being written
 * back, so 8-bit bodies are never touched.
 */
export function fromDomain(message: Uint8Array): string | null {
  const value = headerValue(headerSection(message), "from");
  if (value === null) return null;
  const spec = firstAddrSpec(value);
  const at = spec?.lastIndexOf("@") ?? -1;
  if (spec === null || at < 1) return null;
  const raw = spec.slice(at + 1).replace(/\s+/g, "").replace(/\.$/, "");
  const domain = domainToASCII(raw).toLowerCase();
  return DOMAIN.test(domain) ? domain : null;
}

/** The header section as text, up to the empty line that ends it (RFC 5322 §2.1). */
function headerSection(message: Uint8Array): string {
  const blankAt = (i: number) => message[i] === LF || (message[i] === CR && message[i + 1] === LF);
  let end = blankAt(0) ? 0 : message.length;
  for (let i = 0; end > 0 && i < message.length; i++) {
    if (message[i] === LF && blankAt(i + 1)) {
      end = i + 1;
      break;
    }
  }
  // RFC 6532: header fields are UTF-8; a bad byte only spoils the field it is in.
  return new TextDecoder().decode(message.subarray(0, end));
}

/** The unfolded value of the first field named `name` (lowercase), or null. */
function headerValue(section: string, name: string): string | null {
  const fields = section.split(/\r?\n(?![ \t])/);
  for (const field of fields) {
    const colon = field.indexOf(":");
    if (colon > 0 && field.slice(0, colon).trim().toLowerCase() === name) {
      return field.slice(colon + 1).replace(/\r?\n/g, "");
    }
  }
  return null;
}

/**
 * The addr-spec of the first mailbox of an RFC 5322 §3.4 mailbox or address list:
 * comments dropped, an angle-addr preferred, a group's display name skipped.
 */
function firstAddrSpec(value: string): string | null {
  let text = "";
  let angle: string | null = null;
  let quoted = false;
  let depth = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === "\\" && (quoted || depth > 0)) {
      if (quoted) text += c + (value[i + 1] ?? "");
      i++;
    } else if (depth > 0) {
      depth += c === "(" ? 1 : c === ")" ? -1 : 0;
    } else if (quoted) {
      text += c;
      quoted = c !== '"';
    } else if (c === "(") depth = 1;
    else if (c === '"') [text, quoted] = [text + c, true];
    else if (c === "<") angle = "";
    else if (c === ">" && angle !== null) return angle.trim();
    else if (angle !== null) angle += c;
    else if (c === ":") text = ""; // a group: what came before was its display name
    else if (c === "," || c === ";") {
      if (text.includes("@")) return text.trim();
      text = "";
    } else text += c;
  }
  return text.includes("@") ? text.trim() : null;
}
