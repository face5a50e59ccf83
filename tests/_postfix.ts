/**
 * A private, throw-away Postfix instance (the Debian package's binaries,
 * `postfix -c DIR`) for interop tests: its own config_directory,
 * queue_directory and data_directory under a temp folder, a non-chroot
 * master.cf with one smtpd on a chosen loopback address and port, and
 * logging to a file (`maillog_file`, served by postlogd) instead of syslog.
 * The distribution's own instance is never touched.
 *
 * Accepted mail is put on HOLD (`smtpd_data_restrictions = check_client_access
 * static:HOLD`): cleanup writes and fsyncs the queue file into `hold/`, smtpd
 * answers 250, and qmgr never delivers it. The test reads the stored message
 * with `postcat -bh -q ID` and the queue with `postqueue -j`.
 *
 * Must run as root (Postfix's master and `postfix start` insist on it).
 * Use with `await using`: the instance is stopped (`postfix -c DIR stop`,
 * then `abort` if the master lingers) and its folder removed.
 *
 * Pitfalls met while writing this (see also bench/submission.sh):
 * - `inet_interfaces` must name an address configured on an interface
 *   (127.0.0.1 is; 127.A.B.2 is not, although Linux lets one bind it):
 *   otherwise `postfix check` exits 1 with "no local interface found".
 *   The smtpd listens on 127.A.B.2 through its master.cf service name
 *   ("127.A.B.2:PORT inet …"), independent of `inet_interfaces`.
 * - Errors of the `postfix` command itself go to syslog (/dev/log), or to
 *   stderr only when stderr is a terminal; `maillog_file` serves only once
 *   postlogd runs. On failure this helper re-runs the command under
 *   `script(1)` so that the message reaches the test output.
 * - `smtpd_forbid_bare_newline_exclusions` defaults to `$mynetworks`, which
 *   would exempt a loopback client: it is emptied here.
 * - Postfix stores a bare CR inside a line as a space, so "no bare CR" must
 *   be checked through the line structure, not by looking for "\r".
 */
import { delay, run } from "./_harness.ts";

/**
 * Bytes → a string of one char per byte (true ISO-8859-1). Not
 * `new TextDecoder("latin1")`: WHATWG maps that label to windows-1252, which
 * turns 0x80–0x9F into other code points (0x80 → "€").
 */
export function bytesToLatin1(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    out += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return out;
}

/** The inverse of {@linkcode bytesToLatin1}; throws on a char above U+00FF. */
export function latin1ToBytes(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => {
    const code = c.charCodeAt(0);
    if (code > 0xff) throw new Error(`Not a latin-1 char: U+${code.toString(16)}`);
    return code;
  });
}

/** The Postfix programs (and privilege) a {@linkcode Postfix} instance needs. */
export const POSTFIX_TOOLS = ["root:", "postfix", "postconf", "postcat", "postqueue"];

/** Options of {@linkcode Postfix.start}. */
export interface PostfixOptions {
  /** The address smtpd listens on (any 127.0.0.0/8 address). */
  host: string;
  port: number;
  /** Domains accepted as relay destinations (then held). @default ["dest.test"] */
  domains?: string[];
  /** More main.cf settings ("name = value"), applied last. */
  mainCf?: string[];
}

/** One message in the queue, as `postqueue -j` prints it. */
export interface PostfixQueueEntry {
  queue_name: string;
  queue_id: string;
  arrival_time: number;
  message_size: number;
  sender: string;
  recipients: { address: string; delay_reason?: string }[];
}

const MASTER_CF = (listen: string) =>
  `# service type  private unpriv  chroot  wakeup  maxproc command
${listen} inet n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`;

/** A private Postfix instance acting as a strict receiving MX. */
export class Postfix {
  readonly dir: string;
  readonly etc: string;
  readonly queueDir: string;
  readonly maillogPath: string;
  readonly host: string;
  readonly port: number;
  #masterPid: number | null = null;
  #stopped = false;

  private constructor(dir: string, host: string, port: number) {
    this.dir = dir;
    this.etc = `${dir}/etc`;
    this.queueDir = `${dir}/queue`;
    this.maillogPath = `${dir}/maillog`;
    this.host = host;
    this.port = port;
  }

  /**
   * Writes main.cf/master.cf, runs `postfix check` and `postfix start`, and
   * waits until the master runs and the smtpd port accepts connections.
   */
  static async start(options: PostfixOptions): Promise<Postfix> {
    const dir = await Deno.makeTempDir({ prefix: "minimta-postfix-" });
    // Postfix daemons run as user postfix and must traverse the folder.
    await Deno.chmod(dir, 0o755);
    const pf = new Postfix(dir, options.host, options.port);
    try {
      await pf.#configure(options);
      await pf.#postfix(["check"]);
      await pf.#postfix(["start"]);
      await pf.#waitReady();
      return pf;
    } catch (error) {
      await pf[Symbol.asyncDispose]();
      throw error;
    }
  }

  async #configure(options: PostfixOptions): Promise<void> {
    await Deno.mkdir(this.etc);
    await Deno.mkdir(this.queueDir);
    await Deno.mkdir(`${this.dir}/data`);
    await run("chown", ["postfix", `${this.dir}/data`]);
    await Deno.writeTextFile(`${this.etc}/main.cf`, "");
    await Deno.writeTextFile(
      `${this.etc}/master.cf`,
      MASTER_CF(`${options.host}:${options.port}`),
    );
    const domains = (options.domains ?? ["dest.test"]).join(", ");
    const settings = [
      // Logging first, so that everything after goes to our file, not syslog.
      `maillog_file = ${this.maillogPath}`,
      `maillog_file_prefixes = ${this.dir}`,
      `syslog_name = postfix-minimta-test`,
      "compatibility_level = 3.6",
      `queue_directory = ${this.queueDir}`,
      `data_directory = ${this.dir}/data`,
      "mail_owner = postfix",
      "setgid_group = postdrop",
      "myhostname = mx1.dest.test",
      "mydomain = dest.test",
      "myorigin = dest.test",
      "mydestination =",
      "local_recipient_maps =",
      "alias_maps =",
      "alias_database =",
      "relayhost =",
      `relay_domains = ${domains}`,
      "relay_recipient_maps =",
      // Must be an address of an interface; smtpd's own address is in master.cf.
      "inet_interfaces = 127.0.0.1",
      "inet_protocols = ipv4",
      // Nobody is trusted: minimta is an ordinary remote client here.
      "mynetworks = 192.0.2.255/32",
      "smtpd_relay_restrictions = reject_unauth_destination",
      "smtpd_recipient_restrictions =",
      "smtpd_peername_lookup = no",
      "biff = no",
      // The strict part (postconf(5); Postfix 3.7.11 has it as a backport).
      "smtpd_forbid_bare_newline = reject",
      "smtpd_forbid_bare_newline_exclusions =",
      // Keep every accepted message in hold/, unchanged but for Received:.
      "smtpd_data_restrictions = check_client_access static:HOLD",
      "local_header_rewrite_clients =",
      "always_add_missing_headers = no",
      ...(options.mainCf ?? []),
    ];
    const r = await run("postconf", ["-c", this.etc, "-e", ...settings]);
    if (r.code !== 0) throw new Error(`postconf -e failed (${r.code}): ${r.stderr}`);
  }

  /** `postfix -c ETC ARGS`; on failure, the error message as Postfix would print it on a tty. */
  async #postfix(args: string[]): Promise<void> {
    const r = await run("postfix", ["-c", this.etc, ...args]);
    if (r.code === 0) return;
    let tty = "";
    const cmd = ["postfix", "-c", this.etc, ...args].join(" ");
    const s = await run("script", ["-qec", cmd, "/dev/null"]).catch(() => null);
    if (s) tty = s.stdout + s.stderr;
    throw new Error(
      `postfix ${args.join(" ")} exited ${r.code}\n${r.stdout}${r.stderr}` +
        `\nre-run on a tty: ${tty.trim() || "(nothing)"}\nmaillog:\n${await this.maillog()}`,
    );
  }

  async #waitReady(): Promise<void> {
    const deadline = Date.now() + 15_000;
    while (true) {
      try {
        const pid = Number((await Deno.readTextFile(`${this.queueDir}/pid/master.pid`)).trim());
        if (pid > 0) {
          this.#masterPid = pid;
          const conn = await Deno.connect({ hostname: this.host, port: this.port });
          conn.close();
          return;
        }
      } catch {
        // Not yet.
      }
      if (Date.now() > deadline) {
        throw new Error(
          `Postfix did not listen on ${this.host}:${this.port}\nmaillog:\n${await this.maillog()}`,
        );
      }
      await delay(100);
    }
  }

  /** Postfix's log so far (`maillog_file`). */
  async maillog(): Promise<string> {
    try {
      return await Deno.readTextFile(this.maillogPath);
    } catch {
      return "";
    }
  }

  /** Every message in the queue (`postqueue -j`), whatever queue it is in. */
  async queue(): Promise<PostfixQueueEntry[]> {
    const r = await run("postqueue", ["-c", this.etc, "-j"]);
    if (r.code !== 0) throw new Error(`postqueue -j failed (${r.code}): ${r.stderr}`);
    return r.stdout.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
  }

  /** Names of the queue files in one queue folder (`hold`, `incoming`, `active`, `deferred`…). */
  async queueFiles(queue: string): Promise<string[]> {
    const out: string[] = [];
    const walk = async (path: string) => {
      for await (const e of Deno.readDir(path)) {
        if (e.isDirectory) await walk(`${path}/${e.name}`);
        else out.push(e.name);
      }
    };
    try {
      await walk(`${this.queueDir}/${queue}`);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    return out.sort();
  }

  /**
   * The stored message (header and body, Postfix's Received: included) as
   * `postcat -bh` prints it: one record per line, each ended by LF; a record
   * never contains a line break.
   */
  async messageText(queueId: string): Promise<string> {
    const out = await new Deno.Command("postcat", {
      args: ["-c", this.etc, "-bh", "-q", queueId],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(`postcat -q ${queueId} failed: ${new TextDecoder().decode(out.stderr)}`);
    }
    return bytesToLatin1(out.stdout);
  }

  /** The stored message with CRLF line ends (what a DKIM verifier expects), as bytes. */
  async messageBytes(queueId: string): Promise<Uint8Array> {
    return latin1ToBytes((await this.messageText(queueId)).replace(/\n/g, "\r\n"));
  }

  /** Stops the instance: `postfix stop`, then `postfix abort` if the master is still there. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await run("postfix", ["-c", this.etc, "stop"]).catch(() => null);
    const pid = this.#masterPid;
    if (pid === null) return;
    const deadline = Date.now() + 10_000;
    while (alive(pid)) {
      if (Date.now() > deadline) {
        await run("postfix", ["-c", this.etc, "abort"]).catch(() => null);
        break;
      }
      await delay(100);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.stop();
    } finally {
      if (Deno.env.get("MINIMTA_KEEP_TEST_DIRS") !== "1") {
        await Deno.remove(this.dir, { recursive: true }).catch(() => {});
      }
    }
  }
}

/** True while process `pid` exists (a zombie counts as gone). */
function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^\d+ \(.*\) Z /.test(stat);
  } catch {
    return false;
  }
}

/**
 * Splits `postcat -bh` text into Postfix's Received: header (the first
 * header and its continuation lines) and the lines after it. The final LF
 * does not make an extra empty line.
 */
export function splitReceived(text: string): { received: string; rest: string[] } {
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  if (!lines[0]?.startsWith("Received:")) return { received: "", rest: lines };
  let i = 1;
  while (i < lines.length && /^[ \t]/.test(lines[i])) i++;
  return { received: lines.slice(0, i).join("\n"), rest: lines.slice(i) };
}

/**
 * Sends one message straight to an SMTP server with the given raw DATA
 * bytes (terminator included) and returns the reply to the end of DATA —
 * used to prove that the receiver really refuses bare LF.
 */
export async function rawTransaction(
  host: string,
  port: number,
  envelope: { from: string; to: string },
  data: Uint8Array,
): Promise<string> {
  const conn = await Deno.connect({ hostname: host, port });
  const enc = new TextEncoder();
  let buf = "";
  const reply = async (): Promise<string> => {
    const chunk = new Uint8Array(8192);
    const deadline = Date.now() + 10_000;
    while (true) {
      const m = /(^|\n)(\d{3}) [^\n]*\n/.exec(buf);
      if (m) {
        const end = m.index + m[0].length;
        const out = buf.slice(0, end);
        buf = buf.slice(end);
        return out;
      }
      if (Date.now() > deadline) throw new Error(`no reply; have ${JSON.stringify(buf)}`);
      const n = await conn.read(chunk);
      if (n === null) throw new Error(`connection closed; have ${JSON.stringify(buf)}`);
      buf += bytesToLatin1(chunk.subarray(0, n));
    }
  };
  const send = async (bytes: Uint8Array) => {
    let off = 0;
    while (off < bytes.length) off += await conn.write(bytes.subarray(off));
  };
  try {
    await reply();
    for (
      const line of [
        "EHLO probe.test",
        `MAIL FROM:<${envelope.from}>`,
        `RCPT TO:<${envelope.to}>`,
        "DATA",
      ]
    ) {
      await send(enc.encode(`${line}\r\n`));
      const r = await reply();
      if (!/^(2|3)/.test(r)) throw new Error(`${line}: ${r}`);
    }
    await send(data);
    const end = await reply();
    await send(enc.encode("QUIT\r\n")).catch(() => {});
    return end.trim();
  } finally {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}
