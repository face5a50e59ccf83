/**
 * The daemon side of delivery tests: a `delivery` config pointing at the
 * fake DNS, submitting through the real intake, and reading the mail log
 * and the spool for what happened to a message.
 */
import type { FakeDns } from "./_dns.ts";
import { ALICE, type Mta, queuedId } from "./_harness.ts";

/** Options of {@linkcode deliveryConfig}. */
export interface DeliveryConfigOptions {
  dns: FakeDns;
  port: number;
  [key: string]: unknown;
}

/**
 * A `delivery` config section for tests: the fake DNS, the fake MX port,
 * loopback allowed, a 1 s retry schedule and short timeouts. Other keys
 * are passed through (e.g. `tls`, `max_queue_lifetime`).
 */
export function deliveryConfig(options: DeliveryConfigOptions): Record<string, unknown> {
  const { dns, ...rest } = options;
  return {
    dns_servers: [dns.server],
    allow_loopback: true,
    retry_schedule: ["1s"],
    max_queue_lifetime: "1h",
    connect_timeout: "2s",
    command_timeout: "5s",
    data_timeout: "10s",
    ...rest,
  };
}

/** A message to submit through the intake. */
export interface Submission {
  from?: string;
  to: string[];
  /** Header lines (CRLF-free); From/To/Subject defaults are added when absent. */
  headers?: string[];
  body?: string;
}

/** Submits one message over STARTTLS + AUTH as alice and returns its queue id. */
export async function submit(mta: Mta, msg: Submission): Promise<string> {
  const from = msg.from ?? ALICE.user;
  const smtp = await mta.authed();
  try {
    await smtp.cmd(`MAIL FROM:<${from}>`, 250);
    for (const to of msg.to) await smtp.cmd(`RCPT TO:<${to}>`, 250);
    await smtp.cmd("DATA", 354);
    const headers = msg.headers ?? [];
    const has = (name: string) => headers.some((h) => h.toLowerCase().startsWith(`${name}:`));
    if (!has("from")) headers.unshift(`From: Alice <${from}>`);
    if (!has("to")) headers.push(`To: ${msg.to.join(", ")}`);
    if (!has("subject")) headers.push(`Subject: delivery test ${crypto.randomUUID()}`);
    const body = msg.body ?? "Hello from the delivery tests.\r\nSecond line.\r\n";
    const ending = body.endsWith("\r\n") ? "" : "\r\n";
    await smtp.write(`${headers.join("\r\n")}\r\n\r\n${body}${ending}.\r\n`);
    const reply = await smtp.expect(250);
    await smtp.cmd("QUIT");
    return queuedId(reply.raw);
  } finally {
    smtp.close();
  }
}

/** The `delivery` mail-log events (one per recipient and attempt), optionally of one message. */
export function deliveryEvents(mta: Mta, queueId?: string): Record<string, unknown>[] {
  return mta.logs().filter((e) =>
    e.event === "delivery" && (queueId === undefined || e.queue_id === queueId)
  );
}

/** Mail-log events named `event`. */
export function mailEvents(mta: Mta, event: string): Record<string, unknown>[] {
  return mta.logs().filter((e) => e.event === event);
}

/** True once the message has left the spool (its metadata file is gone). */
export async function isGone(mta: Mta, id: string): Promise<boolean> {
  try {
    await Deno.stat(mta.metaPath(id));
    return false;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return true;
    throw error;
  }
}
