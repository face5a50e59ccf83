/** Per-stage deadlines in milliseconds; each bounds a whole reply, not one read. */
export interface Timeouts {
  /** TCP connection set-up. @default {30_000} */
  connect: number;
  /** RFC 5321 §4.5.3.2.1: initial 220 message. @default {300_000} */
  greeting: number;
  /** EHLO or HELO reply (RFC 5321 uses the MAIL value). @default {300_000} */
  ehlo: number;
  /** RFC 5321 §4.5.3.2.2: MAIL reply. @default {300_000} */
  mail: number;
  /** RFC 5321 §4.5.3.2.3: each RCPT reply. @default {300_000} */
  rcpt: number;
  /** RFC 5321 §4.5.3.2.4: DATA initiation (the 354). @default {120_000} */
  dataInit: number;
  /** RFC 5321 §4.5.3.2.5: each write of body data. @default {180_000} */
  dataBlock: number;
  /** RFC 5321 §4.5.3.2.6: reply to the final dot. @default {600_000} */
  dataEnd: number;
  /** STARTTLS reply plus the whole TLS handshake (Postfix smtp_starttls_timeout). @default {120_000} */
  starttls: number;
  /** AUTH exchange, every reply. @default {120_000} */
  auth: number;
  /** RSET reply (Postfix smtp_rset_timeout). @default {20_000} */
  rset: number;
  /** QUIT reply (Postfix smtp_quit_timeout is 300 s; we give up sooner, the mail is sent). @default {30_000} */
  quit: number;
}

/** RFC 5321 §4.5.3.2 defaults. */
export const DEFAULT_TIMEOUTS: Readonly<Timeouts> = Object.freeze({
  connect: 30_000,
  greeting: 300_000,
  ehlo: 300_000,
  mail: 300_000,
  rcpt: 300_000,
  dataInit: 120_000,
  dataBlock: 180_000,
  dataEnd: 600_000,
  starttls: 120_000,
  auth: 120_000,
  rset: 20_000,
  quit: 30_000,
});

/**
 * Upper bounds on the stages whose RFC 5321 §4.5.3.2 minimum is shorter
 * than the one for their group: a long command or data timeout
 * (`delivery.command_timeout`, `delivery.data_timeout`) raises MAIL, RCPT
 * and the final dot, but the 354, each body write, STARTTLS, AUTH and QUIT
 * keep at most these values, as their defaults in {@linkcode DEFAULT_TIMEOUTS}.
 */
export const TIMEOUT_CAPS: Readonly<
  Pick<Timeouts, "dataInit" | "dataBlock" | "starttls" | "auth" | "quit">
> = Object.freeze({
  dataInit: 120_000,
  dataBlock: 180_000,
  starttls: 120_000,
  auth: 120_000,
  quit: 30_000,
});

/** The three configured deadlines, in milliseconds, that {@linkcode stageTimeouts} spreads over the stages. */
export interface TimeoutSettings {
  /** TCP connection set-up (`delivery.connect_timeout`). */
  connect: number;
  /** Each command reply (`delivery.command_timeout`). */
  command: number;
  /** The reply to the final dot (`delivery.data_timeout`). */
  data: number;
}

/**
 * Per-stage deadlines from the configured ones: every command reply gets
 * `command`, the final dot `data`, each capped by {@linkcode TIMEOUT_CAPS}
 * (a body write by `data`). RSET is not configured and keeps its default.
 */
export function stageTimeouts(settings: TimeoutSettings): Omit<Timeouts, "rset"> {
  const { connect, command, data } = settings;
  return {
    connect,
    greeting: command,
    ehlo: command,
    mail: command,
    rcpt: command,
    dataInit: Math.min(command, TIMEOUT_CAPS.dataInit),
    dataBlock: Math.min(data, TIMEOUT_CAPS.dataBlock),
    dataEnd: data,
    starttls: Math.min(command, TIMEOUT_CAPS.starttls),
    auth: Math.min(command, TIMEOUT_CAPS.auth),
    quit: Math.min(command, TIMEOUT_CAPS.quit),
  };
}
