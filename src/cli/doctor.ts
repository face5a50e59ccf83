import { parseArgs } from "node:util";
import { allowedSenders, readUsersFile } from "../auth/mod.ts";
import type { Config } from "../config/mod.ts";
import { normaliseDomain, Resolver } from "../dns/mod.ts";
import {
  type DoctorCheck,
  type DoctorContext,
  domainChecks,
  hostChecks,
  sendingAddress,
} from "./doctor_checks.ts";
import { CliError, UsageError } from "./errors.ts";

export type { DoctorCheck } from "./doctor_checks.ts";

type Out = (text: string) => void;

/** The whole `minimta doctor` report, as `--json` prints it. */
export interface DoctorReport {
  /** True when no check failed (info lines never fail). */
  ok: boolean;
  hostname: string;
  /** The address receivers see, or null when it could not be told. */
  sending_ip: string | null;
  domains: string[];
  checks: DoctorCheck[];
}

/** Options of {@linkcode runDoctor}. */
export interface DoctorOptions {
  /** Check only this sending domain. @default every domain of dkim and the users file */
  domain?: string;
  /** The DNS to ask. @default a Resolver on delivery.dns_servers (or the system resolver) */
  resolver?: Resolver;
}

/**
 * `minimta doctor [--domain D] [--json]`: the DNS a receiver checks before
 * trusting mail from this host, one line per check with the record to
 * publish when one is missing. Exit 0 when every check passes, 1 otherwise.
 */
export async function doctorCommand(args: string[], config: Config, out: Out): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { domain: { type: "string" }, json: { type: "boolean" } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length) {
    throw new UsageError("Usage: minimta doctor [--domain D] [--json]");
  }
  let domain: string | undefined;
  if (values.domain !== undefined) {
    try {
      domain = normaliseDomain(values.domain);
    } catch {
      throw new UsageError(`"${values.domain}" is not a domain name`);
    }
  }
  const report = await runDoctor(config, { domain });
  if (values.json) out(JSON.stringify(report, null, 2));
  else for (const line of formatReport(report)) out(line);
  const failed = report.checks.filter((c) => c.status === "fail").length;
  if (failed) {
    // Exit 1 with the one-line error every failing command gives.
    const all = report.checks.filter((c) => c.status !== "info").length;
    throw new CliError(`${failed} of ${all} checks failed`);
  }
  return 0;
}

/** Runs every check and returns the report (no output). */
export async function runDoctor(
  config: Config,
  options: DoctorOptions = {},
): Promise<DoctorReport> {
  const ctx: DoctorContext = {
    resolver: options.resolver ?? new Resolver({ servers: config.delivery.dns_servers }),
    hostname: config.server.hostname.toLowerCase().replace(/\.$/, ""),
    sending: await sendingAddress(config.delivery.source_address),
    dkim: config.dkim,
  };
  const checks = await hostChecks(ctx);
  const found = options.domain ? { domains: [options.domain] } : await sendingDomains(config);
  if (found.problem) checks.push(found.problem);
  if (found.domains.length === 0 && !found.problem) {
    checks.push({
      check: "domains",
      subject: "config",
      status: "fail",
      message: "no sending domain: no dkim entries and no users with an email or allowed_senders",
    });
  }
  for (const domain of found.domains) checks.push(...await domainChecks(domain, ctx));
  return {
    ok: checks.every((c) => c.status !== "fail"),
    hostname: ctx.hostname,
    sending_ip: ctx.sending.ip,
    domains: found.domains,
    checks,
  };
}

/** The report as text, one line per check: `FAIL dmarc ours.test: … — publish: …`. */
export function formatReport(report: DoctorReport): string[] {
  const width = Math.max(...report.checks.map((c) => c.check.length));
  return report.checks.map((c) =>
    `${c.status.toUpperCase().padEnd(4)} ${c.check.padEnd(width)} ${c.subject}: ${c.message}${
      c.publish ? ` — publish: ${c.publish}` : ""
    }`
  );
}

/** Domains of the dkim entries and of the active users' senders, sorted. */
async function sendingDomains(
  config: Config,
): Promise<{ domains: string[]; problem?: DoctorCheck }> {
  const domains = new Set<string>();
  const add = (d: string) => {
    try {
      domains.add(normaliseDomain(d));
    } catch {
      // Not a domain (a malformed users entry): nothing to check in DNS.
    }
  };
  for (const entry of config.dkim) add(entry.domain);
  let problem: DoctorCheck | undefined;
  try {
    for (const user of await readUsersFile(config.auth.users_file)) {
      if (!user.active) continue;
      for (const sender of allowedSenders(user)) add(sender.slice(sender.lastIndexOf("@") + 1));
    }
  } catch (error) {
    problem = {
      check: "domains",
      subject: config.auth.users_file,
      status: "fail",
      message: `cannot read the users file: ${(error as Error).message}`,
    };
  }
  return { domains: [...domains].sort(), problem };
}
