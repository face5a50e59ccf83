import { formatIp, parseIp } from "./_ip.ts";

/**
 * Returns the canonical text of an IP address (dotted quad, or RFC 5952
 * compressed IPv6; IPv4-mapped IPv6 becomes IPv4), or null when `text` is not
 * an IP address.
 *
 * @example
 * ```ts
 * canonicalIp("0:0::1"); // "::1"
 * canonicalIp("::ffff:127.0.0.1"); // "127.0.0.1"
 * ```
 */
export function canonicalIp(text: string): string | null {
  const ip = parseIp(text);
  return ip === null ? null : formatIp(ip);
}

/**
 * Parses an SMTP address literal (RFC 5321 §4.1.3), `[192.0.2.1]` or
 * `[IPv6:2001:db8::1]`, into the canonical IP text. Returns null for anything
 * else, including an IPv6 address without the `IPv6:` tag.
 */
export function parseAddressLiteral(text: string): string | null {
  if (!text.startsWith("[") || !text.endsWith("]")) return null;
  const inner = text.slice(1, -1);
  if (/^ipv6:/i.test(inner)) {
    const ip = parseIp(inner.slice(5));
    return ip === null || inner.includes("%") ? null : formatIp(ip);
  }
  const ip = parseIp(inner);
  // RFC 5321 §4.1.3: an untagged literal is IPv4 dotted quad only.
  return ip !== null && ip.family === 4 && !inner.includes(":") ? formatIp(ip) : null;
}

/** Formats an IP address as an SMTP address literal: `[192.0.2.1]` or `[IPv6:2001:db8::1]`. */
export function formatAddressLiteral(ip: string): string {
  const parsed = parseIp(ip);
  if (parsed === null) throw new TypeError(`Not an IP address: "${ip}"`);
  return parsed.family === 4 ? `[${formatIp(parsed)}]` : `[IPv6:${formatIp(parsed)}]`;
}

/**
 * Whether mail must never be sent to this address because it is this host:
 * loopback (127.0.0.0/8, ::1), unspecified or "this network" (0.0.0.0/8, ::;
 * RFC 1122 §3.2.1.3, RFC 4291 §2.5.2). Text that is not an IP is not loopback.
 */
export function isLoopbackOrUnspecified(ip: string): boolean {
  const parsed = parseIp(ip);
  if (parsed === null) return false;
  if (parsed.family === 4) return parsed.octets[0] === 127 || parsed.octets[0] === 0;
  const allZeroHead = parsed.groups.slice(0, 7).every((g) => g === 0);
  return allZeroHead && (parsed.groups[7] === 0 || parsed.groups[7] === 1);
}

/**
 * Whether `ip` is loopback, unspecified, or one of `ownAddresses` (compared in
 * canonical form). RFC 5321 §5.1: a client must not deliver to itself.
 */
export function isOwnAddress(ip: string, ownAddresses: readonly string[] = []): boolean {
  if (isLoopbackOrUnspecified(ip)) return true;
  const canon = canonicalIp(ip);
  if (canon === null) return false;
  return ownAddresses.some((own) => canonicalIp(own) === canon);
}

/**
 * The addresses of this host's network interfaces from `Deno.networkInterfaces()`
 * (needs `--allow-sys=networkInterfaces`). Returns an empty list when the
 * permission is missing, so loopback is still refused but own public addresses
 * are not recognised.
 */
export function interfaceAddresses(): string[] {
  try {
    return Deno.networkInterfaces().map((i) => i.address);
  } catch {
    return [];
  }
}

/**
 * The name of the PTR record for an address (RFC 1035 §3.5 `in-addr.arpa`,
 * RFC 3596 §2.5 `ip6.arpa` nibbles), without the trailing dot.
 *
 * @example
 * ```ts
 * reverseName("192.0.2.10"); // "10.2.0.192.in-addr.arpa"
 * ```
 */
export function reverseName(ip: string): string {
  const parsed = parseIp(ip);
  if (parsed === null) throw new TypeError(`Not an IP address: "${ip}"`);
  if (parsed.family === 4) return `${[...parsed.octets].reverse().join(".")}.in-addr.arpa`;
  const nibbles = parsed.groups.flatMap((g) => g.toString(16).padStart(4, "0").split(""));
  return `${nibbles.reverse().join(".")}.ip6.arpa`;
}

/**
 * Whether an address can be seen from the Internet: not loopback, link-local,
 * private (RFC 1918, RFC 4193 fc00::/7), shared (RFC 6598 100.64/10) or
 * unspecified. The address a receiving MTA would see, for `minimta doctor`.
 */
export function isPublicAddress(ip: string): boolean {
  const parsed = parseIp(ip);
  if (parsed === null || isLoopbackOrUnspecified(ip)) return false;
  if (parsed.family === 4) {
    const [a, b] = parsed.octets;
    return !(a === 10 || (a === 172 && b >= 16 && b < 32) || (a === 192 && b === 168) ||
      (a === 100 && b >= 64 && b < 128) || (a === 169 && b === 254) || a >= 224);
  }
  const first = parsed.groups[0];
  return !((first & 0xfe00) === 0xfc00 || (first & 0xffc0) === 0xfe80 ||
    (first & 0xff00) === 0xff00);
}
