/**
 * Delivery-test helpers: the fake DNS (tests/fakes/fake_dns.py), scripted
 * fake MXs (tests/fakes/fake_mx.py), Postfix's smtp-sink, submission of a
 * message through the real intake, spool fixtures, and readers for what the
 * receivers captured. Every server runs as a child process and is stopped
 * by `await using`.
 */
import { Buffer } from "node:buffer";
import { ALICE, freePorts, type Mta, PYTHON, queuedId, ROOT, run } from "./_harness.ts";
import { Spool } from "../src/spool/mod.ts";

/** Where the Python fakes live. */
export const FAKES = `${ROOT}/tests/fakes`;

const decoder = new TextDecoder();
// ISO-8859-1, one char per byte (TextDecoder("latin1") is windows-1252,
// which would change 0x80–0x9F).
const latin1 = {
  decode: (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("latin1"),
};

/** Waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `probe` every 100 ms until it returns something other than
 * `undefined`, `null` or `false`; throws with `what` and the last value after
 * `timeoutMs`.
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  timeoutMs = 15_000,
  describe?: () => string | Promise<string>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const value = await probe();
    if (value !== undefined && value !== null && value !== false) return value as T;
    if (Date.now() > deadline) {
      const extra = describe ? `\n${await describe()}` : "";
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}${extra}`);
    }
    await sleep(100);
  }
}

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

// ---------------------------------------------------------------- child processes

/** A child process that printed `READY …` on stdout; killed and reaped on dispose. */
class Server {
  readonly child: Deno.ChildProcess;
  #stderr = "";
  #pumps: Promise<void>[];

  private constructor(child: Deno.ChildProcess, stdout: ReadableStreamDefaultReader<Uint8Array>) {
    this.child = child;
    this.#pumps = [
      (async () => {
        // Nothing more is printed; keep reading so the pipe never fills.
        while (!(await stdout.read()).done) { /* drain */ }
      })(),
      (async () => {
        for await (const c of child.stderr) this.#stderr += decoder.decode(c);
      })(),
    ];
  }

  static async spawn(cmd: string, args: string[], timeoutMs = 10_000): Promise<Server> {
    const child = new Deno.Command(cmd, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const reader = child.stdout.getReader();
    let out = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    try {
      while (!out.includes("READY")) {
        const { value, done } = await reader.read();
        if (done) break;
        out += decoder.decode(value);
      }
    } finally {
      clearTimeout(timer);
    }
    const server = new Server(child, reader);
    if (!out.includes("READY")) {
      await server.dispose();
      throw new Error(`${cmd} ${args.join(" ")} did not start:\n${out}\n${server.stderr}`);
    }
    return server;
  }

  get stderr(): string {
    return this.#stderr;
  }

  async dispose(): Promise<void> {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await this.child.status;
    await Promise.all(this.#pumps);
  }
}

// ---------------------------------------------------------------- fake DNS

/** A zone for fake_dns.py: name → behaviour (see its header). */
export type Zone = Record<string, Record<string, unknown>>;

/** tests/fakes/fake_dns.py on 127.0.0.1 with a zone the test can change. */
export class FakeDns {
  readonly port: number;
  readonly zonePath: string;
  #server: Server;
  #dir: string;

  private constructor(server: Server, dir: string, port: number) {
    this.#server = server;
    this.#dir = dir;
    this.zonePath = `${dir}/zone.json`;
    this.port = port;
  }

  static async start(zone: Zone): Promise<FakeDns> {
    const dir = await Deno.makeTempDir({ prefix: "minimta-dns-" });
    await Deno.writeTextFile(`${dir}/zone.json`, JSON.stringify(zone));
    for (let tries = 0;; tries++) {
      const [port] = freePorts(1);
      try {
        const server = await Server.spawn(PYTHON, [
          `${FAKES}/fake_dns.py`,
          "--listen",
          "127.0.0.1",
          "--port",
          String(port),
          "--zone",
          `${dir}/zone.json`,
        ]);
        return new FakeDns(server, dir, port);
      } catch (error) {
        if (tries >= 3) throw error;
      }
    }
  }

  /** `"127.0.0.1:PORT"`, for `delivery.dns_servers`. */
  get server(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Replaces the zone (the server reloads it on its next query). */
  async setZone(zone: Zone): Promise<void> {
    const tmp = `${this.#dir}/zone.json.tmp`;
    await Deno.writeTextFile(tmp, JSON.stringify(zone));
    await Deno.rename(tmp, this.zonePath);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#server.dispose();
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}

/** A zone entry: `domain` has one MX, `mxName`, at `ip`. */
export function mxZone(domain: string, mxName: string, ip: string): Zone {
  return { [domain]: { MX: [[10, mxName]] }, [mxName]: { A: [ip] } };
}

// ---------------------------------------------------------------- fake MX

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
  #server: Server;
  #dir: string;

  private constructor(server: Server, dir: string, host: string, port: number) {
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
    const server = await Server.spawn(PYTHON, [`${FAKES}/fake_mx.py`, `${dir}/config.json`]);
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
        await sleep(50);
      }
    }
  }

  /** The dumped transactions (smtp-sink -d writes one file each, headers it adds included). */
  async messages(): Promise<string[]> {
    const out: string[] = [];
    for await (const e of Deno.readDir(this.dumpDir)) {
      if (e.isFile) out.push(latin1.decode(await Deno.readFile(`${this.dumpDir}/${e.name}`)));
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

// ---------------------------------------------------------------- the daemon side

/** Options of {@linkcode deliveryConfig}. */
export interface DeliveryConfigOptions {
  dns: FakeDns;
  port: number;
  [key: string]: unknown;
}

/**
 * A `delivery` config section for tests: the fake DNS, the fake MX port,
 * loopback allowed, a 1 s retry schedule and short timeouts. Other keys
 * are passed through (e.g. `tls`, `max_queue_lifetime`).
 */
export function deliveryConfig(options: DeliveryConfigOptions): Record<string, unknown> {
  const { dns, ...rest } = options;
  return {
    dns_servers: [dns.server],
    allow_loopback: true,
    retry_schedule: ["1s"],
    max_queue_lifetime: "1h",
    connect_timeout: "2s",
    command_timeout: "5s",
    data_timeout: "10s",
    ...rest,
  };
}

/** A message to submit through the intake. */
export interface Submission {
  from?: string;
  to: string[];
  /** Header lines (CRLF-free); From/To/Subject defaults are added when absent. */
  headers?: string[];
  body?: string;
}

/** Submits one message over STARTTLS + AUTH as alice and returns its queue id. */
export async function submit(mta: Mta, msg: Submission): Promise<string> {
  const from = msg.from ?? ALICE.user;
  const smtp = await mta.authed();
  try {
    await smtp.cmd(`MAIL FROM:<${from}>`, 250);
    for (const to of msg.to) await smtp.cmd(`RCPT TO:<${to}>`, 250);
    await smtp.cmd("DATA", 354);
    const headers = msg.headers ?? [];
    const has = (name: string) => headers.some((h) => h.toLowerCase().startsWith(`${name}:`));
    if (!has("from")) headers.unshift(`From: Alice <${from}>`);
    if (!has("to")) headers.push(`To: ${msg.to.join(", ")}`);
    if (!has("subject")) headers.push(`Subject: delivery test ${crypto.randomUUID()}`);
    const body = msg.body ?? "Hello from the delivery tests.\r\nSecond line.\r\n";
    const ending = body.endsWith("\r\n") ? "" : "\r\n";
    await smtp.write(`${headers.join("\r\n")}\r\n\r\n${body}${ending}.\r\n`);
    const reply = await smtp.expect(250);
    await smtp.cmd("QUIT");
    return queuedId(reply.raw);
  } finally {
    smtp.close();
  }
}

/** The `delivery` mail-log events (one per recipient and attempt), optionally of one message. */
export function deliveryEvents(mta: Mta, queueId?: string): Record<string, unknown>[] {
  return mta.logs().filter((e) =>
    e.event === "delivery" && (queueId === undefined || e.queue_id === queueId)
  );
}

/** Mail-log events named `event`. */
export function mailEvents(mta: Mta, event: string): Record<string, unknown>[] {
  return mta.logs().filter((e) => e.event === event);
}

/** True once the message has left the spool (its metadata file is gone). */
export async function isGone(mta: Mta, id: string): Promise<boolean> {
  try {
    await Deno.stat(mta.metaPath(id));
    return false;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return true;
    throw error;
  }
}

/**
 * Writes a message straight into a spool (the daemon must not be running):
 * simulates legacy or corrupt content that bypassed the intake's rules.
 */
export async function spoolFixture(
  spoolDir: string,
  body: Uint8Array,
  envelope: { from: string; recipients: string[] },
): Promise<string> {
  const spool = await Spool.open(spoolDir);
  const meta = await spool.create([body], {
    from: envelope.from,
    recipients: envelope.recipients,
    message_id: null,
    auth_user: null,
    client_ip: null,
    is_bounce: false,
    smtputf8: false,
    eight_bit: false,
  });
  spool.close();
  return meta.id;
}

// ---------------------------------------------------------------- reading what arrived

/** The message inside DATA bytes as received: terminator removed, dot-stuffing undone. */
export function unstuff(data: Uint8Array): Uint8Array {
  const text = latin1.decode(data);
  if (!text.endsWith(".\r\n")) throw new Error("DATA does not end with .CRLF");
  const lines = text.slice(0, -3).split("\r\n");
  const out = lines.map((l) => (l.startsWith(".") ? l.slice(1) : l)).join("\r\n");
  return Uint8Array.from(out, (c) => c.charCodeAt(0));
}

/** A MIME part as the Python email parser sees it (see {@linkcode parseMime}). */
export interface MimePart {
  content_type: string;
  params: Record<string, string>;
  headers: [string, string][];
  /** Text of a non-multipart part (decoded as latin-1). */
  text: string | null;
  /** Sub-parts of a multipart, or the header blocks of message/delivery-status. */
  parts: MimePart[];
}

const PARSE_MIME = `
import email, email.policy, json, sys
msg = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.compat32)
def walk(m):
    if isinstance(m, list):
        return [walk(x) for x in m]
    out = {"content_type": m.get_content_type(),
           "params": {k.lower(): v for k, v in (m.get_params() or [])[1:]},
           "headers": [[k, str(v)] for k, v in m.items()], "text": None, "parts": []}
    payload = m.get_payload()
    if isinstance(payload, list):
        out["parts"] = [walk(p) for p in payload]
    else:
        out["text"] = payload
    return out
print(json.dumps(walk(msg)))
`;

/** Parses a message with Python's `email` package (an independent MIME parser). */
export async function parseMime(bytes: Uint8Array): Promise<MimePart> {
  const r = await run(PYTHON, ["-c", PARSE_MIME], { stdin: bytes });
  if (r.code !== 0) throw new Error(`python email parser failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** The value of header `name` (case-insensitive) of a parsed part, or undefined. */
export function header(part: MimePart, name: string): string | undefined {
  return part.headers.find(([k]) => k.toLowerCase() === name.toLowerCase())?.[1];
}

/** Runs tests/fakes/dkim_verify.py on `bytes` with the TXT records of `mta`'s keys. */
export async function dkimVerify(
  mta: Mta,
  bytes: Uint8Array,
): Promise<{ code: number; results: Record<string, unknown>[]; stderr: string }> {
  const txt = mta.dkim.flatMap((
    d,
  ) => ["--txt", `${d.selector}._domainkey.${d.domain}=${d.dnsTxt}`]);
  const r = await run(PYTHON, [`${FAKES}/dkim_verify.py`, "-", ...txt], { stdin: bytes });
  const results = r.stdout.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
  return { code: r.code, results, stderr: r.stderr };
}

// ---------------------------------------------------------------- certificates

/** A test CA and a leaf certificate it signed for `hostName`, plus a self-signed one. */
export interface TestCerts {
  caCert: string;
  leafCert: string;
  leafKey: string;
  selfCert: string;
  selfKey: string;
}

/** Makes a CA, a leaf for `hostName` signed by it, and a self-signed cert, with openssl. */
export async function makeCerts(dir: string, hostName: string): Promise<TestCerts> {
  const o = (args: string[]) =>
    run("openssl", args).then((r) => {
      if (r.code !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr}`);
    });
  const p = (name: string) => `${dir}/${name}`;
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await o([
    "req",
    "-x509",
    ...ec,
    "-keyout",
    p("ca.key"),
    "-out",
    p("ca.pem"),
    "-days",
    "2",
    "-subj",
    "/CN=minimta test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  await o([
    "req",
    ...ec,
    "-keyout",
    p("leaf.key"),
    "-out",
    p("leaf.csr"),
    "-subj",
    `/CN=${hostName}`,
  ]);
  await Deno.writeTextFile(
    p("leaf.ext"),
    `subjectAltName=DNS:${hostName}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`,
  );
  await o([
    "x509",
    "-req",
    "-in",
    p("leaf.csr"),
    "-CA",
    p("ca.pem"),
    "-CAkey",
    p("ca.key"),
    "-CAcreateserial",
    "-out",
    p("leaf.pem"),
    "-days",
    "2",
    "-extfile",
    p("leaf.ext"),
  ]);
  await o([
    "req",
    "-x509",
    ...ec,
    "-keyout",
    p("self.key"),
    "-out",
    p("self.pem"),
    "-days",
    "2",
    "-subj",
    `/CN=${hostName}`,
    "-addext",
    `subjectAltName=DNS:${hostName}`,
  ]);
  return {
    caCert: p("ca.pem"),
    leafCert: p("leaf.pem"),
    leafKey: p("leaf.key"),
    selfCert: p("self.pem"),
    selfKey: p("self.key"),
  };
}

/** Offsets of CR not in CRLF and LF not in CRLF. */
export function bareCrLf(bytes: Uint8Array): number[] {
  const bad: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === 0x0d && bytes[i + 1] !== 0x0a) bad.push(i);
    if (bytes[i] === 0x0a && bytes[i - 1] !== 0x0d) bad.push(i);
  }
  return bad;
}

/** Latin-1 text of bytes (one char per byte), for readable assertions. */
export function text(bytes: Uint8Array): string {
  return latin1.decode(bytes);
}
