import { domainToASCII } from "node:url";
import { formatAddressLiteral, parseAddressLiteral } from "./address.ts";

/** RFC 1035 §2.3.4 with RFC 2181 §11: 255 octets on the wire, 253 in text without the root dot. */
const MAX_DOMAIN_LENGTH = 253;
const MAX_LABEL_LENGTH = 63;

/**
 * Normalises a mail domain for routing: lowercase, one trailing dot removed,
 * IDN labels converted to A-labels (RFC 5890 punycode, UTS #46 mapping).
 * Address literals (`[192.0.2.1]`, `[IPv6:…]`, RFC 5321 §4.1.3) come back in
 * canonical form.
 *
 * Throws a `RangeError` for an empty name, a name longer than 253 octets, an
 * empty or over-long label, a name that IDNA rejects, or an all-numeric last
 * label (RFC 3696 §2: no top-level domain is all-numeric, so `192.0.2.1` is a
 * mistyped literal, not a domain).
 *
 * @example
 * ```ts
 * normaliseDomain("Bücher.Test."); // "xn--bcher-kva.test"
 * ```
 */
export function normaliseDomain(domain: string): string {
  if (domain.startsWith("[")) {
    const ip = parseAddressLiteral(domain);
    if (ip === null) throw invalid(domain, "bad address literal");
    return formatAddressLiteral(ip);
  }
  const bare = domain.endsWith(".") ? domain.slice(0, -1) : domain;
  // ASCII names skip the WHATWG host parser, which would rewrite `0x7f.1` as an IPv4 address.
  // deno-lint-ignore no-control-regex
  const ascii = /^[\x00-\x7f]*$/.test(bare) ? bare.toLowerCase() : domainToASCII(bare);
  if (ascii === "") throw invalid(domain, bare === "" ? "empty name" : "IDNA conversion failed");
  if (ascii.length > MAX_DOMAIN_LENGTH) {
    throw invalid(domain, `longer than ${MAX_DOMAIN_LENGTH} characters`);
  }
  const labels = ascii.split(".");
  for (const label of labels) {
    if (label.length === 0) throw invalid(domain, "empty label");
    if (label.length > MAX_LABEL_LENGTH) {
      throw invalid(domain, `label longer than ${MAX_LABEL_LENGTH} characters`);
    }
    if (!/^[a-z0-9_-]+$/.test(label)) throw invalid(domain, `bad character in label "${label}"`);
  }
  if (/^[0-9]+$/.test(labels[labels.length - 1])) throw invalid(domain, "all-numeric last label");
  return ascii;
}

function invalid(domain: string, why: string): RangeError {
  const err = new RangeError(`Invalid domain name "${domain}": ${why}`);
  err.name = "RangeError";
  return err;
}
