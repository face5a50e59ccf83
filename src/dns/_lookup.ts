import type { NameServer } from "./_name_servers.ts";
import type { RcodeProbe } from "./_rcode_probe.ts";

/** One lookup's outcome, with NXDOMAIN and NODATA told apart from failures. */
export type LookupResult<T> =
  | { kind: "ok"; records: T[] }
  | { kind: "nxdomain" }
  | { kind: "nodata" }
  | { kind: "temporary"; reason: string }
  /** Only with `confirm: false`: `NotFound` from `server`, not yet told apart. */
  | { kind: "notfound"; server: NameServer | undefined };

/** Per-lookup switches. */
export interface LookupOptions {
  /** Probe each `NotFound` for its RCODE before returning. @default true */
  confirm?: boolean;
}

/** What every lookup in one route() call shares. */
export interface LookupContext {
  /** Configured servers, tried in order; empty means the system resolver. */
  servers: NameServer[];
  /** Servers to probe when `servers` is empty (from /etc/resolv.conf). */
  systemServers: () => Promise<NameServer[]>;
  /** Bound on one lookup including its RCODE probe. */
  timeoutMs: number;
  /** Aborted when the whole route() call runs out of time. */
  signal: AbortSignal;
  resolveDns: typeof Deno.resolveDns;
  probe: RcodeProbe;
}

type Query<T> = (options: Deno.ResolveDnsOptions) => Promise<T[]>;

/** MX records of `name` (RFC 5321 §5.1), in wire order. */
export function lookupMx(name: string, ctx: LookupContext): Promise<LookupResult<Deno.MxRecord>> {
  const fqdn = `${name}.`;
  return lookup(name, "MX", (o) => ctx.resolveDns(fqdn, "MX", o), { ...ctx, confirm: true });
}

/** A or AAAA records of `name`; CNAMEs are followed by the resolver. */
export function lookupAddresses(
  name: string,
  type: "A" | "AAAA",
  ctx: LookupContext,
  opts: LookupOptions = {},
): Promise<LookupResult<string>> {
  // A trailing dot keeps the system resolver from trying resolv.conf search domains.
  const fqdn = `${name}.`;
  const query: Query<string> = type === "A"
    ? (o) => ctx.resolveDns(fqdn, "A", o)
    : (o) => ctx.resolveDns(fqdn, "AAAA", o);
  return lookup(name, type, query, { ...ctx, confirm: opts.confirm ?? true });
}

/** Turns a `notfound` result into NXDOMAIN, NODATA or temporary by probing its server. */
export async function confirmNotFound<T>(
  name: string,
  type: string,
  server: NameServer | undefined,
  ctx: LookupContext,
): Promise<LookupResult<T>> {
  const timer = new AbortController();
  const id = setTimeout(() => timer.abort(), ctx.timeoutMs);
  const signal = AbortSignal.any([timer.signal, ctx.signal]);
  try {
    return await classify(name, type, server, signal, ctx);
  } finally {
    clearTimeout(id);
  }
}

type Ctx = LookupContext & { confirm: boolean };

async function lookup<T>(
  name: string,
  type: string,
  query: Query<T>,
  ctx: Ctx,
): Promise<LookupResult<T>> {
  const servers: (NameServer | undefined)[] = ctx.servers.length > 0 ? ctx.servers : [undefined];
  let result: LookupResult<T> = { kind: "temporary", reason: "no name server" };
  for (const server of servers) {
    result = await lookupOnce(name, type, query, server, ctx);
    // Only a server failure moves on to the next server; NXDOMAIN is an answer.
    if (result.kind !== "temporary" || ctx.signal.aborted) return result;
  }
  return result;
}

async function lookupOnce<T>(
  name: string,
  type: string,
  query: Query<T>,
  server: NameServer | undefined,
  ctx: Ctx,
): Promise<LookupResult<T>> {
  const timer = new AbortController();
  const id = setTimeout(() => timer.abort(), ctx.timeoutMs);
  const signal = AbortSignal.any([timer.signal, ctx.signal]);
  try {
    const records = await query(server ? { nameServer: server, signal } : { signal });
    if (records.length > 0) return { kind: "ok", records };
    if (!ctx.confirm) return { kind: "notfound", server };
    return await classify(name, type, server, signal, ctx);
  } catch (err) {
    if (signal.aborted) return timedOut(ctx);
    // NotFound covers NXDOMAIN, NODATA, SERVFAIL and REFUSED alike (denoland/deno#36561).
    if (!(err instanceof Deno.errors.NotFound)) return { kind: "temporary", reason: message(err) };
    if (!ctx.confirm) return { kind: "notfound", server };
    return await classify(name, type, server, signal, ctx);
  } finally {
    clearTimeout(id);
  }
}

/** Asks the server directly what `NotFound` meant; anything unclear is temporary. */
async function classify<T>(
  name: string,
  type: string,
  server: NameServer | undefined,
  signal: AbortSignal,
  ctx: LookupContext,
): Promise<LookupResult<T>> {
  const probeServers = server ? [server] : await ctx.systemServers();
  let reason = "NotFound could not be confirmed: no name server known";
  for (const s of probeServers) {
    try {
      const { rcode, answers } = await ctx.probe(name, type, { server: s, signal });
      if (rcode === "NXDOMAIN") return { kind: "nxdomain" };
      // RFC 2308 §2.2: NOERROR with no answer of the type is NODATA.
      if (rcode === "NOERROR") {
        if (answers === 0) return { kind: "nodata" };
        return { kind: "temporary", reason: "answers changed between two queries" };
      }
      reason = rcode;
    } catch (err) {
      if (signal.aborted) return timedOut(ctx);
      reason = message(err);
    }
  }
  return { kind: "temporary", reason };
}

function timedOut<T>(ctx: LookupContext): LookupResult<T> {
  const reason = ctx.signal.aborted
    ? "route lookup time limit reached"
    : `timed out after ${ctx.timeoutMs} ms`;
  return { kind: "temporary", reason };
}

function message(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

/** The record types {@linkcode lookupRecords} asks for, and what each answer holds. */
export interface RecordTypes {
  A: string;
  AAAA: string;
  CNAME: string;
  PTR: string;
  /** Each record's character-strings, unjoined (RFC 1035 §3.3.14). */
  TXT: string[];
  MX: Deno.MxRecord;
}

/** Any record type of `name`, NotFound confirmed as NXDOMAIN or NODATA by probing. */
export function lookupRecords<K extends keyof RecordTypes>(
  name: string,
  type: K,
  ctx: LookupContext,
): Promise<LookupResult<RecordTypes[K]>> {
  const fqdn = `${name}.`;
  // Deno.resolveDns is overloaded per type; one generic call needs the widest signature.
  const resolve = ctx.resolveDns as unknown as (
    q: string,
    t: string,
    o: Deno.ResolveDnsOptions,
  ) => Promise<RecordTypes[K][]>;
  return lookup(name, type, (o) => resolve(fqdn, type, o), { ...ctx, confirm: true });
}
