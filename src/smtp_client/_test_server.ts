/**
 * Test helpers: a scriptable fake MX on a real loopback socket that records every byte it
 * receives, self-signed certificates from openssl, and tool checks for interop tests.
 */
import net from "node:net";
import tls from "node:tls";
import type { Buffer } from "node:buffer";
import type { SessionOptions } from "./open_session.ts";

/** How the fake MX behaves; every reply is raw text including CRLF. */
export interface ScriptedMxOptions {
  /** Raw greeting. @default {"220 fake.test ESMTP\r\n"} */
  greeting?: string;
  /** Extension lines for EHLO, given whether TLS is up. @default {PIPELINING, 8BITMIME, SIZE, STARTTLS when a cert is set} */
  ehlo?: (tls: boolean) => string[];
  /** Certificate and key for STARTTLS / implicit TLS. @default {undefined} */
  cert?: { cert: string; key: string };
  /** TLS from the first byte. @default {false} */
  implicitTls?: boolean;
  /** Custom reply for a command; return undefined for the default, "" to stay silent. */
  reply?: (command: string, conn: FakeConn) => string | undefined;
  /** Reply to the end of DATA. @default {"250 2.0.0 queued\r\n"} */
  dataEnd?: string;
  /** Wait this long before the 354 to DATA, to catch a client that does not wait for it. @default {0} */
  goAheadDelayMs?: number;
}

/** One accepted connection, as the fake MX saw it. */
export class FakeConn {
  /** Every command line received (CRLF removed). */
  commands: string[] = [];
  /** Commands that arrived while more bytes were already waiting (pipelined). */
  pipelined: string[] = [];
  /** Every DATA payload, terminator included, exactly as received. */
  messages: Uint8Array[] = [];
  /** All bytes received (decrypted after TLS). */
  wire: number[] = [];
  /** Whether STARTTLS or implicit TLS completed. */
  tls = false;
  /** Bytes received after the DATA line before the delayed 354 was written (goAheadDelayMs). */
  earlyBytes: number[] = [];
  /** Offset in `wire` just after the command line being handled. */
  consumed = 0;
  socket: net.Socket;

  constructor(socket: net.Socket) {
    this.socket = socket;
  }

  /** Write text to the client. */
  write(text: string): void {
    if (!this.socket.destroyed) this.socket.write(text);
  }

  /** Write text one byte at a time, `delayMs` apart. */
  async trickle(text: string, delayMs: number): Promise<void> {
    for (const ch of text) {
      if (this.socket.destroyed) return;
      this.socket.write(ch);
      await new Promise((r) => setTimeout(r, delayMs));
    }
  }
}

/** An in-process MX on 127.0.0.1, scripted per test (unlike tests/_mx.ts's FakeMx, a Python process). */
export class ScriptedMx {
  readonly conns: FakeConn[] = [];
  #server: net.Server;
  #sockets = new Set<net.Socket>();
  #opts: ScriptedMxOptions;
  #timers = new Set<ReturnType<typeof setTimeout>>();

  private constructor(opts: ScriptedMxOptions) {
    this.#opts = opts;
    this.#server = net.createServer((s) => this.#accept(s));
  }

  /** Start listening on an ephemeral port. */
  static async start(opts: ScriptedMxOptions = {}): Promise<ScriptedMx> {
    const mx = new ScriptedMx(opts);
    await new Promise<void>((r) => mx.#server.listen(0, "127.0.0.1", () => r()));
    return mx;
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  /**
   * The `index`th connection once it has been accepted (a loaded machine
   * may take longer than any fixed pause), within `timeoutMs`.
   */
  async connection(index = 0, timeoutMs = 10_000): Promise<FakeConn> {
    const deadline = Date.now() + timeoutMs;
    while (!this.conns[index]) {
      if (Date.now() > deadline) throw new Error(`No connection ${index} within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
    return this.conns[index];
  }

  /** Bytes the client sent on the first connection, as latin1 text. */
  wireText(index = 0): string {
    return String.fromCharCode(...this.conns[index]?.wire ?? []);
  }

  /** Stop listening and drop every connection. */
  async close(): Promise<void> {
    for (const t of this.#timers) clearTimeout(t);
    const closing = [...this.#sockets].map((s) =>
      new Promise<void>((r) => {
        if (s.destroyed && s.closed) return r();
        s.once("close", () => r());
        s.destroy();
      })
    );
    await Promise.all(closing);
    await new Promise((r) => this.#server.close(r));
  }

  /** Run `fn` after `ms` unless the server closes first. */
  later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.#timers.delete(t);
      fn();
    }, ms);
    this.#timers.add(t);
  }

  #accept(raw: net.Socket): void {
    this.#sockets.add(raw);
    raw.on("error", () => {});
    const conn = new FakeConn(raw);
    this.conns.push(conn);
    if (this.#opts.implicitTls) {
      this.#upgrade(conn, raw, () => conn.write(this.#opts.greeting ?? "220 fake.test ESMTP\r\n"));
      return;
    }
    this.#listen(conn, raw);
    conn.write(this.#opts.greeting ?? "220 fake.test ESMTP\r\n");
  }

  #listen(conn: FakeConn, socket: net.Socket): void {
    let buf: number[] = [];
    let inData = false;
    const onData = (chunk: Buffer) => {
      for (const b of chunk) conn.wire.push(b);
      buf.push(...chunk);
      for (;;) {
        if (inData) {
          const end = findTerminator(buf);
          if (end === -1) return;
          conn.messages.push(new Uint8Array(buf.slice(0, end)));
          buf = buf.slice(end);
          inData = false;
          conn.write(this.#opts.dataEnd ?? "250 2.0.0 queued\r\n");
          continue;
        }
        const lf = buf.indexOf(10);
        if (lf === -1) return;
        const line = String.fromCharCode(...buf.slice(0, lf)).replace(/\r$/, "");
        buf = buf.slice(lf + 1);
        conn.commands.push(line);
        conn.consumed = conn.wire.length - buf.length;
        if (buf.length > 0) conn.pipelined.push(line);
        const action = this.#command(line, conn);
        if (action === "data") inData = true;
        if (action === "starttls") {
          socket.off("data", onData);
          this.#upgrade(conn, socket, () => {});
          return;
        }
      }
    };
    socket.on("data", onData);
  }

  #command(line: string, conn: FakeConn): "data" | "starttls" | null {
    const custom = this.#opts.reply?.(line, conn);
    const verb = line.split(" ")[0].toUpperCase();
    if (custom !== undefined) {
      conn.write(custom);
      if (verb === "DATA" && custom.startsWith("354")) return "data";
      return verb === "STARTTLS" && custom.startsWith("220") ? "starttls" : null;
    }
    const ehlo = this.#opts.ehlo?.(conn.tls) ?? [
      "PIPELINING",
      "8BITMIME",
      "SIZE 10000000",
      ...(this.#opts.cert && !conn.tls ? ["STARTTLS"] : []),
    ];
    const replies: Record<string, string> = {
      EHLO: ["fake.test", ...ehlo].map((l, i, a) => `250${i === a.length - 1 ? " " : "-"}${l}\r\n`)
        .join(""),
      HELO: "250 fake.test\r\n",
      MAIL: "250 2.1.0 ok\r\n",
      RCPT: "250 2.1.5 ok\r\n",
      DATA: "354 go ahead\r\n",
      RSET: "250 2.0.0 ok\r\n",
      NOOP: "250 2.0.0 ok\r\n",
      STARTTLS: "220 2.0.0 ready\r\n",
      QUIT: "221 2.0.0 bye\r\n",
    };
    const delay = this.#opts.goAheadDelayMs ?? 0;
    if (verb === "DATA" && delay > 0) {
      const after = conn.consumed;
      this.later(delay, () => {
        conn.earlyBytes.push(conn.wire.length - after);
        conn.write(replies.DATA);
      });
      return "data";
    }
    conn.write(replies[verb] ?? "502 5.5.2 unknown\r\n");
    if (verb === "QUIT") conn.socket.end();
    if (verb === "DATA") return "data";
    return verb === "STARTTLS" ? "starttls" : null;
  }

  #upgrade(conn: FakeConn, socket: net.Socket, then: () => void): void {
    // Without a certificate the fake MX stalls after STARTTLS (a handshake that never ends).
    if (!this.#opts.cert) return;
    const { cert, key } = this.#opts.cert;
    const secure = new tls.TLSSocket(socket, { isServer: true, cert, key });
    this.#sockets.add(secure);
    secure.on("error", () => {});
    secure.once("secure", () => {
      conn.tls = true;
      conn.socket = secure;
      then();
    });
    this.#listen(conn, secure);
  }
}

/** Runs `fn` with a started {@linkcode ScriptedMx}, closing it afterwards, also when `fn` throws. */
export async function withMx(
  options: ScriptedMxOptions,
  fn: (mx: ScriptedMx) => Promise<void>,
): Promise<void> {
  const mx = await ScriptedMx.start(options);
  try {
    await fn(mx);
  } finally {
    await mx.close();
  }
}

/** Session options that reach `mx` as "mx.test" with opportunistic TLS; `extra` overrides any. */
export function sessionOptions(
  mx: ScriptedMx,
  extra: Partial<SessionOptions> = {},
): SessionOptions {
  return {
    host: "mx.test",
    ip: "127.0.0.1",
    port: mx.port,
    heloName: "out.ours.test",
    tls: "opportunistic",
    ...extra,
  };
}

function findTerminator(buf: number[]): number {
  // The payload ends at CRLF.CRLF, or is just ".\r\n" (an empty message).
  if (buf[0] === 46 && buf[1] === 13 && buf[2] === 10) return 3;
  for (let i = 0; i + 4 < buf.length; i++) {
    if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 46 && buf[i + 3] === 13) {
      if (buf[i + 4] === 10) return i + 5;
    }
  }
  return -1;
}

/** True when MINIMTA_REQUIRE_INTEROP=1: missing tools must fail tests, not skip them. */
export const REQUIRE_INTEROP = Deno.env.get("MINIMTA_REQUIRE_INTEROP") === "1";

/**
 * The name `.ci/tools.txt` (the list of outside tools CI installs) gives
 * `cmd args`: `python3:MODULE` for `python3 -c "import MODULE"`, else the
 * program's file name.
 */
function listedName(cmd: string, args: string[]): string {
  const module = args[0] === "-c" ? /^import ([\w]+)/.exec(args[1] ?? "")?.[1] : undefined;
  return module ? `python3:${module}` : cmd.slice(cmd.lastIndexOf("/") + 1);
}

function listedTools(): Set<string> {
  const text = Deno.readTextFileSync(new URL("../../.ci/tools.txt", import.meta.url));
  return new Set(
    text.split("\n").map((l) => l.replace(/#.*/, "").trim().split(/\s+/)[0]).filter(Boolean),
  );
}

/**
 * Whether `cmd` runs; logs a loud skip reason when not (and throws under
 * REQUIRE_INTEROP). A tool `.ci/tools.txt` does not list throws wherever it
 * runs: CI installs only what that file names.
 */
export async function haveTool(
  cmd: string,
  args: string[] = ["--version"],
  mustSucceed = false,
): Promise<boolean> {
  const name = listedName(cmd, args);
  if (!listedTools().has(name)) {
    throw new Error(`"${name}" is used by a test but not listed in .ci/tools.txt`);
  }
  try {
    const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).output();
    if (mustSucceed && !out.success) throw new Error(`"${cmd} ${args.join(" ")}" failed`);
    return true;
  } catch {
    if (REQUIRE_INTEROP) throw new Error(`Required interop tool "${cmd} ${args.join(" ")}" fails`);
    // deno-lint-ignore no-console
    console.error(`SKIPPING tests that need "${cmd} ${args.join(" ")}": not installed or failing`);
    return false;
  }
}

/** A self-signed certificate for `name`, made by `openssl req -x509` in a temp folder. */
export async function selfSignedCert(name: string): Promise<{ cert: string; key: string }> {
  const dir = await Deno.makeTempDir({ prefix: "minimta-cert-" });
  try {
    const out = await new Deno.Command("openssl", {
      args: [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        `${dir}/key.pem`,
        "-out",
        `${dir}/cert.pem`,
        "-subj",
        `/CN=${name}`,
        "-addext",
        `subjectAltName=DNS:${name}`,
      ],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!out.success) throw new Error(`openssl failed: ${new TextDecoder().decode(out.stderr)}`);
    return {
      cert: await Deno.readTextFile(`${dir}/cert.pem`),
      key: await Deno.readTextFile(`${dir}/key.pem`),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
