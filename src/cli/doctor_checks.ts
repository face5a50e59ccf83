import {
  checkSpf,
  type DkimKey,
  type DnsQuestion,
  findDmarcRecord,
  loadDkimKeys,
  parseKeyRecord,
  publicKeyRecordData,
} from "../dkim/mod.ts";
import { canonicalIp, isPublicAddress, type Resolver, reverseName } from "../dns/mod.ts";

/** pass and fail decide the exit code; info lines never fail. */
export type CheckStatus = "pass" | "fail" | "info";

/** One line of the `minimta doctor` report. */
export interface DoctorCheck {
  /** address, fcrdns, spf, dkim, dmarc, alignment, mta-sts, tls-rpt. */
  check: string;
  /** The host name, IP, domain or DKIM record name checked. */
  subject: string;
  status: CheckStatus;
  /** One sentence saying what was found and, on failure, what to do. */
  message: string;
  /** The DNS record to publish, in zone-file form, when one is missing or wrong. */
  publish?: string;
}

/** What every check of one run shares. */
export interface DoctorContext {
  resolver: Resolver;
  /** `server.hostname`, lowercase. */
  hostname: string;
  /** The address receivers see, or null with the reason it is unknown. */
  sending: { ip: string; how: string } | { ip: null; why: string };
  /** The `dkim` entries of the config. */
  dkim: { domain: string; selector: string; private_key_file: string }[];
}

/** The sending IP: `delivery.source_address`, else the public address of the default route's interface. */
export async function sendingAddress(
  sourceAddress: string,
  routeFile = "/proc/net/route",
): Promise<DoctorContext["sending"]> {
  if (sourceAddress) {
    const ip = canonicalIp(sourceAddress);
    if (ip) return { ip, how: "delivery.source_address" };
    return { ip: null, why: `delivery.source_address "${sourceAddress}" is not an IP address` };
  }
  let interfaces: Deno.NetworkInterfaceInfo[] = [];
  try {
    interfaces = Deno.networkInterfaces();
  } catch {
    // Without --allow-sys=networkInterfaces nothing is known.
  }
  const defaultIface = await defaultRouteInterface(routeFile);
  const rank = (i: Deno.NetworkInterfaceInfo) =>
    (i.name === defaultIface ? 0 : 2) + (i.family === "IPv4" ? 0 : 1);
  const candidates = interfaces.filter((i) => canonicalIp(i.address) !== null)
    .sort((a, b) => rank(a) - rank(b));
  const pub = candidates.find((i) => isPublicAddress(i.address));
  if (pub) return { ip: canonicalIp(pub.address)!, how: `the address of ${pub.name}` };
  const local = candidates.find((i) => i.name === defaultIface)?.address;
  return {
    ip: null,
    why: local
      ? `this host has only the private address ${local} (behind NAT?): set delivery.source_address to the public address mail leaves from`
      : "no public address on this host's interfaces: set delivery.source_address",
  };
}

/** The interface of the IPv4 default route in /proc/net/route, if any. */
async function defaultRouteInterface(file: string): Promise<string | null> {
  try {
    const rows = (await Deno.readTextFile(file)).split("\n").slice(1).map((l) => l.split(/\s+/));
    return rows.find((r) => r[1] === "00000000")?.[0] ?? null;
  } catch {
    return null;
  }
}

/** The host checks: `server.hostname` has addresses, and the sending IP has FCrDNS. */
export async function hostChecks(ctx: DoctorContext): Promise<DoctorCheck[]> {
  const name = ctx.hostname;
  const wanted = ctx.sending.ip ?? "<this host's public IP>";
  const [a, aaaa] = await Promise.all([
    ctx.resolver.lookup(name, "A"),
    ctx.resolver.lookup(name, "AAAA"),
  ]);
  const addresses = [a, aaaa].flatMap((r) => r.kind === "ok" ? r.records : []);
  const failed = [a, aaaa].find((r) => r.kind === "temporary");
  const address: DoctorCheck = addresses.length > 0
    ? { check: "address", subject: name, status: "pass", message: `has ${addresses.join(", ")}` }
    : failed?.kind === "temporary"
    ? dnsFailure("address", name, `A/AAAA ${name}`, failed.reason)
    : {
      check: "address",
      subject: name,
      status: "fail",
      message: `server.hostname has no A or AAAA record`,
      publish: `${name}. A ${wanted}`,
    };
  return [address, await fcrdns(ctx, addresses.map((ip) => canonicalIp(ip) ?? ip))];
}

/** RFC 8601 §3 "iprev": the sending IP's PTR names server.hostname, which resolves back to it. */
async function fcrdns(ctx: DoctorContext, forward: string[]): Promise<DoctorCheck> {
  if (ctx.sending.ip === null) {
    return { check: "fcrdns", subject: "sending IP", status: "fail", message: ctx.sending.why };
  }
  const ip = ctx.sending.ip;
  const ptrName = reverseName(ip);
  const base = { check: "fcrdns", subject: ip };
  const publishPtr = `${ptrName}. PTR ${ctx.hostname}. (set by whoever runs the address)`;
  const ptr = await ctx.resolver.lookup(ptrName, "PTR");
  if (ptr.kind === "temporary") return dnsFailure("fcrdns", ip, `PTR ${ptrName}`, ptr.reason);
  if (ptr.kind !== "ok") {
    return {
      ...base,
      status: "fail",
      message: `no PTR record (${ctx.sending.how})`,
      publish: publishPtr,
    };
  }
  const names = ptr.records.map((n) => n.replace(/\.$/, "").toLowerCase());
  if (!names.includes(ctx.hostname)) {
    return {
      ...base,
      status: "fail",
      message: `PTR names ${names.join(", ")}, not server.hostname ${ctx.hostname}`,
      publish: publishPtr,
    };
  }
  if (!forward.includes(ip)) {
    return {
      ...base,
      status: "fail",
      message:
        `PTR names ${ctx.hostname}, but ${ctx.hostname} does not resolve back to ${ip} (it has ${
          forward.join(", ") || "no address"
        })`,
      publish: `${ctx.hostname}. ${ip.includes(":") ? "AAAA" : "A"} ${ip}`,
    };
  }
  return { ...base, status: "pass", message: `PTR ${ctx.hostname} resolves back to ${ip}` };
}

/** The checks of one sending domain. */
export async function domainChecks(domain: string, ctx: DoctorContext): Promise<DoctorCheck[]> {
  const dns = question(ctx.resolver);
  const dmarc = await dmarcCheck(domain, dns);
  return [
    await spfCheck(domain, ctx, dns),
    ...await dkimChecks(domain, ctx),
    dmarc.line,
    alignmentCheck(domain, ctx, dmarc.adkim),
    await informational(domain, ctx, "mta-sts", `_mta-sts.${domain}`, "v=STSv1"),
    await informational(domain, ctx, "tls-rpt", `_smtp._tls.${domain}`, "v=TLSRPTv1"),
  ];
}

function question(resolver: Resolver): DnsQuestion {
  return (name, type) => resolver.lookup(name, type);
}

async function spfCheck(
  domain: string,
  ctx: DoctorContext,
  dns: DnsQuestion,
): Promise<DoctorCheck> {
  const base = { check: "spf", subject: domain };
  if (ctx.sending.ip === null) {
    return { ...base, status: "fail", message: `cannot evaluate: ${ctx.sending.why}` };
  }
  const ip = ctx.sending.ip;
  const mechanism = ip.includes(":") ? `ip6:${ip}` : `ip4:${ip}`;
  const verdict = await checkSpf(domain, { ip, helo: ctx.hostname, dns });
  if (verdict.result === "pass") {
    return { ...base, status: "pass", message: `"${verdict.record}" passes for ${ip}` };
  }
  if (verdict.result === "none") {
    return {
      ...base,
      status: "fail",
      message: `no SPF record`,
      publish: `${domain}. TXT "v=spf1 ${mechanism} -all"`,
    };
  }
  const fixed = verdict.record?.replace(/\s+([-~?+]?all)\s*$/, ` ${mechanism} $1`);
  return {
    ...base,
    status: "fail",
    message: `${verdict.result} for ${ip}${verdict.record ? ` with "${verdict.record}"` : ""}`,
    ...(fixed && fixed !== verdict.record ? { publish: `${domain}. TXT "${fixed}"` } : {}),
  };
}

/** Each configured selector's TXT record holds the public half of its private key (RFC 6376 §3.6.1). */
async function dkimChecks(domain: string, ctx: DoctorContext): Promise<DoctorCheck[]> {
  const entries = ctx.dkim.filter((d) => bare(d.domain) === domain);
  if (entries.length === 0) {
    const parent = signingKeyDomain(domain, ctx, "r");
    if (parent) {
      return [{
        check: "dkim",
        subject: domain,
        status: "pass",
        message: `signed with the key of ${parent} (checked under ${parent})`,
      }];
    }
    return [{
      check: "dkim",
      subject: domain,
      status: "fail",
      message: `no DKIM key configured: run \`minimta dkim keygen --domain ${domain} --selector s${
        new Date().getFullYear()
      }\` and add it to dkim`,
    }];
  }
  const out: DoctorCheck[] = [];
  for (const entry of entries) {
    const name = `${entry.selector}._domainkey.${domain}`;
    let key: DkimKey;
    try {
      [key] = await loadDkimKeys([{ ...entry, privateKeyFile: entry.private_key_file }]);
    } catch (error) {
      out.push({ check: "dkim", subject: name, status: "fail", message: (error as Error).message });
      continue;
    }
    out.push(await dkimRecordCheck(name, key, ctx));
  }
  return out;
}

async function dkimRecordCheck(
  name: string,
  key: DkimKey,
  ctx: DoctorContext,
): Promise<DoctorCheck> {
  const expected = publicKeyRecordData(key.privateKey);
  const publish = `${name}. TXT "v=DKIM1; k=${expected.algorithm}; p=${expected.p}"`;
  const txt = await ctx.resolver.lookup(name, "TXT");
  if (txt.kind === "temporary") return dnsFailure("dkim", name, `TXT ${name}`, txt.reason);
  const records = txt.kind === "ok"
    ? txt.records.map((chunks) => parseKeyRecord(chunks.join(""))).filter((t) => "p" in t)
    : [];
  if (records.length === 0) {
    return { check: "dkim", subject: name, status: "fail", message: "no DKIM key record", publish };
  }
  if (records.some((t) => t.p === expected.p && (t.k ?? "rsa") === expected.algorithm)) {
    return {
      check: "dkim",
      subject: name,
      status: "pass",
      message: `the published ${expected.algorithm} key matches ${key.file}`,
    };
  }
  return {
    check: "dkim",
    subject: name,
    status: "fail",
    message: `the published key is not the public half of ${key.file}`,
    publish,
  };
}

async function dmarcCheck(
  domain: string,
  dns: DnsQuestion,
): Promise<{ line: DoctorCheck; adkim: "r" | "s" }> {
  const base = { check: "dmarc", subject: domain };
  try {
    const found = await findDmarcRecord(domain, dns);
    if (!found) {
      return {
        adkim: "r",
        line: {
          ...base,
          status: "fail",
          message:
            "no DMARC record (p=none only monitors; move to quarantine once reports look right)",
          publish: `_dmarc.${domain}. TXT "v=DMARC1; p=none; rua=mailto:postmaster@${domain}"`,
        },
      };
    }
    const where = found.recordDomain === domain
      ? ""
      : ` (inherited from _dmarc.${found.recordDomain})`;
    const policy = found.policy ? `policy p=${found.policy}` : "no valid p= policy (acts as none)";
    return {
      adkim: found.adkim,
      line: { ...base, status: "pass", message: `${policy}${where}: "${found.record}"` },
    };
  } catch (error) {
    return { adkim: "r", line: dnsFailure("dmarc", domain, `_dmarc.${domain}`, String(error)) };
  }
}

/** RFC 7489 §3.1.1: the DKIM d= must be the From: domain (strict) or share its organisational domain. */
function alignmentCheck(domain: string, ctx: DoctorContext, adkim: "r" | "s"): DoctorCheck {
  const base = { check: "alignment", subject: domain };
  const signer = signingKeyDomain(domain, ctx, adkim);
  if (signer) {
    const mode = adkim === "s" ? "strict" : "relaxed";
    return {
      ...base,
      status: "pass",
      message: `From: @${domain} is signed d=${signer} (${mode} DKIM alignment)`,
    };
  }
  const why = adkim === "s" && signingKeyDomain(domain, ctx, "r")
    ? `adkim=s needs a key for ${domain} itself`
    : `no DKIM key for ${domain} or a parent domain`;
  return {
    ...base,
    status: "fail",
    message: `${why}, so DMARC passes only by SPF alignment of the envelope sender`,
  };
}

/** The domain of the key our signer uses for From: @domain (itself or the nearest parent), if aligned. */
function signingKeyDomain(domain: string, ctx: DoctorContext, adkim: "r" | "s"): string | null {
  const keyed = new Set(ctx.dkim.map((d) => bare(d.domain)));
  if (keyed.has(domain)) return domain;
  if (adkim === "s") return null;
  const labels = domain.split(".");
  // A parent of at least two labels: a key for a bare TLD is never aligned.
  for (let i = 1; i < labels.length - 1; i++) {
    const parent = labels.slice(i).join(".");
    if (keyed.has(parent)) return parent;
  }
  return null;
}

async function informational(
  domain: string,
  ctx: DoctorContext,
  check: string,
  name: string,
  version: string,
): Promise<DoctorCheck> {
  const txt = await ctx.resolver.lookup(name, "TXT");
  const found = txt.kind === "ok"
    ? txt.records.map((c) => c.join("")).find((r) => r.startsWith(version))
    : undefined;
  const what = check === "mta-sts"
    ? "MTA-STS (RFC 8461) protects mail sent to this domain"
    : "TLS-RPT (RFC 8460) reports TLS failures of mail sent to this domain";
  return {
    check,
    subject: domain,
    status: "info",
    message: found ? `"${found}" at ${name}` : `none at ${name} (optional: ${what})`,
  };
}

function dnsFailure(check: string, subject: string, what: string, reason: string): DoctorCheck {
  return { check, subject, status: "fail", message: `cannot look up ${what}: ${reason}` };
}

function bare(domain: string): string {
  return domain.trim().replace(/\.$/, "").toLowerCase();
}
