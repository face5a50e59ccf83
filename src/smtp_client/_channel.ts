import { withDeadline } from "./_deadline.ts";
import { ProtocolError, ReplyParser } from "./_reply_parser.ts";
import { SmtpError, type SmtpStage } from "./smtp_error.ts";
import type { SmtpReply } from "./smtp_reply.ts";
import type { Transport, TransportTlsOptions, TransportTlsResult } from "./transport.ts";

const encoder = new TextEncoder();

/**
 * Replies and commands over one {@linkcode Transport}, each bounded by a deadline.
 *
 * Any failure here (timeout, closed connection, malformed reply) closes the transport,
 * marks the channel broken and throws a temporary {@linkcode SmtpError}.
 */
export class Channel {
  #transport: Transport;
  #parser = new ReplyParser();
  #broken = false;

  constructor(transport: Transport) {
    this.#transport = transport;
  }

  /** False once the connection failed or was closed. */
  get ok(): boolean {
    return !this.#broken;
  }

  /** Bytes from the server not yet consumed by a reply (RFC 3207 §5 injection check). */
  get buffered(): number {
    return this.#parser.buffered + this.#transport.buffered;
  }

  /** Read one whole reply; `timeoutMs` bounds the whole reply, not each read. */
  readReply(stage: SmtpStage, timeoutMs: number): Promise<SmtpReply> {
    return this.#guard(stage, timeoutMs, "waiting for the reply", async () => {
      for (;;) {
        const reply = this.#parser.next();
        if (reply !== null) return reply;
        const chunk = await this.#transport.read();
        if (chunk === null) throw new Deno.errors.ConnectionReset("Connection closed by server");
        this.#parser.push(chunk);
      }
    });
  }

  /** Write a command line (CRLF added) or several pipelined lines in one write. */
  writeLines(stage: SmtpStage, lines: string[], timeoutMs: number): Promise<void> {
    const bytes = encoder.encode(lines.map((l) => `${l}\r\n`).join(""));
    return this.write(stage, bytes, timeoutMs);
  }

  /** Write raw bytes within a deadline. */
  write(stage: SmtpStage, bytes: Uint8Array, timeoutMs: number): Promise<void> {
    return this.#guard(stage, timeoutMs, "sending", () => this.#transport.write(bytes));
  }

  /** Send one command and read its reply. */
  async command(stage: SmtpStage, line: string, timeoutMs: number): Promise<SmtpReply> {
    await this.writeLines(stage, [line], timeoutMs);
    return await this.readReply(stage, timeoutMs);
  }

  /** Run the TLS handshake within a deadline. */
  startTls(options: TransportTlsOptions, timeoutMs: number): Promise<TransportTlsResult> {
    return this.#guard("tls", timeoutMs, "in the TLS handshake", () => {
      this.#parser = new ReplyParser();
      return this.#transport.startTls(options);
    });
  }

  /** Close the connection now. */
  close(): void {
    this.#broken = true;
    this.#transport.close();
  }

  async #guard<T>(
    stage: SmtpStage,
    timeoutMs: number,
    doing: string,
    work: () => Promise<T>,
  ): Promise<T> {
    if (this.#broken) {
      throw new SmtpError(`Connection is no longer usable (${stage})`, { stage });
    }
    try {
      return await withDeadline(work(), timeoutMs);
    } catch (err) {
      this.close();
      throw new SmtpError(describe(err, stage, doing, timeoutMs), { stage, cause: err });
    }
  }
}

function describe(err: unknown, stage: SmtpStage, doing: string, timeoutMs: number): string {
  if (err instanceof Deno.errors.TimedOut) {
    return `Timed out after ${timeoutMs} ms ${doing} (${stage})`;
  }
  if (err instanceof ProtocolError) return `Protocol error (${stage}): ${err.message}`;
  const msg = err instanceof Error ? err.message : String(err);
  return `Connection failed ${doing} (${stage}): ${msg}`;
}
