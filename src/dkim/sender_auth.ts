// The receiving side's view of a sending domain, for `minimta doctor`: SPF
// evaluated for an IP (RFC 7208) and the DMARC record that applies to a domain
// (RFC 7489; mailauth 7.1.0 walks the tree as RFC 9989 does). Both come from
// npm mailauth, like the signer in _mailauth.ts, so minimta judges its DNS the
// way a mailauth-based receiver would. mailauth asks its DNS questions through
// a callback; here it gets our own DNS code's answers, turned into the
// node:dns error codes it expects.
//
// mailauth's SPF and DMARC code is loaded when first asked for (only
// `minimta doctor` asks): the daemon never needs it, and its dependencies
// would take memory in every daemon.

/** One DNS answer: the shape of the dns module's `LookupResult`. */
export interface DnsAnswerLike {
  kind: string;
  records?: unknown[];
  reason?: string;
}

/** Asks the DNS one question (`type` is A, AAAA, MX, TXT, PTR or CNAME). */
export type DnsQuestion = (
  name: string,
  type: "A" | "AAAA" | "MX" | "TXT" | "PTR" | "CNAME",
) => Promise<DnsAnswerLike>;

/** What an SPF evaluation found. */
export interface SpfVerdict {
  /** RFC 7208 §2.6: pass, fail, softfail, neutral, none, permerror or temperror. */
  result: string;
  /** The SPF record evaluated, when there was one. */
  record: string | null;
  /** mailauth's explanation, e.g. `… designates 192.0.2.1 as permitted sender`. */
  comment: string;
}

/** Options of {@linkcode checkSpf}. */
export interface CheckSpfOptions {
  /** The client IP a receiver sees. */
  ip: string;
  /** The EHLO name (also the receiving MTA's name in comments). */
  helo: string;
  /** Answers mailauth's DNS questions. */
  dns: DnsQuestion;
  /** Bound on the whole evaluation (RFC 7208 §4.6.4), in milliseconds. @default 20000 */
  timeoutMs?: number;
}

/** Evaluates SPF for mail from `postmaster@domain` sent from `options.ip` (RFC 7208 §4). */
export async function checkSpf(domain: string, options: CheckSpfOptions): Promise<SpfVerdict> {
  const { spf } = await import("mailauth/lib/spf/index.js");
  const result = await spf({
    sender: `postmaster@${domain}`,
    ip: options.ip,
    helo: options.helo,
    mta: options.helo,
    // mailauth's DNSResolver type says string arrays, but it reads MX answers as objects.
    resolver: mailauthResolver(options.dns) as (name: string, type: string) => Promise<string[]>,
    maxElapsedTime: options.timeoutMs ?? 20_000,
  });
  return {
    result: result.status.result,
    record: result.rr ?? null,
    comment: String(result.status.comment || ""),
  };
}

/** The DMARC record that applies to a domain (RFC 7489 §6.6.3), with where it was found. */
export interface DmarcRecord {
  /** The record text, `v=DMARC1; p=…`. */
  record: string;
  /** `p=` (none, quarantine, reject), or null when missing or invalid. */
  policy: string | null;
  /** `adkim=`: `r` relaxed (the default) or `s` strict (RFC 7489 §3.1.1). */
  adkim: "r" | "s";
  /** The domain whose `_dmarc.` name holds it: the domain or its organisational domain. */
  recordDomain: string;
  /** The organisational domain (RFC 7489 §3.2). */
  orgDomain: string;
}

/**
 * The DMARC record for `domain`, or null when none applies.
 *
 * @throws {Error} when the DNS fails, so the policy is unknown
 */
export async function findDmarcRecord(
  domain: string,
  dns: DnsQuestion,
): Promise<DmarcRecord | null> {
  const { default: getDmarcRecord } = await import("mailauth/lib/dmarc/get-dmarc-record.js");
  const found = await getDmarcRecord(domain, mailauthResolver(dns));
  if (!found) return null;
  const policy = ["none", "quarantine", "reject"].includes(found.p) ? found.p : null;
  return {
    record: String(found.rr),
    policy,
    adkim: found.adkim === "s" ? "s" : "r",
    recordDomain: String(found.recordDomain ?? domain),
    orgDomain: String(found.orgDomain ?? found.recordDomain ?? domain),
  };
}

const TYPES = new Set(["A", "AAAA", "MX", "TXT", "PTR", "CNAME"]);

/** mailauth's resolver callback: node:dns answers and error codes (ENOTFOUND, ENODATA). */
function mailauthResolver(dns: DnsQuestion): (name: string, type: string) => Promise<unknown[]> {
  return async (name, rrtype) => {
    const type = rrtype.toUpperCase() as Parameters<DnsQuestion>[1];
    if (!TYPES.has(type)) throw dnsError("ENOTIMP", name, type, "type not supported");
    const answer = await dns(name, type);
    switch (answer.kind) {
      case "ok": {
        const records = answer.records ?? [];
        // node:dns names the MX preference "priority".
        if (type !== "MX") return records;
        return (records as Deno.MxRecord[]).map((r) => ({
          exchange: r.exchange.replace(/\.$/, ""),
          priority: r.preference,
        }));
      }
      case "nxdomain":
        throw dnsError("ENOTFOUND", name, type, "NXDOMAIN");
      case "nodata":
        throw dnsError("ENODATA", name, type, "no record of this type");
      default:
        throw dnsError("ESERVFAIL", name, type, answer.reason ?? "DNS failure");
    }
  };
}

function dnsError(code: string, name: string, type: string, why: string): Error {
  return Object.assign(new Error(`${type} ${name}: ${why}`), { code });
}
