import { canonicalIp } from "./address.ts";
import {
  confirmNotFound,
  lookupAddresses,
  type LookupContext,
  type LookupResult,
} from "./_lookup.ts";
import { dnsTemporary, type MxTarget, type RouteResult } from "./route_result.ts";

/** A target after its A/AAAA lookups, before the route is chosen. */
export interface ResolvedTarget extends MxTarget {
  /** How many addresses were dropped as loopback, unspecified or our own. */
  refused: number;
  /** Set when the host has no usable address: why (for the bounce or defer text). */
  failure?: { temporary: boolean; text: string };
}

/** How {@linkcode resolveTargets} treats addresses. */
export interface TargetPolicy {
  ctx: LookupContext;
  /** True for an address that must not be used (loopback, own). */
  refuse: (ip: string) => boolean;
  preferIPv6: boolean;
}

/** An MX exchange meaning "no mail here": "." or "" (RFC 7505 §3). */
export function isNullExchange(exchange: string): boolean {
  return exchange === "." || exchange === "";
}

/**
 * MX records in the order to try: lowest preference first, equal preferences
 * in random order (RFC 5321 §5.1), null-MX records and repeated hosts removed.
 */
export function orderMx(records: Deno.MxRecord[], random: () => number): MxTarget[] {
  const best = new Map<string, number>();
  for (const r of records) {
    if (isNullExchange(r.exchange)) continue;
    const host = r.exchange.toLowerCase().replace(/\.$/, "");
    best.set(host, Math.min(best.get(host) ?? Infinity, r.preference));
  }
  const targets = [...best].map(([host, preference]) => ({ host, preference, addresses: [] }));
  return shuffleTies(targets, random);
}

/** A copy of `targets` sorted by preference, equal preferences in random order. */
export function shuffleTies<T extends { preference: number }>(
  targets: readonly T[],
  random: () => number,
): T[] {
  const out = [...targets];
  // Fisher-Yates, then a stable sort: ties keep their shuffled order.
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out.sort((a, b) => a.preference - b.preference);
}

/** Looks up A and AAAA of each target concurrently. */
export function resolveTargets(
  targets: MxTarget[],
  policy: TargetPolicy,
): Promise<ResolvedTarget[]> {
  return Promise.all(targets.map((t) => resolveTarget(t, policy)));
}

async function resolveTarget(target: MxTarget, policy: TargetPolicy): Promise<ResolvedTarget> {
  // A NotFound only needs its RCODE when the other family gave no address either.
  const unconfirmed = { confirm: false };
  let [a, aaaa] = await Promise.all([
    lookupAddresses(target.host, "A", policy.ctx, unconfirmed),
    lookupAddresses(target.host, "AAAA", policy.ctx, unconfirmed),
  ]);
  if (a.kind !== "ok" && aaaa.kind !== "ok") {
    [a, aaaa] = await Promise.all([
      confirm(target.host, "A", a, policy.ctx),
      confirm(target.host, "AAAA", aaaa, policy.ctx),
    ]);
  }
  const v4 = a.kind === "ok" ? a.records : [];
  const v6 = aaaa.kind === "ok" ? aaaa.records : [];
  const all = dedupe(policy.preferIPv6 ? [...v6, ...v4] : [...v4, ...v6]);
  const addresses = all.filter((ip) => !policy.refuse(ip));
  const resolved: ResolvedTarget = { ...target, addresses, refused: all.length - addresses.length };
  if (all.length === 0) resolved.failure = describeFailure(target.host, a, aaaa);
  return resolved;
}

function confirm(
  host: string,
  type: string,
  r: LookupResult<string>,
  ctx: LookupContext,
): Promise<LookupResult<string>> | LookupResult<string> {
  return r.kind === "notfound" ? confirmNotFound(host, type, r.server, ctx) : r;
}

function dedupe(ips: string[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const ip of ips) {
    const key = canonicalIp(ip) ?? ip;
    if (!seen.has(key)) out.push(ip);
    seen.add(key);
  }
  return out;
}

function describeFailure(
  host: string,
  a: LookupResult<string>,
  aaaa: LookupResult<string>,
): { temporary: boolean; text: string } {
  for (const [type, r] of [["A", a], ["AAAA", aaaa]] as const) {
    if (r.kind === "temporary") {
      return { temporary: true, text: dnsTemporary(host, type, r.reason).text };
    }
  }
  const nx = a.kind === "nxdomain" || aaaa.kind === "nxdomain";
  return { temporary: false, text: `${host}: ${nx ? "NXDOMAIN" : "no A or AAAA record"}` };
}

/**
 * Chooses the route from resolved targets: the first `maxHosts` with a usable
 * address; else defer if any lookup failed temporarily; else 5.4.6 when
 * addresses existed but all were ours; else `none` (the caller's bounce).
 */
export function chooseRoute(
  domain: string,
  resolved: ResolvedTarget[],
  opts: { implicit: boolean; maxHosts: number; none: RouteResult },
): RouteResult {
  const usable = resolved.filter((t) => t.addresses.length > 0).slice(0, opts.maxHosts);
  if (usable.length > 0) {
    const targets = usable.map(({ host, preference, addresses }) => ({
      host,
      preference,
      addresses,
    }));
    return { kind: "ok", targets, implicit: opts.implicit };
  }
  const temporary = resolved.find((t) => t.failure?.temporary);
  if (temporary?.failure) {
    return { kind: "temporary", status: "4.4.3", text: temporary.failure.text };
  }
  if (resolved.some((t) => t.refused > 0)) {
    // RFC 5321 §5.1: never deliver to ourselves; Postfix says the same words.
    return { kind: "permanent", status: "5.4.6", text: `mail for ${domain} loops back to myself` };
  }
  return opts.none;
}
