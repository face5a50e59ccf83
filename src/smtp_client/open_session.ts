import { authenticate, type Credentials } from "./_auth.ts";
import { Channel } from "./_channel.ts";
import { withDeadline } from "./_deadline.ts";
import { parseExtensions } from "./_extensions.ts";
import { SmtpError, type SmtpStage } from "./smtp_error.ts";
import { classifyReply, formatReply, type SmtpReply } from "./smtp_reply.ts";
import { Session, type SmtpSession, type TlsInfo } from "./smtp_session.ts";
import { DEFAULT_TIMEOUTS, type Timeouts } from "./timeouts.ts";
import { type Connector, connectTcp, type Transport } from "./transport.ts";

/**
 * How much TLS a session needs.
 * - `opportunistic`: STARTTLS when offered, any certificate; plaintext when the server
 *   offers no STARTTLS, refuses it, or the handshake fails (then once, on a new connection).
 * - `required`: encryption or defer; any certificate.
 * - `verify`: encryption with a certificate valid for the MX host name, or defer.
 */
export type TlsPolicy = "opportunistic" | "required" | "verify";

/** Options for {@linkcode openSession}. */
export interface SessionOptions {
  /** MX host name: TLS SNI and, under `verify`, the name the certificate must match. */
  host: string;
  /** Address to connect to (IPv4 or IPv6). */
  ip: string;
  /** TCP port. */
  port: number;
  /** Name sent in EHLO/HELO. */
  heloName: string;
  /** Local address to send from; "" or undefined lets the system choose. @default {undefined} */
  sourceAddress?: string;
  /** TLS policy. */
  tls: TlsPolicy;
  /** TLS from the first byte (a smarthost on port 465). @default {false} */
  implicitTls?: boolean;
  /** Smarthost credentials; sent only over TLS, else the session fails. @default {undefined} */
  auth?: Credentials;
  /** Per-stage deadlines, merged over {@linkcode DEFAULT_TIMEOUTS}. @default {{}} */
  timeouts?: Partial<Timeouts>;
  /** Extra PEM CA certificates trusted for verification (tests, private CAs). @default {[]} */
  caCerts?: string[];
  /** Opens the TCP connection. @default {connectTcp} */
  connect?: Connector;
}

/** Raised inside negotiation when an opportunistic handshake failed: retry without TLS. */
class TlsFallback extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TlsFallback";
  }
}

const NO_TLS: TlsInfo = { used: false, version: null, verified: false, cipher: null };

/**
 * Connect, read the greeting, EHLO (HELO fallback), STARTTLS per policy, EHLO again,
 * then AUTH when asked. Throws {@linkcode SmtpError} when no usable session results.
 */
export async function openSession(options: SessionOptions): Promise<SmtpSession> {
  validate(options);
  const timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
  try {
    return await negotiate(options, timeouts, null);
  } catch (err) {
    if (!(err instanceof TlsFallback)) throw err;
    // RFC 7435 / Postfix "may": after a failed handshake, one new plaintext connection.
    return await negotiate(options, timeouts, err.message);
  }
}

async function negotiate(
  opts: SessionOptions,
  t: Timeouts,
  fallbackReason: string | null,
): Promise<SmtpSession> {
  const channel = new Channel(await connect(opts, t));
  try {
    let tls = opts.implicitTls ? await handshake(channel, opts, t) : NO_TLS;
    await greeting(channel, opts, t);
    let extensions = await hello(channel, opts, t);
    if (!opts.implicitTls) {
      tls = await startTls(channel, opts, t, extensions, fallbackReason);
      // RFC 3207 §4.2: forget everything learnt before TLS and ask again.
      if (tls.used) extensions = await hello(channel, opts, t);
    }
    if (opts.auth) {
      if (!tls.used) {
        throw new SmtpError(`Refusing to send AUTH credentials to ${opts.host} without TLS`, {
          stage: "auth",
        });
      }
      const mechanisms = extensions.get("AUTH") ?? "";
      await authenticate(channel, opts.auth, { mechanisms, host: opts.host, timeoutMs: t.auth });
    }
    return new Session({
      channel,
      extensions,
      tls,
      remoteIp: opts.ip,
      host: opts.host,
      timeouts: t,
    });
  } catch (err) {
    if (err instanceof SmtpError && err.reply?.code !== 421) await politeQuit(channel, t);
    channel.close();
    throw err;
  }
}

async function connect(opts: SessionOptions, t: Timeouts): Promise<Transport> {
  const connector = opts.connect ?? connectTcp;
  const pending = connector({
    hostname: opts.ip,
    port: opts.port,
    localAddress: opts.sourceAddress,
  });
  try {
    return await withDeadline(pending, t.connect);
  } catch (err) {
    pending.then((transport) => transport.close(), () => {});
    const msg = err instanceof Error ? err.message : String(err);
    throw new SmtpError(`Cannot connect to ${opts.host} [${opts.ip}]:${opts.port}: ${msg}`, {
      stage: "connect",
      cause: err,
    });
  }
}

/** RFC 5321 §3.1: the server speaks first; anything but 220 means no session. */
async function greeting(channel: Channel, opts: SessionOptions, t: Timeouts): Promise<void> {
  const reply = await channel.readReply("greeting", t.greeting);
  if (reply.code !== 220) throw replyError("greeting", reply, `${opts.host} greeted with`);
}

/** EHLO, and HELO when EHLO gets a 5xx (RFC 5321 §3.2); returns the extensions. */
async function hello(
  channel: Channel,
  opts: SessionOptions,
  t: Timeouts,
): Promise<Map<string, string>> {
  const ehlo = await channel.command("ehlo", `EHLO ${opts.heloName}`, t.ehlo);
  if (ehlo.code === 250) return parseExtensions(ehlo);
  if (ehlo.code < 500 || ehlo.code > 599) {
    throw replyError("ehlo", ehlo, `${opts.host} refused EHLO`);
  }
  const helo = await channel.command("ehlo", `HELO ${opts.heloName}`, t.ehlo);
  if (helo.code !== 250) throw replyError("ehlo", helo, `${opts.host} refused HELO`);
  return new Map();
}

/** STARTTLS per policy (RFC 3207); returns the TLS state, throws when policy is not met. */
async function startTls(
  channel: Channel,
  opts: SessionOptions,
  t: Timeouts,
  extensions: Map<string, string>,
  fallbackReason: string | null,
): Promise<TlsInfo> {
  const plaintext = (reason: string): TlsInfo => {
    if (opts.tls !== "opportunistic") {
      throw new SmtpError(`TLS policy "${opts.tls}" not met: ${reason}`, { stage: "starttls" });
    }
    return { ...NO_TLS, fallbackReason: reason };
  };
  if (fallbackReason !== null) return plaintext(fallbackReason);
  if (!extensions.has("STARTTLS")) return plaintext(`${opts.host} does not offer STARTTLS`);
  const reply = await channel.command("starttls", "STARTTLS", t.starttls);
  if (reply.code === 421) {
    throw replyError("starttls", reply, `${opts.host} answered STARTTLS with`);
  }
  if (reply.code !== 220) return plaintext(`${opts.host} refused STARTTLS: ${formatReply(reply)}`);
  // RFC 3207 §5 / docs/testing.md TLS-C-01: bytes after the 220 were never asked for; they would
  // be read as post-TLS replies. A protocol violation: give up on this connection.
  if (channel.buffered > 0) {
    throw new SmtpError(
      `Protocol error (starttls): ${opts.host} sent ${channel.buffered} bytes after its 220 reply to STARTTLS`,
      { stage: "starttls" },
    );
  }
  return await handshake(channel, opts, t);
}

async function handshake(channel: Channel, opts: SessionOptions, t: Timeouts): Promise<TlsInfo> {
  const verify = opts.tls === "verify";
  try {
    const r = await channel.startTls(
      { servername: opts.host, verify, caCerts: opts.caCerts },
      t.starttls,
    );
    return { used: true, version: r.version, verified: r.verified, cipher: r.cipher };
  } catch (err) {
    const cause = err instanceof SmtpError && err.cause instanceof Error ? err.cause : err;
    const msg = `TLS handshake with ${opts.host} failed: ${
      cause instanceof Error ? cause.message : cause
    }`;
    if (opts.tls === "opportunistic" && !opts.implicitTls) {
      throw new TlsFallback(msg, { cause: err });
    }
    throw new SmtpError(msg, { stage: "tls", cause: err });
  }
}

async function politeQuit(channel: Channel, t: Timeouts): Promise<void> {
  if (!channel.ok) return;
  try {
    await channel.command("quit", "QUIT", t.quit);
  } catch {
    // Best effort only: the session has already failed.
  }
}

function replyError(stage: SmtpStage, reply: SmtpReply, what: string): SmtpError {
  return new SmtpError(`${what} ${formatReply(reply)}`, {
    stage,
    reply,
    temporary: classifyReply(reply) !== "permanent",
  });
}

function validate(opts: SessionOptions): void {
  // deno-lint-ignore no-control-regex
  if (!opts.heloName || /[\x00-\x20\x7f]/.test(opts.heloName)) {
    throw new TypeError(`Invalid HELO name "${opts.heloName}"`);
  }
}
