import type { SmtpReply } from "./smtp_reply.ts";

/** The step of the SMTP exchange where something went wrong. */
export type SmtpStage =
  | "connect"
  | "greeting"
  | "ehlo"
  | "starttls"
  | "tls"
  | "auth"
  | "mail"
  | "rcpt"
  | "data"
  | "rset"
  | "quit";

/** Options for {@linkcode SmtpError}. */
export interface SmtpErrorOptions {
  /** Step of the exchange that failed. */
  stage: SmtpStage;
  /** The server's reply, or null for connection, timeout and protocol failures. @default {null} */
  reply?: SmtpReply | null;
  /** Whether a later retry may succeed. @default {true} */
  temporary?: boolean;
  /** Underlying error. */
  cause?: unknown;
}

/**
 * A failed SMTP exchange: a refusal reply, a timeout, a dropped connection, a protocol
 * violation or a TLS policy failure. Connection, protocol and timeout failures are
 * always temporary (like go-smtp's `Temporary()`).
 */
export class SmtpError extends Error {
  /** The server's reply, or null when the failure was not a reply. */
  reply: SmtpReply | null;
  /** Step of the exchange that failed. */
  stage: SmtpStage;
  /** Whether a later retry may succeed. */
  temporary: boolean;

  constructor(message: string, options: SmtpErrorOptions) {
    super(message, { cause: options.cause });
    this.name = "SmtpError";
    this.reply = options.reply ?? null;
    this.stage = options.stage;
    this.temporary = options.temporary ?? true;
  }
}
