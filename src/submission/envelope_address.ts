import { isIPv4, isIPv6 } from "node:net";
import { SmtpRejection } from "./rejection.ts";

// The rules every way into the queue applies to envelope addresses: SMTP
// MAIL/RCPT (on top of smtp-server's own parsing, which they mirror), the
// control and local submission sockets and offline `minimta sendmail`.

// Control characters and invisible formatting characters (zero-width space,
// word joiner, BOM) have no place in an address; smtp-server refuses the
// same set, as they allow log or header injection and spoofed look-alikes.
// deno-lint-ignore no-control-regex
const UNSAFE = /[\x00-\x1f\x7f-\x9f\u200b\u2060\ufeff]/;
// RFC 5321 §4.1.2 Dot-string: atext atoms (RFC 5322 §3.2.3) joined by single
// dots, UTF-8 allowed (RFC 6531 §3.3).
const DOT_STRING =
  /^[\w!#$%&'*+\/=?^`{|}~\-\u0080-\uffff]+(\.[\w!#$%&'*+\/=?^`{|}~\-\u0080-\uffff]+)*$/;
// RFC 5321 §4.1.2 Quoted-string without spaces (SMTP splits its parameters on them).
const QUOTED_STRING = /^"([\x21\x23-\x5b\x5d-\x7e\u0080-\uffff]|\\[\x21-\x7e])*"$/;
// RFC 5321 §4.1.2 sub-domain (letters, digits, inner hyphens), U-labels allowed (RFC 6531).
const LABEL = /^[a-z0-9\u0080-\uffff]([a-z0-9\u0080-\uffff-]*[a-z0-9\u0080-\uffff])?$/i;
// RFC 5321 §4.5.3.1.3: a path is at most 256 octets with its angle brackets;
// smtp-server allows 253 for the address, and so does every other entry point.
const MAX_LENGTH = 253;

/**
 * Checks an envelope recipient: `local@domain` with a valid local part and a
 * dotted host name (no address literal, no bare host: minimta delivers
 * nothing locally, and literals would reach loopback or private addresses:
 * TESTPLAN RELAY-06). Returns the 553 5.1.3 refusal, or null when it is fine.
 */
export function checkRecipient(address: string): SmtpRejection | null {
  const problem = addressProblem(address, { literal: false, dotted: true });
  return problem === null
    ? null
    : new SmtpRejection(553, "5.1.3", `Recipient ${quote(address)} ${problem}`);
}

/**
 * Checks an envelope sender: `""` (the null reverse-path) or `local@domain`
 * where the domain may be a single label or an address literal. Returns the
 * 553 5.1.7 refusal, or null when it is fine.
 */
export function checkSender(address: string): SmtpRejection | null {
  if (address === "") return null;
  const problem = addressProblem(address, { literal: true, dotted: false });
  return problem === null
    ? null
    : new SmtpRejection(553, "5.1.7", `Sender ${quote(address)} ${problem}`);
}

function addressProblem(
  address: string,
  domainRules: { literal: boolean; dotted: boolean },
): string | null {
  if (typeof address !== "string" || address === "") return "is empty";
  if (UNSAFE.test(address)) return "contains control characters";
  if (/\s/.test(address)) return "contains white space";
  if (address.length > MAX_LENGTH) return `is longer than ${MAX_LENGTH} characters`;
  const parts = address.split("@");
  if (parts.length !== 2) return "must contain exactly one @";
  const [local, domain] = parts;
  if (!local) return "has an empty local part";
  if (!DOT_STRING.test(local) && !QUOTED_STRING.test(local)) {
    return "has a malformed local part (RFC 5321 §4.1.2)";
  }
  if (!domain) return "has no domain";
  if (domain.startsWith("[")) {
    if (!domainRules.literal) return "is not a routable address (a domain literal)";
    return isAddressLiteral(domain) ? null : "has a malformed address literal";
  }
  const labels = domain.split(".");
  if (!labels.every((l) => l.length <= 63 && LABEL.test(l))) return "has a malformed domain";
  if (domainRules.dotted && labels.length < 2) {
    return "is not a routable address (a host name without a domain)";
  }
  return null;
}

// RFC 5321 §4.1.3: [192.0.2.1] or [IPv6:2001:db8::1].
function isAddressLiteral(domain: string): boolean {
  if (!domain.endsWith("]")) return false;
  const inner = domain.slice(1, -1);
  return /^ipv6:/i.test(inner) ? isIPv6(inner.slice(5)) : isIPv4(inner);
}

// JSON quoting keeps a hostile address on one printable line.
function quote(address: string): string {
  return typeof address === "string" ? JSON.stringify(address) : String(address);
}
