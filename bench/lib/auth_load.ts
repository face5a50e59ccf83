// deno-lint-ignore-file no-console
/**
 * Authenticating SMTP load client for bench/submission.sh (mode 2). The same
 * client drives minimta and Postfix so that both see identical traffic.
 *
 * Each of --sessions workers loops: connect, read the banner, EHLO, STARTTLS,
 * EHLO, AUTH PLAIN, then MAIL/RCPT/DATA of one message at a time (no
 * pipelining, like smtp-source) until --per-conn messages have been sent on
 * the connection (0 = never reconnect), then QUIT and reconnect. Workers
 * share one counter so exactly --messages messages are sent in all.
 *
 * Prints one JSON line: {"sent", "errors", "seconds", "connections"}.
 *
 *   deno run -A bench/lib/auth_load.ts --port 2587 --ca ca.crt --messages 5000
 */
import { parseArgs } from "node:util";

const { values: o } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string" },
    "tls-name": { type: "string", default: "localhost" },
    ca: { type: "string" },
    sessions: { type: "string", default: "20" },
    messages: { type: "string", default: "5000" },
    size: { type: "string", default: "4096" },
    "per-conn": { type: "string", default: "100" },
    user: { type: "string", default: "user" },
    pass: { type: "string", default: "secret" },
    from: { type: "string", default: "user@ours.test" },
    to: { type: "string", default: "to@example.test" },
    ehlo: { type: "string", default: "client.ours.test" },
  },
});
if (!o.port || !o.ca) {
  console.error("usage: auth_load.ts --port N --ca FILE [--messages N] [--sessions N] ...");
  Deno.exit(2);
}
const port = Number(o.port);
const total = Number(o.messages);
const sessions = Number(o.sessions);
const perConn = Number(o["per-conn"]);
const caCerts = [await Deno.readTextFile(o.ca)];
const enc = new TextEncoder();
const dec = new TextDecoder();

function buildMessage(size: number): Uint8Array {
  const head = [
    `From: <${o.from}>`,
    `To: <${o.to}>`,
    `Subject: bench`,
    `Date: ${new Date().toUTCString().replace(/GMT$/, "+0000")}`,
    "",
  ].join("\r\n") + "\r\n";
  // Body: `size` bytes of 78-character lines (76 + CRLF), like a base64 part.
  let body = "";
  const line = "abcdefghijklmnopqrstuvwxyz0123456789".repeat(3).slice(0, 76) + "\r\n";
  while (body.length + line.length <= size) body += line;
  body += "x".repeat(Math.max(0, size - body.length - 2)) + "\r\n";
  return enc.encode(head + body.slice(0, size) + ".\r\n");
}
const message = buildMessage(Number(o.size));
const authPlain = btoa(`\0${o.user}\0${o.pass}`);

/** Reads SMTP replies (possibly multi-line) from a connection. */
class Replies {
  #conn: Deno.Conn;
  #buf = new Uint8Array(0);
  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }
  set conn(c: Deno.Conn) {
    this.#conn = c;
    this.#buf = new Uint8Array(0);
  }
  async #line(): Promise<string> {
    for (;;) {
      const nl = this.#buf.indexOf(0x0a);
      if (nl >= 0) {
        const text = dec.decode(this.#buf.subarray(0, nl)).replace(/\r$/, "");
        this.#buf = this.#buf.subarray(nl + 1);
        return text;
      }
      const chunk = new Uint8Array(16384);
      const n = await this.#conn.read(chunk);
      if (n === null) throw new Error("connection closed by server");
      const next = new Uint8Array(this.#buf.length + n);
      next.set(this.#buf);
      next.set(chunk.subarray(0, n), this.#buf.length);
      this.#buf = next;
    }
  }
  async reply(): Promise<{ code: number; text: string }> {
    const lines: string[] = [];
    for (;;) {
      const line = await this.#line();
      lines.push(line);
      if (line.length < 4 || line[3] !== "-") {
        return { code: Number(line.slice(0, 3)), text: lines.join("\n") };
      }
    }
  }
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

let claimed = 0;
let sent = 0;
let errors = 0;
let connections = 0;
let firstError = "";

async function command(
  conn: Deno.Conn,
  r: Replies,
  line: string | Uint8Array,
  want: number,
): Promise<void> {
  await writeAll(conn, typeof line === "string" ? enc.encode(line + "\r\n") : line);
  const rep = await r.reply();
  if (rep.code !== want) {
    const what = typeof line === "string" ? line.split(" ")[0] : "DATA body";
    throw new Error(`${what}: expected ${want}, got ${rep.text}`);
  }
}

async function openSession(): Promise<{ conn: Deno.Conn; r: Replies }> {
  const tcp = await Deno.connect({ hostname: o.host, port });
  connections++;
  const r = new Replies(tcp);
  if ((await r.reply()).code !== 220) throw new Error("no 220 banner");
  await command(tcp, r, `EHLO ${o.ehlo}`, 250);
  await command(tcp, r, "STARTTLS", 220);
  const tls = await Deno.startTls(tcp, { hostname: o["tls-name"], caCerts });
  r.conn = tls;
  await command(tls, r, `EHLO ${o.ehlo}`, 250);
  await command(tls, r, `AUTH PLAIN ${authPlain}`, 235);
  return { conn: tls, r };
}

async function worker(): Promise<void> {
  while (claimed < total) {
    let session: { conn: Deno.Conn; r: Replies } | null = null;
    try {
      session = await openSession();
      const { conn, r } = session;
      let onConn = 0;
      while (claimed < total && (perConn === 0 || onConn < perConn)) {
        claimed++;
        onConn++;
        try {
          await command(conn, r, `MAIL FROM:<${o.from}>`, 250);
          await command(conn, r, `RCPT TO:<${o.to}>`, 250);
          await command(conn, r, "DATA", 354);
          await command(conn, r, message, 250);
          sent++;
        } catch (error) {
          errors++;
          firstError ||= String(error);
          throw error;
        }
      }
      await command(conn, r, "QUIT", 221).catch(() => {});
    } catch (error) {
      firstError ||= String(error);
      if (!session) errors++;
      if (errors > 100) throw new Error(`too many errors; first: ${firstError}`);
    } finally {
      try {
        session?.conn.close();
      } catch { /* already closed */ }
    }
  }
}

const t0 = performance.now();
await Promise.all(Array.from({ length: sessions }, () => worker()));
const seconds = (performance.now() - t0) / 1000;
console.log(JSON.stringify({ sent, errors, seconds, connections, first_error: firstError }));
Deno.exit(errors > 0 ? 1 : 0);
