import { withDeadline } from "./_deadline.ts";
import { ProtocolError, ReplyParser } from "./_reply_parser.ts";
import { SmtpError, type SmtpStage } from "./smtp_error.ts";
import type { SmtpReply } from "./smtp_reply.ts";
import type { Transport, TransportTlsOptions, TransportTlsResult } from "./transport.ts";

const encoder = new TextEncoder();
/** How long a failed body write waits for the reply that may explain it. */
const LATE_REPLY_MS = 2_000;

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
  /** A read started while writing the body, consumed by the next reply. */
  #pending: Promise<Uint8Array | null> | null = null;

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
        const chunk = await this.#readChunk();
        if (chunk === null) throw new Deno.errors.ConnectionReset("Connection closed by server");
        this.#parser.push(chunk);
      }
    });
  }

  /**
   * Write the message body while listening to the server. Some servers answer
   * before the final dot and stop reading (smtp-sink -A, filters that refuse
   * mid-stream): that reply is returned and the rest of the body is not sent.
   * Null when every slice was written; the final reply is then read as usual.
   * The connection is unusable after an early reply; the caller closes it.
   */
  async writeBody(
    stage: SmtpStage,
    slices: Iterable<Uint8Array>,
    timeoutMs: number,
  ): Promise<SmtpReply | null> {
    if (this.#broken) {
      throw new SmtpError(`Connection is no longer usable (${stage})`, { stage });
    }
    // Already here, e.g. sent right behind the 354.
    if (this.#parser.buffered > 0) return await this.readReply(stage, timeoutMs);
    const listening = this.#readChunk();
    this.#pending = listening;
    let heard = false;
    const hearing = listening.then(() => {
      heard = true;
    });
    for (const slice of slices) {
      if (slice.length === 0) continue;
      try {
        await withDeadline(Promise.race([this.#transport.write(slice), hearing]), timeoutMs);
      } catch (err) {
        // A server that answered and closed makes the write fail: its reply is the news.
        const reply = await this.#lateReply(stage);
        if (reply !== null) return reply;
        this.close();
        throw new SmtpError(describe(err, stage, "sending", timeoutMs), { stage, cause: err });
      }
      if (heard) return await this.readReply(stage, timeoutMs);
    }
    return null;
  }

  /** A reply the server sent before a write failed, if one arrives within a moment. */
  async #lateReply(stage: SmtpStage): Promise<SmtpReply | null> {
    try {
      return await this.readReply(stage, LATE_REPLY_MS);
    } catch {
      return null;
    }
  }

  #readChunk(): Promise<Uint8Array | null> {
    const pending = this.#pending;
    this.#pending = null;
    return pending ?? this.#transport.read();
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

  /**
   * After QUIT's reply: wait (at most `timeoutMs`) for the server to close
   * its side (RFC 5321 §4.1.1.10: it closes once it has replied), so that a
   * connection counted as closed here is closed as the server counts it too.
   * Never throws; whatever arrives meanwhile is discarded.
   */
  async awaitClose(timeoutMs: number): Promise<void> {
    if (this.#broken) return;
    const drain = async () => {
      while ((await this.#readChunk()) !== null) { /* discard */ }
    };
    await withDeadline(drain(), timeoutMs).catch(() => {});
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
