import { canonicalIp, interfaceAddresses, isOwnAddress, parseAddressLiteral } from "./address.ts";
import {
  type LookupContext,
  lookupMx,
  lookupRecords,
  type LookupResult,
  type RecordTypes,
} from "./_lookup.ts";
import { type NameServer, parseNameServer, systemNameServers } from "./_name_servers.ts";
import { normaliseDomain } from "./normalise_domain.ts";
import { probeRcode, type RcodeProbe } from "./_rcode_probe.ts";
import {
  dnsTemporary,
  hostNotFound,
  type HostResult,
  type MxTarget,
  type RouteResult,
} from "./route_result.ts";
import {
  chooseRoute,
  isNullExchange,
  orderMx,
  resolveTargets,
  shuffleTies,
  type TargetPolicy,
} from "./_targets.ts";

/** Domains whose routes a {@linkcode Resolver} keeps at most (the oldest go first). */
const MAX_CACHED_ROUTES = 10_000;

/** How a {@linkcode Resolver} reaches the DNS. */
export interface ResolverOptions {
  /**
   * Name servers as `"IP"` or `"IP:PORT"` (`"[IPv6]:PORT"`), tried in order
   * when one fails. Empty means the system resolver (/etc/resolv.conf).
   * @default []
   */
  servers?: string[];
  /** Bound on one lookup, RCODE probe included, in milliseconds. @default 10000 */
  timeoutMs?: number;
  /** Bound on one whole `route()` or `resolveHost()` call, in milliseconds. @default 30000 */
  routeTimeoutMs?: number;
  /** The DNS edge. @default Deno.resolveDns */
  resolveDns?: typeof Deno.resolveDns;
  /** Asks a server for the RCODE behind a `NotFound`. @default a DNS-over-TCP query (dns-packet) */
  probe?: RcodeProbe;
  /** This host's own addresses, refused as MX addresses. @default addresses of Deno.networkInterfaces() */
  ownAddresses?: () => string[];
  /** Random source for shuffling equal MX preferences. @default Math.random */
  random?: () => number;
  /**
   * How long a route found by {@linkcode Resolver.route} is used again for
   * the same domain, in milliseconds (equal preferences are shuffled anew on
   * each use); 0 looks every domain up each time. Only routes that were
   * found are kept, never failures. Deno's resolver does not report record
   * TTLs, so this is a fixed bound. @default 0
   */
  routeCacheMs?: number;
  /** The clock of the route cache, in milliseconds. @default Date.now */
  now?: () => number;
  /** Put AAAA addresses before A addresses in each target. @default false */
  preferIPv6?: boolean;
  /** Where the system resolver's servers are read for RCODE probes. @default "/etc/resolv.conf" */
  resolvConfPath?: string;
  /**
   * Queries in flight at once; more wait for a turn. A campaign's first
   * burst routes hundreds of domains at once, and a burst of UDP queries
   * beyond what the server keeps up with is dropped and costs each dropped
   * query the resolver's whole retry time, then a deferral. @default 64
   */
  maxQueries?: number;
}

/** Per-call options of {@linkcode Resolver.route}. */
export interface RouteOptions {
  /** Accept loopback and own addresses (tests, local fake MXs). @default false */
  allowLoopback?: boolean;
  /** Further addresses of this host to refuse, besides `ownAddresses`. @default [] */
  localAddresses?: string[];
  /** Most targets returned, like Postfix's smtp_mx_address_limit. @default 5 */
  maxHosts?: number;
}

/**
 * Finds where mail for a domain goes: MX lookup (RFC 5321 §5.1), null MX
 * (RFC 7505), implicit MX, address lookups, loop refusal. Never throws for DNS
 * trouble; every failure comes back as data with an enhanced status code.
 */
export class Resolver {
  #servers: NameServer[];
  #timeoutMs: number;
  #routeTimeoutMs: number;
  #resolveDns: typeof Deno.resolveDns;
  #probe: RcodeProbe;
  #ownAddresses: () => string[];
  #random: () => number;
  #preferIPv6: boolean;
  #resolvConfPath: string;
  #systemServers: Promise<NameServer[]> | undefined;
  #routeCacheMs: number;
  #now: () => number;
  #routes = new Map<string, { until: number; route: Promise<RouteResult> }>();

  /** Throws a `TypeError` for a malformed server in `opts.servers`. */
  constructor(opts: ResolverOptions = {}) {
    this.#servers = (opts.servers ?? []).map(parseNameServer);
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
    this.#routeTimeoutMs = opts.routeTimeoutMs ?? 30_000;
    // Deno.resolveDns is overloaded per record type; the wrapper passes any call through.
    const resolve = (opts.resolveDns ?? Deno.resolveDns) as AnyResolveDns;
    const turns = new Turns(opts.maxQueries ?? 64);
    const limited: AnyResolveDns = (...args) => turns.run(() => resolve(...args));
    this.#resolveDns = limited as typeof Deno.resolveDns;
    this.#probe = opts.probe ?? probeRcode;
    this.#ownAddresses = opts.ownAddresses ?? interfaceAddresses;
    this.#random = opts.random ?? Math.random;
    this.#preferIPv6 = opts.preferIPv6 ?? false;
    this.#resolvConfPath = opts.resolvConfPath ?? "/etc/resolv.conf";
    this.#routeCacheMs = opts.routeCacheMs ?? 0;
    this.#now = opts.now ?? Date.now;
  }

  /** Routes mail for `domain` (a domain name or an address literal). */
  async route(domain: string, opts: RouteOptions = {}): Promise<RouteResult> {
    let name: string;
    try {
      name = normaliseDomain(domain);
    } catch (err) {
      return { kind: "permanent", status: "5.1.2", text: (err as Error).message };
    }
    if (this.#routeCacheMs <= 0) return await this.#route(name, opts);
    const key = [name, opts.allowLoopback, opts.maxHosts, opts.localAddresses].join("|");
    const now = this.#now();
    const kept = this.#routes.get(key);
    if (kept && kept.until > now) {
      const route = await kept.route;
      return route.kind === "ok"
        ? { ...route, targets: shuffleTies(route.targets, this.#random) }
        : route;
    }
    // Callers arriving while the lookup runs share it.
    const lookup = this.#route(name, opts);
    this.#routes.delete(key);
    this.#routes.set(key, { until: now + this.#routeCacheMs, route: lookup });
    if (this.#routes.size > MAX_CACHED_ROUTES) {
      this.#routes.delete(this.#routes.keys().next().value!);
    }
    let found = false;
    try {
      const route = await lookup;
      found = route.kind === "ok";
      return route;
    } finally {
      if (!found && this.#routes.get(key)?.route === lookup) this.#routes.delete(key);
    }
  }

  async #route(name: string, opts: RouteOptions): Promise<RouteResult> {
    const own = [...this.#ownAddresses(), ...(opts.localAddresses ?? [])];
    const refuse = opts.allowLoopback ? () => false : (ip: string) => isOwnAddress(ip, own);
    const maxHosts = opts.maxHosts ?? 5;
    return await this.#withDeadline(async (ctx) => {
      const policy: TargetPolicy = { ctx, refuse, preferIPv6: this.#preferIPv6 };
      const literal = parseAddressLiteral(name);
      if (literal !== null) return routeLiteral(name, literal, refuse);
      return await routeDomain(name, policy, { maxHosts, random: this.#random });
    });
  }

  /**
   * Addresses of a host, for a smarthost: an IP or address literal is returned
   * as is; a name is looked up (A and AAAA). Loopback is allowed here.
   */
  async resolveHost(host: string): Promise<HostResult> {
    const bare = host.startsWith("[") ? parseAddressLiteral(host) : canonicalIp(host);
    if (bare !== null) return { kind: "ok", addresses: [bare] };
    let name: string;
    try {
      name = normaliseDomain(host);
    } catch (err) {
      return { kind: "permanent", status: "5.1.2", text: (err as Error).message };
    }
    return await this.#withDeadline(async (ctx) => {
      const policy: TargetPolicy = { ctx, refuse: () => false, preferIPv6: this.#preferIPv6 };
      const [target] = await resolveTargets([{ host: name, preference: 0, addresses: [] }], policy);
      if (target.addresses.length > 0) return { kind: "ok", addresses: target.addresses };
      if (target.failure?.temporary) {
        return { kind: "temporary", status: "4.4.3", text: target.failure.text };
      }
      return hostNotFound(name, target.failure?.text ?? "no address");
    });
  }

  /**
   * The TXT records of `name`, each one's strings joined (RFC 7208 §3.3),
   * for `minimta dkim check`. Empty when there are none.
   */
  async resolveTxt(name: string): Promise<string[]> {
    const server = this.#servers[0];
    const options = server ? { nameServer: { ipAddr: server.ipAddr, port: server.port } } : {};
    try {
      const records = await this.#resolveDns(`${normaliseDomain(name)}.`, "TXT", options);
      return records.map((chunks) => chunks.join(""));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return [];
      throw error;
    }
  }

  /**
   * The records of one type at `name`, told apart as found, NXDOMAIN, NODATA
   * (RFC 2308 §2.2, confirmed over TCP) or a temporary failure: what
   * `minimta doctor` and an SPF evaluation (RFC 7208 §4.6.4 void lookups) need.
   * `name` is used as given, without IDNA conversion, so `_dmarc.` labels and
   * `in-addr.arpa` names pass through.
   */
  async lookup<K extends keyof RecordTypes>(
    name: string,
    type: K,
  ): Promise<LookupResult<RecordTypes[K]>> {
    const bare = name.replace(/\.$/, "").toLowerCase();
    return await this.#withDeadline((ctx) => lookupRecords(bare, type, ctx));
  }

  async #withDeadline<T>(work: (ctx: LookupContext) => Promise<T>): Promise<T> {
    const deadline = new AbortController();
    const id = setTimeout(() => deadline.abort(), this.#routeTimeoutMs);
    try {
      return await work({
        servers: this.#servers,
        systemServers: () => this.#systemServers ??= systemNameServers(this.#resolvConfPath),
        timeoutMs: this.#timeoutMs,
        signal: deadline.signal,
        resolveDns: this.#resolveDns,
        probe: this.#probe,
      });
    } finally {
      clearTimeout(id);
    }
  }
}

function routeLiteral(name: string, ip: string, refuse: (ip: string) => boolean): RouteResult {
  if (refuse(ip)) {
    return { kind: "permanent", status: "5.4.6", text: `mail for ${name} loops back to myself` };
  }
  return { kind: "ok", targets: [{ host: name, preference: 0, addresses: [ip] }], implicit: true };
}

async function routeDomain(
  domain: string,
  policy: TargetPolicy,
  opts: { maxHosts: number; random: () => number },
): Promise<RouteResult> {
  const mx = await lookupMx(domain, policy.ctx);
  switch (mx.kind) {
    case "temporary":
      return dnsTemporary(domain, "MX", mx.reason);
    case "nxdomain":
      return hostNotFound(domain, "NXDOMAIN");
    case "notfound": // lookupMx always confirms, so this is unreachable; defer to be safe
      return dnsTemporary(domain, "MX", "unconfirmed NotFound");
    case "nodata":
      return await routeImplicit(domain, policy, opts.maxHosts);
  }
  // RFC 7505 §3: a lone "." MX says the domain takes no mail. A null MX mixed
  // with real ones breaks §3's "MUST NOT"; we ignore it and use the others.
  if (mx.records.every((r) => isNullExchange(r.exchange))) {
    return {
      kind: "permanent",
      status: "5.1.10",
      text: `Domain ${domain} does not accept mail (nullMX)`,
    };
  }
  const ordered = orderMx(mx.records, opts.random);
  return await routeMx(domain, ordered, policy, opts.maxHosts);
}

/** RFC 5321 §5.1: no MX, so the domain itself is the single host. */
async function routeImplicit(
  domain: string,
  policy: TargetPolicy,
  maxHosts: number,
): Promise<RouteResult> {
  const resolved = await resolveTargets([{ host: domain, preference: 0, addresses: [] }], policy);
  const none = hostNotFound(domain, "no MX, A or AAAA record");
  return chooseRoute(domain, resolved, { implicit: true, maxHosts, none });
}

/**
 * Resolves MX hosts a batch at a time until `maxHosts` have addresses,
 * looking at no more than twice that many hosts, so 50 MX records cost at most
 * 10 hosts' lookups (DNS-12).
 */
async function routeMx(
  domain: string,
  ordered: MxTarget[],
  policy: TargetPolicy,
  maxHosts: number,
): Promise<RouteResult> {
  const candidates = ordered.slice(0, maxHosts * 2);
  const resolved = [];
  for (let i = 0; i < candidates.length;) {
    const have = resolved.filter((t) => t.addresses.length > 0).length;
    if (have >= maxHosts) break;
    const batch = candidates.slice(i, i + maxHosts - have);
    resolved.push(...await resolveTargets(batch, policy));
    i += batch.length;
  }
  const none = {
    kind: "permanent" as const,
    status: "5.4.4",
    text: `Unable to route: no MX host of ${domain} has an address (${
      resolved.map((t) => t.failure?.text).join("; ")
    })`,
  };
  return chooseRoute(domain, resolved, { implicit: false, maxHosts, none });
}

type AnyResolveDns = (
  name: string,
  type: Deno.RecordType,
  options?: Deno.ResolveDnsOptions,
) => Promise<unknown>;

// At most `limit` calls of run() at once; the others wait in order. It is
// the counterpart of src/delivery/semaphore.ts, which dns may not import (it
// depends on nothing else of the project). A query whose lookup timed out
// while it waited is still started; Deno.resolveDns rejects it at once for
// its aborted signal.
class Turns {
  #free: number;
  #waiting: (() => void)[] = [];

  constructor(limit: number) {
    this.#free = Math.max(1, limit);
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await fn();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    }
  }
}
