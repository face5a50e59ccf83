/**
 * MX routing for the delivery engine: where mail for a domain goes, or why it
 * cannot go now (defer) or ever (bounce).
 *
 * {@linkcode Resolver.route} looks up MX records (RFC 5321 §5.1), sorts them
 * and shuffles equal preferences, recognises null MX (RFC 7505), falls back to
 * the domain's own A/AAAA when there is no MX, and refuses loopback and own
 * addresses. `Deno.resolveDns` reports NXDOMAIN, NODATA, SERVFAIL and REFUSED
 * alike, so each `NotFound` is checked with a DNS-over-TCP query that reads
 * the real RCODE: only a confirmed NXDOMAIN or NODATA can bounce mail.
 *
 * @example
 * ```ts
 * const resolver = new Resolver({ servers: ["127.0.0.1:5353"], timeoutMs: 2000 });
 * const route = await resolver.route("example.com");
 * const first = route.kind === "ok" ? route.targets[0].addresses : [];
 * ```
 *
 * @module
 */
export { Resolver } from "./resolver.ts";
export type { HostResult, RouteResult } from "./route_result.ts";
export { normaliseDomain } from "./normalise_domain.ts";
export { canonicalIp, isPublicAddress, reverseName } from "./address.ts";
