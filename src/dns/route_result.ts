/** One host to try, with the addresses to connect to, in the order to try them. */
export interface MxTarget {
  /** Host name (lowercase, no trailing dot), or an address literal such as `[192.0.2.1]`. */
  host: string;
  /** MX preference; 0 for an implicit MX or an address literal. */
  preference: number;
  /** A and AAAA addresses, own and loopback addresses removed, IPv4 first unless `preferIPv6`. */
  addresses: string[];
}

/**
 * Where mail for a domain goes, or why it cannot go now (`temporary`, defer)
 * or ever (`permanent`, bounce). `status` is an RFC 3463 enhanced status code.
 */
export type RouteResult =
  | {
    kind: "ok";
    /** Sorted by preference, equal preferences shuffled (RFC 5321 §5.1), at most `maxHosts`. */
    targets: MxTarget[];
    /** True when the domain has no MX and its own A/AAAA is used (RFC 5321 §5.1). */
    implicit: boolean;
  }
  | { kind: "permanent"; status: string; text: string }
  | { kind: "temporary"; status: string; text: string };

/** Addresses of one host, or why there are none: the answer to `Resolver.resolveHost()`. */
export type HostResult =
  | { kind: "ok"; addresses: string[] }
  | { kind: "permanent"; status: string; text: string }
  | { kind: "temporary"; status: string; text: string };

/** RFC 3463 X.4.3: directory server failure, the DNS could not answer now. */
export function dnsTemporary(name: string, type: string, reason: string): {
  kind: "temporary";
  status: string;
  text: string;
} {
  return {
    kind: "temporary",
    status: "4.4.3",
    text: `Host or domain name lookup failed, try again (name=${name} type=${type}: ${reason})`,
  };
}

/** RFC 3463 X.1.2: bad destination system address, the name does not exist. */
export function hostNotFound(name: string, detail: string): {
  kind: "permanent";
  status: string;
  text: string;
} {
  return {
    kind: "permanent",
    status: "5.1.2",
    text: `Host or domain name not found (name=${name}: ${detail})`,
  };
}
