/**
 * Receiving servers for delivery tests: scripted fake MXs
 * (tests/fakes/fake_mx.py) and Postfix's smtp-sink, each on a loopback
 * address of its own ({@linkcode loopbackNet}), run as child processes and
 * stopped by `await using`.
 */
import { ReadyChild } from "./_child.ts";
import { delay, FAKES, PYTHON } from "./_harness.ts";
import { text } from "./_mime.ts";

/**
 * A /24 of loopback addresses no other test uses (127.A.B.0, A random), so
 * tests running in parallel can listen on the same port without clashes.
 * `net(2)` is "127.A.B.2".
 */
export function loopbackNet(): (host: number) => string {
  const a = 16 + Math.floor(Math.random() * 230);
  const b = Math.floor(Math.random() * 256);
  return (host: number) => `127.${a}.${b}.${host}`;
}

/** What fake_mx.py does (see its header); host, port and events are filled in. */
export interface MxScript {
  name?: string;
  greeting?: string;
  extensions?: string[];
  starttls?: { cert: string; key: string; inject?: string };
  mail?: string;
  /** By lowercase address; a list gives the n-th RCPT of that address the n-th reply. */
  rcpt?: Record<string, string | string[]>;
  rcpt_default?: string;
  /** Accepted RCPTs per transaction; later ones get `452 4.5.3`. */
  rcpt_limit?: number;
  /** Replies to the final dot; `"DROP"` closes the connection without one. */
  data?: string[];
  delay_ms?: number[];
  /** Replies to the final dot wait until this file exists (a slow receiver the test lets go). */
  wait_for?: (string | null)[];
  drop_after_bytes?: (number | null)[];
  /** TCP RST (no TLS close_notify) right after the reply to the dot, or instead of the 221 to QUIT. */
  reset?: "after_data" | "on_quit";
  /** Accept connections and never greet. */
  tarpit?: boolean;
  /** Never accept: the kernel drops the SYNs (a full accept queue). */
  blackhole?: boolean;
}

/** One transaction the fake MX saw (DATA answered 354). */
export interface MxTransaction {
  conn: number;
  index: number;
  tls: boolean;
  mail_from: string;
  rcpts: string[];
  /** The bytes after the 354, the `.` CRLF terminator included. */
  data: Uint8Array;
  reply: string | null;
  dropped: boolean;
  /** Unix time (seconds) when the DATA ended. */
  t: number;
}

/** tests/fakes/fake_mx.py on one loopback address. */
export class FakeMx {
  readonly host: string;
  readonly port: number;
  #server: ReadyChild;
  #dir: string;

  private constructor(server: ReadyChild, dir: string, host: string, port: number) {
    this.#server = server;
    this.#dir = dir;
    this.host = host;
    this.port = port;
  }

  static async start(host: string, port: number, script: MxScript = {}): Promise<FakeMx> {
    const dir = await Deno.makeTempDir({ prefix: "minimta-mx-" });
    const cfg = { ...script, host, port, events: `${dir}/events.jsonl` };
    await Deno.writeTextFile(`${dir}/events.jsonl`, "");
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(cfg));
    const server = await ReadyChild.spawn(PYTHON, [`${FAKES}/fake_mx.py`, `${dir}/config.json`]);
    return new FakeMx(server, dir, host, port);
  }

  /** Every event so far (see fake_mx.py). */
  async events(): Promise<Record<string, unknown>[]> {
    const text = await Deno.readTextFile(`${this.#dir}/events.jsonl`);
    return text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
  }

  /** Transactions that reached the end of DATA (or were dropped in it). */
  async transactions(): Promise<MxTransaction[]> {
    return (await this.events()).filter((e) => e.event === "transaction").map((e) => ({
      ...(e as unknown as MxTransaction),
      data: Uint8Array.from(atob(e.data_b64 as string), (c) => c.charCodeAt(0)),
    }));
  }

  /** Transactions answered 2xx: messages the receiver accepted. */
  async accepted(): Promise<MxTransaction[]> {
    return (await this.transactions()).filter((t) => t.reply?.startsWith("2"));
  }

  /** Command lines received (CRLF removed), in order, with their connection number. */
  async commands(): Promise<{ conn: number; tls: boolean; line: string }[]> {
    return (await this.events()).filter((e) => e.event === "command") as unknown as {
      conn: number;
      tls: boolean;
      line: string;
    }[];
  }

  /** Number of TCP connections accepted so far. */
  async connections(): Promise<number> {
    return (await this.events()).filter((e) => e.event === "connect").length;
  }

  /** Every byte received on each closed connection, by connection number. */
  async rawStreams(): Promise<Map<number, Uint8Array>> {
    const out = new Map<number, Uint8Array>();
    for (const e of await this.events()) {
      if (e.event !== "close") continue;
      out.set(e.conn as number, Uint8Array.from(atob(e.raw_b64 as string), (c) => c.charCodeAt(0)));
    }
    return out;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#server.dispose();
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}

// ---------------------------------------------------------------- smtp-sink

/** Postfix's smtp-sink on one loopback address, dumping each message to a folder. */
export class SmtpSink {
  readonly dumpDir: string;
  #child: Deno.ChildProcess;
  #dir: string;

  private constructor(child: Deno.ChildProcess, dir: string) {
    this.#child = child;
    this.#dir = dir;
    this.dumpDir = `${dir}/dump`;
  }

  /** `smtp-sink FLAGS -d DIR HOST:PORT 10`; resolves once the port accepts connections. */
  static async start(host: string, port: number, flags: string[] = []): Promise<SmtpSink> {
    const dir = await Deno.makeTempDir({ prefix: "minimta-sink-" });
    await Deno.mkdir(`${dir}/dump`);
    // smtp-sink drops privileges to "nobody" when started as root; it must write the dumps.
    await Deno.chmod(dir, 0o755);
    await Deno.chmod(`${dir}/dump`, 0o777);
    const child = new Deno.Command("smtp-sink", {
      args: [
        ...(Deno.uid() === 0 ? ["-u", "nobody"] : []),
        ...flags,
        "-d",
        `${dir}/dump/%M.`,
        `${host}:${port}`,
        "10",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const sink = new SmtpSink(child, dir);
    const deadline = Date.now() + 5_000;
    while (true) {
      try {
        const conn = await Deno.connect({ hostname: host, port });
        conn.close();
        return sink;
      } catch {
        if (Date.now() > deadline) {
          await sink[Symbol.asyncDispose]();
          throw new Error(`smtp-sink did not listen on ${host}:${port}`);
        }
        await delay(50);
      }
    }
  }

  /** The dumped transactions (smtp-sink -d writes one file each, headers it adds included). */
  async messages(): Promise<string[]> {
    const out: string[] = [];
    for await (const e of Deno.readDir(this.dumpDir)) {
      if (e.isFile) out.push(text(await Deno.readFile(`${this.dumpDir}/${e.name}`)));
    }
    return out;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await this.#child.status;
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}
