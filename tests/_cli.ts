/**
 * Helpers for the operator-CLI tests (tests/cli_*_test.ts): run `minimta …`
 * as a child process with the start task's permissions (optionally with
 * stdin), check the one-line error contract, and read the queue as an
 * operator would.
 */
import assert from "node:assert/strict";
import {
  type CliResult,
  minimtaArgs,
  type Mta,
  queuedId,
  type QueueEntry,
  ROOT,
  run,
  spoolFixture,
} from "./_harness.ts";
import type { MessageMeta } from "../src/spool/mod.ts";

/** Runs `minimta ARGS --config <mta's config>` to completion, with optional stdin. */
export async function cli(
  mta: Mta | string,
  args: string[],
  options: { stdin?: string | Uint8Array; env?: Record<string, string> } = {},
): Promise<CliResult> {
  const config = typeof mta === "string" ? mta : mta.configPath;
  return await run(Deno.execPath(), minimtaArgs([...args, "--config", config]), {
    cwd: ROOT,
    stdin: options.stdin,
    env: { NO_COLOR: "1", ...options.env },
  });
}

/** Like {@linkcode cli}, but the command must exit 0 with nothing on stderr; returns stdout. */
export async function cliOk(
  mta: Mta | string,
  args: string[],
  options: { stdin?: string | Uint8Array; env?: Record<string, string> } = {},
): Promise<string> {
  const r = await cli(mta, args, options);
  assert.equal(r.code, 0, `minimta ${args.join(" ")} exited ${r.code}\n${r.stderr}${r.stdout}`);
  assert.equal(r.stderr, "", `minimta ${args.join(" ")} wrote on stderr`);
  return r.stdout;
}

/**
 * The error contract: exit `code`, exactly one stderr line starting with
 * `minimta: `, no stack trace anywhere. Returns that line.
 */
export function assertCliError(r: CliResult, code: number, what: string): string {
  const where = `${what}\nexit ${r.code}\nstderr: ${r.stderr}\nstdout: ${r.stdout}`;
  assert.equal(r.code, code, `exit code of ${where}`);
  const lines = r.stderr.split("\n");
  assert.equal(lines.at(-1), "", `stderr must end with a newline: ${where}`);
  assert.equal(lines.length, 2, `exactly one stderr line expected: ${where}`);
  assert.match(lines[0], /^minimta: \S/, where);
  assert.doesNotMatch(r.stderr + r.stdout, /^\s+at |Stack backtrace|error: Uncaught/m, where);
  return lines[0];
}

/** `queue list --json` (extra filter arguments allowed). */
export async function queueJson(mta: Mta, ...filters: string[]): Promise<QueueEntry[]> {
  return JSON.parse(await cliOk(mta, ["queue", "list", "--json", ...filters]));
}

/** `queue show ID --json`. */
export async function showJson(
  mta: Mta,
  id: string,
): Promise<QueueEntry & { headers: string; auth_user: unknown; client_ip: unknown }> {
  return JSON.parse(await cliOk(mta, ["queue", "show", id, "--json"]));
}

/** Queues a message with `minimta sendmail ARGS` and returns its queue id. */
export async function sendmail(
  mta: Mta,
  args: string[],
  message: string | Uint8Array,
): Promise<string> {
  const out = await cliOk(mta, ["sendmail", ...args], { stdin: message });
  return queuedId(out);
}

/** A small message with LF line ends, as a cron job or a script pipes it. */
export function lfMessage(headers: string[], body = "Hello from a script.\n"): string {
  return `${headers.join("\n")}\n\n${body}`;
}

/** The metadata file of a message read straight from the spool, or null once it is gone. */
export async function rawMeta(mta: Mta, id: string): Promise<MessageMeta | null> {
  try {
    return (await mta.readMeta(id));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/**
 * Writes a message straight into the spool (daemon stopped), created
 * `ageMs` ago, as if it had been queued then: for `--older-than` and
 * "oldest" without waiting.
 */
export async function spoolMessage(
  mta: Mta,
  msg: { from: string; to: string[]; subject: string; ageMs?: number },
): Promise<string> {
  const body = `From: <${msg.from}>\r\nTo: ${msg.to.join(", ")}\r\nSubject: ${msg.subject}\r\n` +
    `Message-ID: <${crypto.randomUUID()}@ours.test>\r\n\r\nfixture body\r\n`;
  return await spoolFixture(mta.spoolDir, new TextEncoder().encode(body), {
    from: msg.from,
    recipients: msg.to,
    createdAt: new Date(Date.now() - (msg.ageMs ?? 0)),
  });
}

/** Ids of a `queue list --json` answer, sorted. */
export function ids(entries: { id: string }[]): string[] {
  return entries.map((e) => e.id).sort();
}
