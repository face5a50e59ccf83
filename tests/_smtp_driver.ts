/**
 * A raw SMTP client for tests: writes exactly the bytes it is given (in one
 * write, or one byte per write), reads replies as they come, and does
 * STARTTLS with `Deno.startTls` trusting the test certificate. It never
 * fixes anything up, so it can send what a hostile client would.
 */

/** One SMTP reply: its code and its lines without the code. */
export interface SmtpReply {
  code: number;
  /** The text of each line after `NNN-` / `NNN `. */
  lines: string[];
  /** The reply as received, lines joined by "\n". */
  raw: string;
}

const latin1 = new TextDecoder("latin1");
const encoder = new TextEncoder();

/** Options of {@linkcode SmtpDriver.connect}. */
export interface SmtpDriverOptions {
  /** PEM of the certificate to trust for TLS (the test's self-signed one). */
  certPem: string;
  /** Start TLS right after connecting (port 465). @default false */
  implicitTls?: boolean;
}

/** Bytes or text (text is encoded as UTF-8; use bytes for exact control). */
export type Data = string | Uint8Array;

/** Raw SMTP session over loopback. */
export class SmtpDriver {
  #conn: Deno.Conn;
  #certPem: string;
  #buf = new Uint8Array(0);
  #eof = false;
  #closed = false;
  #tls = false;

  private constructor(conn: Deno.Conn, certPem: string) {
    this.#conn = conn;
    this.#certPem = certPem;
  }

  /** Connects to 127.0.0.1:`port`. */
  static async connect(port: number, options: SmtpDriverOptions): Promise<SmtpDriver> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    const driver = new SmtpDriver(conn, options.certPem);
    if (options.implicitTls) await driver.upgrade();
    return driver;
  }

  /** True once the session runs over TLS. */
  get tls(): boolean {
    return this.#tls;
  }

  /** Writes `data`, in one write or one byte per write. */
  async write(data: Data, options: { bytewise?: boolean } = {}): Promise<void> {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    if (!options.bytewise) {
      await writeAll(this.#conn, bytes);
      return;
    }
    for (let i = 0; i < bytes.length; i++) await writeAll(this.#conn, bytes.subarray(i, i + 1));
  }

  /** Reads one complete reply (multi-line replies included). */
  async reply(timeoutMs = 15_000): Promise<SmtpReply> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const parsed = firstReply(this.#buf);
      if (parsed) {
        this.#buf = this.#buf.subarray(parsed.length);
        return parsed.reply;
      }
      if (this.#eof) {
        throw new Error(
          `Connection closed before a complete reply (have ${
            JSON.stringify(latin1.decode(this.#buf))
          })`,
        );
      }
      await this.#fill(deadline);
    }
  }

  /** Reads one reply and checks its code. */
  async expect(code: number, timeoutMs?: number): Promise<SmtpReply> {
    const reply = await this.reply(timeoutMs);
    if (reply.code !== code) {
      throw new Error(`Expected ${code}, got ${JSON.stringify(reply.raw)}`);
    }
    return reply;
  }

  /** Sends one command line (CRLF added) and reads its reply, checking the code when given. */
  async cmd(line: string, code?: number): Promise<SmtpReply> {
    await this.write(`${line}\r\n`);
    return code === undefined ? await this.reply() : await this.expect(code);
  }

  /** `STARTTLS`, expects 220, then the TLS handshake. */
  async startTls(): Promise<void> {
    await this.cmd("STARTTLS", 220);
    await this.upgrade();
  }

  /**
   * The TLS handshake on the current connection. Bytes the server sent
   * after its 220 and before the handshake would be an injection: refused.
   */
  async upgrade(): Promise<void> {
    if (this.#buf.length) {
      throw new Error(`Unread plaintext before TLS: ${JSON.stringify(latin1.decode(this.#buf))}`);
    }
    this.#conn = await Deno.startTls(this.#conn as Deno.TcpConn, {
      hostname: "localhost",
      caCerts: [this.#certPem],
    });
    this.#tls = true;
  }

  /** Reads until the server closes the connection; returns the text received meanwhile. */
  async readToEnd(timeoutMs = 15_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#eof) await this.#fill(deadline);
    const text = latin1.decode(this.#buf);
    this.#buf = new Uint8Array(0);
    return text;
  }

  /** True once the server has closed the connection (as far as reads have seen). */
  get eof(): boolean {
    return this.#eof;
  }

  /** Closes the connection (idempotent). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // Already closed by a failed read.
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }

  async #fill(deadline: number): Promise<void> {
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      this.close();
      throw new Error(
        `Timed out waiting for the server (have ${JSON.stringify(latin1.decode(this.#buf))})`,
      );
    }
    const chunk = new Uint8Array(64 * 1024);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), remaining);
    });
    let n: number | null | "timeout";
    try {
      n = await Promise.race([this.#conn.read(chunk), timeout]);
    } catch (error) {
      // A reset or a read cut by close(): the peer is gone.
      if (this.#closed) throw new Error("Connection closed locally", { cause: error });
      n = null;
    } finally {
      clearTimeout(timer);
    }
    if (n === "timeout") {
      this.close();
      throw new Error(
        `Timed out waiting for the server (have ${JSON.stringify(latin1.decode(this.#buf))})`,
      );
    }
    if (n === null) {
      this.#eof = true;
      return;
    }
    const next = new Uint8Array(this.#buf.length + n);
    next.set(this.#buf);
    next.set(chunk.subarray(0, n), this.#buf.length);
    this.#buf = next;
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}

/** The first complete reply at the start of `buf`, and how many bytes it took. */
function firstReply(buf: Uint8Array): { reply: SmtpReply; length: number } | null {
  const lines: string[] = [];
  const raws: string[] = [];
  let start = 0;
  while (true) {
    const lf = buf.indexOf(0x0a, start);
    if (lf < 0) return null;
    const line = latin1.decode(buf.subarray(start, lf)).replace(/\r$/, "");
    start = lf + 1;
    raws.push(line);
    lines.push(line.slice(4));
    if (line[3] !== "-") {
      return {
        reply: { code: Number(line.slice(0, 3)), lines, raw: raws.join("\n") },
        length: start,
      };
    }
  }
}

/** Splits a stream of reply text (e.g. from {@linkcode SmtpDriver.readToEnd}) into replies. */
export function parseReplies(text: string): SmtpReply[] {
  const replies: SmtpReply[] = [];
  let buf = Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff);
  while (true) {
    const parsed = firstReply(buf);
    if (!parsed) break;
    replies.push(parsed.reply);
    buf = buf.subarray(parsed.length);
  }
  return replies;
}
