// Small IP address parsing, enough to compare addresses and spot loopback.
// node:net's isIP() validates but does not canonicalise, so `::1` and
// `0:0:0:0:0:0:0:1` would otherwise compare unequal.

/** Parses dotted-quad IPv4 (RFC 791, no leading zeros or shorthand) into four octets. */
export function parseIPv4(text: string): number[] | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const octets: number[] = [];
  for (const part of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part)) return null;
    const n = Number(part);
    if (n > 255) return null;
    octets.push(n);
  }
  return octets;
}

/** Parses IPv6 text (RFC 4291 §2.2, with `::` and an embedded IPv4 tail) into eight groups. */
export function parseIPv6(text: string): number[] | null {
  const zone = text.indexOf("%");
  const body = (zone >= 0 ? text.slice(0, zone) : text).toLowerCase();
  const halves = body.split("::");
  if (halves.length > 2) return null;
  const head = parseGroups(halves[0]);
  const tail = halves.length === 2 ? parseGroups(halves[1]) : [];
  if (head === null || tail === null) return null;
  if (halves.length === 1) return head.length === 8 ? head : null;
  const missing = 8 - head.length - tail.length;
  if (missing < 1) return null;
  return [...head, ...new Array<number>(missing).fill(0), ...tail];
}

function parseGroups(text: string): number[] | null {
  if (text === "") return [];
  const groups: number[] = [];
  const parts = text.split(":");
  for (const [i, part] of parts.entries()) {
    if (i === parts.length - 1 && part.includes(".")) {
      const v4 = parseIPv4(part);
      if (v4 === null) return null;
      groups.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
    } else if (/^[0-9a-f]{1,4}$/.test(part)) {
      groups.push(parseInt(part, 16));
    } else {
      return null;
    }
  }
  return groups;
}

/** A parsed address: IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is reported as IPv4. */
export type ParsedIp = { family: 4; octets: number[] } | { family: 6; groups: number[] };

/** Parses an IPv4 or IPv6 address, or returns null when the text is neither. */
export function parseIp(text: string): ParsedIp | null {
  const v4 = parseIPv4(text);
  if (v4 !== null) return { family: 4, octets: v4 };
  const v6 = parseIPv6(text);
  if (v6 === null) return null;
  // RFC 4291 §2.5.5.2: IPv4-mapped addresses name the IPv4 host.
  if (v6.slice(0, 5).every((g) => g === 0) && v6[5] === 0xffff) {
    return { family: 4, octets: [v6[6] >> 8, v6[6] & 0xff, v6[7] >> 8, v6[7] & 0xff] };
  }
  return { family: 6, groups: v6 };
}

/** Canonical text for comparison: dotted quad, or RFC 5952 compressed lowercase IPv6. */
export function formatIp(ip: ParsedIp): string {
  if (ip.family === 4) return ip.octets.join(".");
  return compressIPv6(ip.groups);
}

function compressIPv6(groups: number[]): string {
  // RFC 5952 §4.2.3: compress the longest run of two or more zero groups, the first on a tie.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [bestStart, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(":");
  const left = hex.slice(0, bestStart).join(":");
  const right = hex.slice(bestStart + bestLen).join(":");
  return `${left}::${right}`;
}
