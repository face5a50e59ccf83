/**
 * The daemon side of delivery tests: a `delivery` config pointing at the
 * fake DNS, submitting through the real intake, and reading the mail log
 * and the spool for what happened to a message.
 */
import { FakeDns, type Zone } from "./_dns.ts";
import { ALICE, freePorts, Mta, type MtaOptions, queuedId } from "./_harness.ts";
import { FakeMx, loopbackNet, type MxScript } from "./_mx.ts";

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

/**
 * The names of a delivery test: recipient domain dest.test with its MX
 * mx1.dest.test on net(2), our own domain ours.test (where DSNs go) with its
 * MX on net(9). `extra` adds or replaces names.
 */
export function deliveryZone(net: (n: number) => string, extra: Zone = {}): Zone {
  return {
    "dest.test": { MX: [[10, "mx1.dest.test"]] },
    "mx1.dest.test": { A: [net(2)] },
    "ours.test": { MX: [[10, "mx.ours.test"]] },
    "mx.ours.test": { A: [net(9)] },
    ...extra,
  };
}

/** Options of {@linkcode deliveryWorld}. */
export interface DeliveryWorldOptions {
  /** Names added to or replacing those of {@linkcode deliveryZone}, given `net`. @default {} */
  zone?: Zone | ((net: (n: number) => string) => Zone);
  /** How mx1.dest.test (net(2)) behaves; null: nothing of the world's listens there. @default {} */
  mx?: MxScript | null;
  /** A fake MX for ours.test (net(9)) that receives the DSNs. @default false */
  capture?: boolean;
  /** `delivery` config keys over {@linkcode deliveryConfig}'s. @default {} */
  delivery?: Record<string, unknown>;
  /** Other options of the daemon (e.g. `noStart`, `dkim`). @default {} */
  mta?: Omit<MtaOptions, "config">;
}

/** A running delivery test world; disposing of it stops the daemon, then the fakes. */
export interface DeliveryWorld {
  /** The loopback network's addresses, net(n). */
  net: (n: number) => string;
  /** The port every fake MX of the world listens on. */
  port: number;
  dns: FakeDns;
  /** mx1.dest.test; throws when the world has none. */
  readonly mx: FakeMx;
  /** The DSN receiver of ours.test; throws when the world has none. */
  readonly capture: FakeMx;
  mta: Mta;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts the usual delivery test: the fake DNS with {@linkcode deliveryZone},
 * a fake MX for dest.test, optionally the DSN receiver for ours.test, and the
 * daemon delivering through them. Other peers (mx2 on net(3), smtp-sink) can
 * be started on `net(n)` and `port` afterwards, before the first submit.
 */
export async function deliveryWorld(options: DeliveryWorldOptions = {}): Promise<DeliveryWorld> {
  const net = loopbackNet();
  const [port] = freePorts(1);
  const started: AsyncDisposable[] = [];
  const dispose = async () => {
    for (const part of started.reverse()) await part[Symbol.asyncDispose]();
  };
  try {
    const extra = typeof options.zone === "function" ? options.zone(net) : options.zone;
    const dns = await FakeDns.start(deliveryZone(net, extra));
    started.push(dns);
    const mxScript = options.mx === undefined ? {} : options.mx;
    const mx = mxScript && await FakeMx.start(net(2), port, { name: "mx1.dest.test", ...mxScript });
    if (mx) started.push(mx);
    const capture = options.capture
      ? await FakeMx.start(net(9), port, { name: "mx.ours.test" })
      : null;
    if (capture) started.push(capture);
    const mta = await Mta.start({
      ...options.mta,
      config: { delivery: deliveryConfig({ dns, port, ...options.delivery }) },
    });
    started.push(mta);
    return {
      net,
      port,
      dns,
      get mx() {
        if (!mx) throw new Error("This delivery world has no mx1.dest.test");
        return mx;
      },
      get capture() {
        if (!capture) throw new Error("This delivery world has no DSN receiver (capture: true)");
        return capture;
      },
      mta,
      [Symbol.asyncDispose]: dispose,
    };
  } catch (error) {
    await dispose();
    throw error;
  }
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

/** True once the message has left the spool (its message file is gone). */
export async function isGone(mta: Mta, id: string): Promise<boolean> {
  try {
    await Deno.stat(mta.emlPath(id));
    return false;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return true;
    throw error;
  }
}
