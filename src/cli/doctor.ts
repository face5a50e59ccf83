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

/** A report and when it was made, as the status page shows it. */
export interface CheckedReport extends DoctorReport {
  /** When the checks ran (ISO 8601). */
  checked_at: string;
}

/** Options of {@linkcode cachedDoctor}. */
export interface CachedDoctorOptions {
  /** Longest a run may take; later a report with one failing `doctor` line is returned. @default 10000 */
  budgetMs?: number;
  /** How long a finished report is reused. @default 60000 */
  cacheMs?: number;
  /** Bound on one DNS lookup. @default 3000 */
  lookupTimeoutMs?: number;
}

/**
 * The doctor for the status page: {@linkcode runDoctor} (the report the CLI
 * prints) bounded by a time budget and reused for `cacheMs`, so reloading the
 * page does not query the DNS each time. `fresh` skips the cache; a run in
 * progress is always shared, so the DNS sees at most one run at a time.
 */
export function cachedDoctor(
  config: Config,
  options: CachedDoctorOptions = {},
): (fresh?: boolean) => Promise<CheckedReport> {
  const budgetMs = options.budgetMs ?? 10_000;
  const cacheMs = options.cacheMs ?? 60_000;
  const lookupTimeoutMs = options.lookupTimeoutMs ?? 3_000;
  let last: { at: number; done: boolean; report: Promise<CheckedReport> } | null = null;
  return (fresh = false) => {
    if (last && (!last.done || (!fresh && Date.now() - last.at < cacheMs))) return last.report;
    const started = Date.now();
    const resolver = new Resolver({
      servers: config.delivery.dns_servers,
      timeoutMs: lookupTimeoutMs,
    });
    const entry: NonNullable<typeof last> = {
      at: started,
      done: false,
      report: withinBudget(runDoctor(config, { resolver }), budgetMs, config).then(
        (report) => ({ ...report, checked_at: new Date(started).toISOString() }),
      ),
    };
    entry.report.then(
      () => entry.done = true,
      // A run that threw is not kept: the next request tries again.
      () => last === entry && (last = null),
    );
    last = entry;
    return entry.report;
  };
}

async function withinBudget(
  run: Promise<DoctorReport>,
  budgetMs: number,
  config: Config,
): Promise<DoctorReport> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<DoctorReport>((resolve) => {
    timer = setTimeout(() =>
      resolve({
        ok: false,
        hostname: config.server.hostname,
        sending_ip: null,
        domains: [],
        checks: [{
          check: "doctor",
          subject: "DNS",
          status: "fail",
          message: `the checks did not finish within ${
            budgetMs / 1000
          } s (slow or unreachable DNS servers?); try again later`,
        }],
      }), budgetMs);
  });
  // The run goes on in the background after the budget (each lookup is bounded): never unhandled.
  run.catch(() => {});
  try {
    return await Promise.race([run, late]);
  } finally {
    clearTimeout(timer);
  }
}
