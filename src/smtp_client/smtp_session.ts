import type { Channel } from "./_channel.ts";
import { type Envelope, isSendableAddress, planMail } from "./_envelope.ts";
import { DotStuffer } from "./prepare_body.ts";
import { SmtpError, type SmtpStage } from "./smtp_error.ts";
import { formatReply, localReply, type SmtpReply } from "./smtp_reply.ts";
import type { Timeouts } from "./timeouts.ts";

/**
 * How long QUIT waits for the server to close its side before closing ours:
 * long enough for any live server, short enough never to hold up a stop.
 */
const QUIT_CLOSE_WAIT_MS = 2_000;

/** What TLS did on this connection. */
export interface TlsInfo {
  /** Whether the session runs over TLS. */
  used: boolean;
  /** Negotiated protocol, e.g. `TLSv1.3`; null without TLS. */
  version: string | null;
  /** Whether the certificate verified for the MX host name. */
  verified: boolean;
  /** Negotiated cipher suite, when known. */
  cipher?: string | null;
  /** Why the session is not encrypted although TLS was attempted or wanted (for the log). */
  fallbackReason?: string | null;
}

/** One message to send in one transaction. */
export type Transaction = Envelope;

/** The server's answers to one transaction. */
export interface TransactionResult {
  /** Reply to MAIL FROM (or a local refusal when nothing was sent). */
  mail: SmtpReply;
  /**
   * Reply per recipient, in input order. When MAIL failed every recipient carries the MAIL
   * reply; when DATA was refused every accepted recipient carries the DATA refusal.
   */
  recipients: { address: string; reply: SmtpReply }[];
  /** Reply to the final dot; null when no RCPT was accepted or DATA was refused. */
  data: SmtpReply | null;
}

/** An open ESMTP session, ready for transactions. */
export interface SmtpSession {
  /** TLS state of the connection. */
  readonly tls: TlsInfo;
  /** EHLO extensions (after STARTTLS: only the post-TLS list), keyword in upper case. */
  readonly extensions: Map<string, string>;
  /** Address connected to. */
  readonly remoteIp: string;
  /** MX host name. */
  readonly host: string;
  /** False after a protocol error, a 421 or a dropped connection. */
  readonly usable: boolean;
  /** Run one mail transaction (RFC 5321 §3.3), pipelined when the server offers it. */
  send(tx: Transaction): Promise<TransactionResult>;
  /** RSET between messages on a reused connection (RFC 5321 §4.1.1.5). */
  reset(): Promise<void>;
  /** QUIT then close; never throws. */
  quit(): Promise<void>;
  /** Close the connection at once. */
  close(): void;
}

/** Everything a session needs once negotiation is done. */
export interface SessionState {
  channel: Channel;
  extensions: Map<string, string>;
  tls: TlsInfo;
  remoteIp: string;
  host: string;
  timeouts: Timeouts;
}

const BODY_SLICE = 64 * 1024;
const isPositive = (r: SmtpReply) => r.code >= 200 && r.code < 300;

/** The {@linkcode SmtpSession} implementation: one method per SMTP verb. */
export class Session implements SmtpSession {
  readonly tls: TlsInfo;
  readonly extensions: Map<string, string>;
  readonly remoteIp: string;
  readonly host: string;
  #channel: Channel;
  #t: Timeouts;
  #closing: SmtpReply | null = null;
  #open = false;

  constructor(state: SessionState) {
    this.#channel = state.channel;
    this.extensions = state.extensions;
    this.tls = state.tls;
    this.remoteIp = state.remoteIp;
    this.host = state.host;
    this.#t = state.timeouts;
  }

  get usable(): boolean {
    return this.#closing === null && this.#channel.ok;
  }

  async send(tx: Transaction): Promise<TransactionResult> {
    if (tx.recipients.length === 0) {
      throw new RangeError("A transaction needs at least one recipient");
    }
    this.#assertUsable("mail");
    const plan = planMail(tx, this.host, this.extensions);
    if (plan.refusal !== null) return refuseAll(tx.recipients, plan.refusal);
    const bad = localReply(
      553,
      "5.1.3",
      "Recipient address contains characters that cannot be sent",
    );
    const good = tx.recipients.filter(isSendableAddress);
    if (good.length === 0) return refuseAll(tx.recipients, bad);
    if (this.#open) await this.reset();
    this.#open = true;
    const replies = this.extensions.has("PIPELINING")
      ? await this.#pipelined(plan.command, good)
      : await this.#lockStep(plan.command, good);
    const byAddress = new Map(good.map((a, i) => [a, replies.rcpt[i]]));
    const recipients = tx.recipients.map((address) => ({
      address,
      reply: isSendableAddress(address) ? byAddress.get(address)! : bad,
    }));
    return await this.#data(replies.mail, recipients, replies.data, tx.body);
  }

  async reset(): Promise<void> {
    this.#assertUsable("rset");
    const reply = await this.#command("rset", "RSET", this.#t.rset);
    if (!isPositive(reply)) {
      this.close();
      throw new SmtpError(`RSET was refused by ${this.host}: ${formatReply(reply)}`, {
        stage: "rset",
        reply,
      });
    }
    this.#open = false;
  }

  async quit(): Promise<void> {
    try {
      if (this.usable) {
        await this.#channel.command("quit", "QUIT", this.#t.quit);
        await this.#channel.awaitClose(Math.min(this.#t.quit, QUIT_CLOSE_WAIT_MS));
      }
    } catch {
      // RFC 5321 §4.1.1.10: the mail is already sent; a lost QUIT reply changes nothing.
    } finally {
      this.close();
    }
  }

  close(): void {
    this.#channel.close();
  }

  /** RFC 2920 §3.1: MAIL, every RCPT and DATA in one write; replies read in order. */
  async #pipelined(mailCommand: string, rcpts: string[]): Promise<StageReplies> {
    const lines = [mailCommand, ...rcpts.map((r) => `RCPT TO:<${r}>`), "DATA"];
    await this.#channel.writeLines("mail", lines, this.#t.mail);
    const mail = await this.#reply("mail", this.#t.mail);
    const rcpt: SmtpReply[] = [];
    for (const _ of rcpts) rcpt.push(await this.#reply("rcpt", this.#t.rcpt));
    const data = await this.#reply("data", this.#t.dataInit);
    return { mail, rcpt, data };
  }

  /** Without PIPELINING: one command, one reply (RFC 5321 §4.1.1). */
  async #lockStep(mailCommand: string, rcpts: string[]): Promise<StageReplies> {
    const mail = await this.#command("mail", mailCommand, this.#t.mail);
    if (!isPositive(mail)) return { mail, rcpt: rcpts.map(() => mail), data: null };
    const rcpt: SmtpReply[] = [];
    for (const r of rcpts) rcpt.push(await this.#command("rcpt", `RCPT TO:<${r}>`, this.#t.rcpt));
    if (!rcpt.some(isPositive)) return { mail, rcpt, data: null };
    return { mail, rcpt, data: await this.#command("data", "DATA", this.#t.dataInit) };
  }

  /** Send the body after 354, or map a refusal onto the recipients. */
  async #data(
    mail: SmtpReply,
    recipients: TransactionResult["recipients"],
    dataReply: SmtpReply | null,
    body: Uint8Array,
  ): Promise<TransactionResult> {
    if (!isPositive(mail)) {
      recipients = recipients.map((r) => ({ ...r, reply: r.reply.local ? r.reply : mail }));
    }
    const accepted = isPositive(mail) &&
      recipients.some((r) => !r.reply.local && isPositive(r.reply));
    if (dataReply !== null && dataReply.code === 354 && !accepted) {
      // RFC 2920 §3.1: DATA was accepted with no valid recipient; end it with an empty message.
      await this.#channel.writeLines("data", ["."], this.#t.dataBlock);
      await this.#reply("data", this.#t.dataEnd);
      this.#open = false;
    }
    if (dataReply === null || !accepted) return { mail, recipients, data: null };
    if (dataReply.code !== 354) {
      if (dataReply.code < 400) {
        this.#protocolError("data", `DATA was answered ${formatReply(dataReply)} instead of 354`);
      }
      const refused = recipients.map((
        r,
      ) => (isPositive(r.reply) && !r.reply.local ? { ...r, reply: dataReply } : r));
      return { mail, recipients: refused, data: null };
    }
    const early = await this.#channel.writeBody("data", stuffedSlices(body), this.#t.dataBlock);
    if (early !== null) return this.#earlyReply(mail, recipients, early);
    const data = await this.#reply("data", this.#t.dataEnd);
    this.#open = false; // RFC 5321 §4.1.1.4: the final reply ends the transaction either way
    return { mail, recipients, data };
  }

  /**
   * The server answered before the final dot (DLV-08). A refusal stands as the
   * final reply; anything positive is a protocol error, since the message was
   * never completely sent. Either way the connection is closed: its state is unknown.
   */
  #earlyReply(
    mail: SmtpReply,
    recipients: TransactionResult["recipients"],
    early: SmtpReply,
  ): TransactionResult {
    this.close();
    if (early.code < 400) {
      this.#protocolError("data", `${formatReply(early)} arrived before the end of the message`);
    }
    return { mail, recipients, data: early };
  }

  async #command(stage: SmtpStage, line: string, timeoutMs: number): Promise<SmtpReply> {
    if (this.#closing !== null) return this.#closing;
    await this.#channel.writeLines(stage, [line], timeoutMs);
    return await this.#reply(stage, timeoutMs);
  }

  /** Read a reply; after a 421 (RFC 5321 §3.8) the server is gone and every later reply is that 421. */
  async #reply(stage: SmtpStage, timeoutMs: number): Promise<SmtpReply> {
    if (this.#closing !== null) return this.#closing;
    const reply = await this.#channel.readReply(stage, timeoutMs);
    if (reply.code === 421) {
      this.#closing = reply;
      this.#channel.close();
    }
    return reply;
  }

  #assertUsable(stage: SmtpStage): void {
    if (!this.usable) {
      throw new SmtpError(`Session with ${this.host} is no longer usable`, {
        stage,
        reply: this.#closing,
      });
    }
  }

  #protocolError(stage: SmtpStage, message: string): never {
    this.close();
    throw new SmtpError(`Protocol error (${stage}): ${message}`, { stage });
  }
}

/** The body dot-stuffed, in slices; each slice is written under the data-block deadline. */
function* stuffedSlices(body: Uint8Array): Generator<Uint8Array> {
  const stuffer = new DotStuffer();
  let i = 0;
  for (; i + BODY_SLICE < body.length; i += BODY_SLICE) {
    yield stuffer.push(body.subarray(i, i + BODY_SLICE));
  }
  // The last slice goes with the terminator: most messages are sent in one write.
  yield stuffer.finish(body.subarray(i));
}

interface StageReplies {
  mail: SmtpReply;
  rcpt: SmtpReply[];
  data: SmtpReply | null;
}

function refuseAll(addresses: string[], reply: SmtpReply): TransactionResult {
  return { mail: reply, recipients: addresses.map((address) => ({ address, reply })), data: null };
}
