/**
 * Integration harness: runs the real minimta daemon as a child process, with
 * exactly the permission flags of `deno task start`, against a throw-away
 * folder (config, self-signed certificate, users, DKIM keys, spool).
 *
 * Delivery is pointed at a DNS server that does not exist
 * (`127.0.0.1:9`), so any delivery attempt fails temporarily and nothing
 * leaves the machine: queued messages may be `pending` or `deferred`.
 */
import { writeSelfSignedCertificate } from "../src/cli/first_start.ts";
import { hashPassword } from "../src/auth/mod.ts";
import { generateDkimKey } from "../src/dkim/mod.ts";
import { Spool } from "../src/spool/mod.ts";

import { SmtpDriver } from "./_smtp_driver.ts";

export { SmtpDriver, type SmtpReply } from "./_smtp_driver.ts";

/** The project root (where deno.json and main.ts live), without a trailing slash. */
export const ROOT: string = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
/** CI sets this: a missing interop tool is a failure, not a skip. */
export const REQUIRE_INTEROP: boolean = Deno.env.get("MINIMTA_REQUIRE_INTEROP") === "1";
/** The Debian system Python (TESTPLAN §5: not another interpreter earlier on PATH). */
export const PYTHON = "/usr/bin/python3";
/** Where the Python fakes live. */
export const FAKES = `${ROOT}/tests/fakes`;

/** Test users: alice may send as any @ours.test (the default policy), carol only as herself. */
export const ALICE = { user: "alice@ours.test", pass: "alice-Secret-9f3k" };
/** A user restricted to her own address by `allowed_senders`. */
export const CAROL = { user: "carol@ours.test", pass: "carol-Secret-2x7q" };

const decoder = new TextDecoder();

// ---------------------------------------------------------------- the command line

/**
 * The `deno` arguments of the `start` task in deno.json, split into the
 * permission flags (starting with `run`) and what follows `main.ts`: the
 * one source of truth for how the daemon (and the compiled binary) runs.
 */
export function startTask(): { runFlags: string[]; command: string[] } {
  const json = JSON.parse(Deno.readTextFileSync(`${ROOT}/deno.json`));
  const tokens = String(json.tasks.start).trim().split(/\s+/);
  const main = tokens.indexOf("main.ts");
  if (tokens[0] !== "deno" || tokens[1] !== "run" || main < 0) {
    throw new Error(`Cannot parse the start task of deno.json: ${json.tasks.start}`);
  }
  return { runFlags: tokens.slice(1, main), command: tokens.slice(main + 1) };
}

/** `deno run <start-task flags> main.ts ARGS`, as argv for `Deno.Command(Deno.execPath())`. */
export function minimtaArgs(args: string[]): string[] {
  return [...startTask().runFlags, `${ROOT}/main.ts`, ...args];
}

/** Output of one finished minimta CLI run. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `minimta ARGS` (with the start task's permissions) to completion, or
 * kills it after `timeoutMs` (e.g. a `serve` that should have refused to start).
 */
export async function runMinimta(
  args: string[],
  options: { timeoutMs?: number } = {},
): Promise<CliResult> {
  const child = new Deno.Command(Deno.execPath(), {
    args: minimtaArgs(args),
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const timer = options.timeoutMs === undefined
    ? undefined
    : setTimeout(() => child.kill("SIGKILL"), options.timeoutMs);
  try {
    const out = await child.output();
    return {
      code: out.code,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

/** Runs any program to completion, optionally with stdin. */
export async function run(
  cmd: string,
  args: string[],
  options: { stdin?: string | Uint8Array; cwd?: string; env?: Record<string, string> } = {},
): Promise<CliResult> {
  const child = new Deno.Command(cmd, {
    args,
    cwd: options.cwd,
    env: options.env,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(
      typeof options.stdin === "string" ? new TextEncoder().encode(options.stdin) : options.stdin,
    );
    await writer.close();
  }
  const out = await child.output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

// ---------------------------------------------------------------- outside tools

const toolCache = new Map<string, boolean>();
const reported = new Set<string>();

/** Where a tool's name stops and its module begins: `python3:dkim`, `perl:Net::SSLeay`. */
function splitTool(tool: string): [kind: string, name: string] {
  const colon = tool.indexOf(":");
  if (colon < 0 || tool.startsWith("/")) return ["bin", tool];
  return [tool.slice(0, colon), tool.slice(colon + 1)];
}

function probe(tool: string): boolean {
  const [kind, name] = splitTool(tool);
  const quiet = { stdout: "null", stderr: "null" } as const;
  try {
    if (kind === "python3") {
      return new Deno.Command(PYTHON, { args: ["-c", `import ${name}`], ...quiet })
        .outputSync().success;
    }
    if (kind === "perl") {
      return new Deno.Command("perl", { args: [`-M${name}`, "-e", "1"], ...quiet })
        .outputSync().success;
    }
    if (kind === "root") return Deno.uid() === 0;
    return new Deno.Command("sh", { args: ["-c", `command -v ${name}`], ...quiet })
      .outputSync().success;
  } catch {
    return false;
  }
}

/** One row of `.ci/tools.txt`: a tool the tests use and the Debian package that provides it. */
export interface ToolRow {
  tool: string;
  /** `-` for `root:`, which no package provides. */
  package: string;
}

/** The path of the list of outside tools, the one source CI installs from. */
export const TOOLS_FILE = `${ROOT}/.ci/tools.txt`;

/** Reads `.ci/tools.txt`: `tool package comment…` a line, `#` comments. */
export function readToolList(text: string = Deno.readTextFileSync(TOOLS_FILE)): ToolRow[] {
  return text.split("\n")
    .map((line) => line.replace(/#.*/, "").trim())
    .filter((line) => line !== "")
    .map((line) => {
      const [tool, pkg] = line.split(/\s+/);
      return { tool, package: pkg ?? "" };
    });
}

let listed: Set<string> | null = null;

/** Names a tool that `.ci/tools.txt` does not list: CI would not install it. */
function unlisted(tool: string): boolean {
  listed ??= new Set(readToolList().map((row) => row.tool));
  return !listed.has(tool);
}

/** True when `tool` is usable: a program on PATH, `python3:module`, `perl:Module`, or `root:` (running as root). */
export function hasTool(tool: string): boolean {
  if (!toolCache.has(tool)) toolCache.set(tool, probe(tool));
  return toolCache.get(tool)!;
}

/**
 * Use as `Deno.test({ ignore: requireTool("swaks"), … })`. Returns false
 * when every tool is there. When one is missing it warns loudly and returns
 * true (the test is ignored) — unless `MINIMTA_REQUIRE_INTEROP=1`, where it
 * registers a failing test named after the tool instead, so CI goes red.
 * A tool that `.ci/tools.txt` does not list is a failing test wherever it
 * runs: CI installs only what that file names.
 */
export function requireTool(...tools: string[]): boolean {
  for (const tool of tools.filter(unlisted)) {
    if (reported.has(`unlisted ${tool}`)) continue;
    reported.add(`unlisted ${tool}`);
    Deno.test(`outside tool "${tool}" is listed in .ci/tools.txt`, () => {
      throw new Error(
        `"${tool}" is used by a test but not listed in .ci/tools.txt: CI will not install it`,
      );
    });
  }
  const missing = tools.filter((t) => !hasTool(t));
  if (missing.length === 0) return false;
  for (const tool of missing) {
    if (reported.has(tool)) continue;
    reported.add(tool);
    const what = tool === "root:" ? "root privileges" : `"${tool}"`;
    if (REQUIRE_INTEROP) {
      Deno.test(`interop prerequisite ${what} is available`, () => {
        throw new Error(`${what} is missing and MINIMTA_REQUIRE_INTEROP=1`);
      });
    } else {
      // deno-lint-ignore no-console
      console.error(
        `\n!!! SKIPPING tests that need ${what}: not available here. ` +
          `Set MINIMTA_REQUIRE_INTEROP=1 to make this a failure.\n`,
      );
    }
  }
  return true;
}

// ---------------------------------------------------------------- fixtures

/** A users-file record for a test account (scrypt-hashed password, active); `extra` adds fields. */
export async function userRecord(
  account: { user: string; pass: string },
  extra: Record<string, unknown> = {},
): Promise<Record<string, unknown>> {
  return {
    username: account.user,
    password: await hashPassword(account.pass),
    email: account.user,
    active: true,
    ...extra,
  };
}

/** The users every test daemon has: ALICE, and CAROL who may send only as herself. */
export async function testUsers(): Promise<Record<string, unknown>[]> {
  return [await userRecord(ALICE), await userRecord(CAROL, { allowed_senders: [CAROL.user] })];
}

interface Fixtures {
  certPem: string;
  keyPem: string;
  usersJson: string;
}

let fixtures: Promise<Fixtures> | null = null;

// One certificate and one users file per test process: RSA key generation
// and scrypt hashing are the slow parts of a start.
function sharedFixtures(): Promise<Fixtures> {
  fixtures ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "minimta-fixtures-" });
    try {
      await writeSelfSignedCertificate(`${dir}/cert.pem`, `${dir}/key.pem`, "localhost");
      const users = await testUsers();
      return {
        certPem: await Deno.readTextFile(`${dir}/cert.pem`),
        keyPem: await Deno.readTextFile(`${dir}/key.pem`),
        usersJson: JSON.stringify(users, null, 2),
      };
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  })();
  return fixtures;
}

/** Two loopback ports that were free a moment ago. */
export function freePorts(count: number): number[] {
  const listeners = Array.from(
    { length: count },
    () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
  );
  const ports = listeners.map((l) => (l.addr as Deno.NetAddr).port);
  for (const l of listeners) l.close();
  return ports;
}

/** DKIM keys written for a test and the TXT records to hand the verifier. */
export interface DkimFixture {
  domain: string;
  selector: string;
  algorithm: "rsa" | "ed25519";
  dnsTxt: string;
}

/** Options of {@linkcode Mta.start}. */
export interface MtaOptions {
  /** Config sections merged over the harness base (one level deep per section). */
  config?: Record<string, Record<string, unknown>>;
  /** DKIM keys to generate for ours.test. @default [] */
  dkim?: ("rsa" | "ed25519")[];
  /** Put the spool here instead of `<dir>/spool` (e.g. a tmpfs). */
  spoolDir?: string;
  /** Prepare files only; do not start the daemon. @default false */
  noStart?: boolean;
  /**
   * V8 flags for the daemon (`deno run --v8-flags=…`), e.g. a heap limit
   * that keeps full collections frequent in a leak test. @default []
   */
  v8Flags?: string[];
  /**
   * Run the daemon as this unprivileged user (needs root and setpriv), as
   * the unit runs it as `minimta`: the folder (config, keys, users, spool)
   * becomes the user's, with a copy of the Deno cache the user can read.
   * CLI runs through the harness stay root's.
   */
  runAs?: { uid: number; gid: number };
  /** Extra environment for the daemon, e.g. `MINIMTA_TEST_HOOKS: "1"`. @default {} */
  env?: Record<string, string>;
}

/** The harness base config; tests override sections. */
export function baseConfig(
  dir: string,
  ports: number[],
  spoolDir: string,
): Record<string, Record<string, unknown> | unknown[]> {
  return {
    server: {
      hostname: "mx.ours.test",
      listen_addr: `127.0.0.1:${ports[0]}`,
      listen_tls_addr: `127.0.0.1:${ports[1]}`,
      local_socket: `${dir}/submit.sock`,
    },
    tls: { cert_file: `${dir}/cert.pem`, key_file: `${dir}/key.pem` },
    auth: { users_file: `${dir}/users.json`, failure_delay: "50ms", max_failures_per_ip: 1000 },
    queue: { dir: spoolDir },
    delivery: { dns_servers: ["127.0.0.1:9"], retry_schedule: ["1h"] },
    log: { format: "json", level: "debug" },
  };
}

/** A queue entry as `minimta queue list --json` prints it. */
export interface QueueEntry {
  id: string;
  from: string;
  state: string;
  created_at: string;
  next_attempt_at: string;
  size: number;
  recipients: { address: string; status: string; attempts: number; last_error: string | null }[];
  [key: string]: unknown;
}

// ---------------------------------------------------------------- the daemon

/**
 * One minimta daemon in its own temp folder. Use with `await using`, so it
 * is stopped and its folder removed whatever happens.
 */
export class Mta {
  readonly dir: string;
  readonly configPath: string;
  readonly spoolDir: string;
  readonly certPem: string;
  /** STARTTLS submission port and implicit-TLS port. */
  readonly port: number;
  readonly tlsPort: number;
  readonly dkim: DkimFixture[];
  readonly #v8Flags: string[];
  readonly #runAs: { uid: number; gid: number } | null;
  readonly #env: Record<string, string>;
  #child: Deno.ChildProcess | null = null;
  #stdout = "";
  #stderr = "";
  #pumps: Promise<void>[] = [];
  #exit: Promise<Deno.CommandStatus> | null = null;

  private constructor(
    init: {
      dir: string;
      spoolDir: string;
      certPem: string;
      ports: number[];
      dkim: DkimFixture[];
      v8Flags: string[];
      runAs: { uid: number; gid: number } | null;
      env?: Record<string, string>;
    },
  ) {
    this.dir = init.dir;
    this.configPath = `${init.dir}/config.yaml`;
    this.spoolDir = init.spoolDir;
    this.certPem = init.certPem;
    this.port = init.ports[0];
    this.tlsPort = init.ports[1];
    this.dkim = init.dkim;
    this.#v8Flags = init.v8Flags;
    this.#runAs = init.runAs;
    this.#env = init.env ?? {};
  }

  /** Prepares a folder, writes the config and starts the daemon. */
  static async start(options: MtaOptions = {}): Promise<Mta> {
    const fx = await sharedFixtures();
    const dir = await Deno.makeTempDir({ prefix: "minimta-test-" });
    await Deno.writeTextFile(`${dir}/cert.pem`, fx.certPem);
    await Deno.writeTextFile(`${dir}/key.pem`, fx.keyPem, { mode: 0o600 });
    await Deno.writeTextFile(`${dir}/users.json`, fx.usersJson, { mode: 0o600 });
    const dkim: DkimFixture[] = [];
    for (const algorithm of options.dkim ?? []) {
      const key = await generateDkimKey(algorithm, { bits: 2048 });
      const selector = `s${algorithm}`;
      await Deno.writeTextFile(`${dir}/${selector}.key`, key.privateKeyPem, { mode: 0o600 });
      dkim.push({ domain: "ours.test", selector, algorithm, dnsTxt: key.dnsTxt });
    }
    const spoolDir = options.spoolDir ?? `${dir}/spool`;
    const ports = freePorts(2);
    const config = baseConfig(dir, ports, spoolDir);
    for (const [section, values] of Object.entries(options.config ?? {})) {
      config[section] = { ...(config[section] as Record<string, unknown> ?? {}), ...values };
    }
    if (dkim.length) {
      config.dkim = dkim.map((d) => ({
        domain: d.domain,
        selector: d.selector,
        private_key_file: `${dir}/${d.selector}.key`,
      }));
    }
    // JSON is YAML: no serializer needed, and what we wrote is what is read.
    await Deno.writeTextFile(`${dir}/config.yaml`, JSON.stringify(config, null, 2));
    const v8Flags = options.v8Flags ?? [];
    const runAs = options.runAs ?? null;
    const mta = new Mta({
      dir,
      spoolDir,
      certPem: fx.certPem,
      ports,
      dkim,
      v8Flags,
      runAs,
      env: options.env,
    });
    if (runAs) await handOver(mta, runAs);
    if (!options.noStart) {
      try {
        await mta.launch();
      } catch (error) {
        await mta[Symbol.asyncDispose]();
        throw error;
      }
    }
    return mta;
  }

  /** The parsed config file as written. */
  async config(): Promise<Record<string, Record<string, unknown>>> {
    return JSON.parse(await Deno.readTextFile(this.configPath));
  }

  /** Rewrites sections of the config (takes effect on the next start). */
  async patchConfig(patch: Record<string, Record<string, unknown>>): Promise<void> {
    const config = await this.config();
    for (const [section, values] of Object.entries(patch)) {
      config[section] = { ...(config[section] ?? {}), ...values };
    }
    await Deno.writeTextFile(this.configPath, JSON.stringify(config, null, 2));
  }

  /** Starts the daemon (`serve --config`) and waits until both ports accept connections. */
  async launch(): Promise<void> {
    if (this.#child) throw new Error("Daemon already running");
    const { command } = startTask();
    const args = minimtaArgs([...command, "--config", this.configPath]);
    if (this.#v8Flags.length) args.splice(1, 0, `--v8-flags=${this.#v8Flags.join(",")}`);
    const as = this.#runAs;
    const child = new Deno.Command(as ? "setpriv" : Deno.execPath(), {
      args: as
        ? [`--reuid=${as.uid}`, `--regid=${as.gid}`, "--clear-groups", Deno.execPath(), ...args]
        : args,
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1", ...this.#env, ...(as ? { DENO_DIR: `${this.dir}/deno_dir` } : {}) },
    }).spawn();
    this.#child = child;
    this.#exit = child.status;
    this.#pumps = [
      this.#pump(child.stdout, (t) => (this.#stdout += t)),
      this.#pump(child.stderr, (t) => (this.#stderr += t)),
    ];
    const deadline = Date.now() + 30_000;
    let exited = false;
    this.#exit.then(() => (exited = true));
    for (const port of [this.port, this.tlsPort]) {
      while (true) {
        if (exited) {
          const status = await this.#reap();
          throw new Error(
            `minimta exited with ${status.code} during start-up\nstderr: ${this.#stderr}\nstdout: ${this.#stdout}`,
          );
        }
        if (Date.now() > deadline) {
          await this.kill9();
          throw new Error(`minimta did not listen on ${port} within 30 s\n${this.#stderr}`);
        }
        try {
          const conn = await Deno.connect({ hostname: "127.0.0.1", port });
          conn.close();
          break;
        } catch {
          await delay(50);
        }
      }
    }
  }

  async #pump(stream: ReadableStream<Uint8Array>, sink: (text: string) => void): Promise<void> {
    const textDecoder = new TextDecoder();
    for await (const chunk of stream) sink(textDecoder.decode(chunk, { stream: true }));
  }

  async #reap(): Promise<Deno.CommandStatus> {
    const status = await this.#exit!;
    await Promise.all(this.#pumps);
    this.#child = null;
    this.#exit = null;
    return status;
  }

  /** True while the daemon process runs. */
  get running(): boolean {
    return this.#child !== null;
  }

  /** The daemon's pid. */
  get pid(): number {
    if (!this.#child) throw new Error("Daemon not running");
    return this.#child.pid;
  }

  /** SIGTERM, then waits for the exit; returns the exit code (0 expected). */
  async stop(timeoutMs = 20_000): Promise<number> {
    if (!this.#child) throw new Error("Daemon not running");
    this.#child.kill("SIGTERM");
    const timer = setTimeout(() => this.#child?.kill("SIGKILL"), timeoutMs);
    try {
      const status = await this.#reap();
      return status.signal ? -1 : status.code;
    } finally {
      clearTimeout(timer);
    }
  }

  /** `kill -9`: no chance to clean up. */
  async kill9(): Promise<void> {
    if (!this.#child) return;
    this.#child.kill("SIGKILL");
    await this.#reap();
  }

  /** Stops (SIGTERM, must exit 0) and starts again. */
  async restart(): Promise<void> {
    const code = await this.stop();
    if (code !== 0) throw new Error(`minimta exited with ${code} on SIGTERM\n${this.#stderr}`);
    await this.launch();
  }

  /** Everything the daemon wrote on stdout (JSON log lines) across all its runs. */
  get stdout(): string {
    return this.#stdout;
  }

  /** Everything the daemon wrote on stderr across all its runs. */
  get stderr(): string {
    return this.#stderr;
  }

  /** The JSON log lines written so far, parsed (non-JSON lines are skipped). */
  logs(): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (const line of this.#stdout.split("\n")) {
      if (!line.startsWith("{")) continue;
      try {
        out.push(JSON.parse(line));
      } catch {
        // A line cut by kill -9.
      }
    }
    return out;
  }

  /** `minimta queue list --json --config …` as a child process. */
  async queueList(): Promise<QueueEntry[]> {
    const r = await runMinimta(["queue", "list", "--json", "--config", this.configPath]);
    if (r.code !== 0) throw new Error(`queue list failed (${r.code}): ${r.stderr}`);
    return JSON.parse(r.stdout);
  }

  /** `minimta queue show ID --json --config …` as a child process. */
  async queueShow(id: string): Promise<QueueEntry & { headers: string }> {
    const r = await runMinimta(["queue", "show", id, "--json", "--config", this.configPath]);
    if (r.code !== 0) throw new Error(`queue show failed (${r.code}): ${r.stderr}`);
    return JSON.parse(r.stdout);
  }

  /** Path of a message's stored bytes. */
  emlPath(id: string): string {
    return `${this.spoolDir}/msg/${id}.eml`;
  }

  /** Path of a message's metadata file (present once the metadata changed; see {@linkcode readMeta}). */
  metaPath(id: string): string {
    return `${this.spoolDir}/meta/${id}.json`;
  }

  /** A message's stored bytes as signed: its file in msg/, without the envelope line. */
  async readEml(id: string): Promise<Uint8Array> {
    return splitEnvelope(await Deno.readFile(this.emlPath(id))).message;
  }

  /** Writes a message's stored bytes ({@linkcode readEml}) to a file of their own, for outside tools; returns its path. */
  async emlFile(id: string): Promise<string> {
    const path = `${this.dir}/${id}.message.eml`;
    await Deno.writeFile(path, await this.readEml(id));
    return path;
  }

  /** A message's metadata: meta/ID.json, or the envelope its message file starts with. */
  // deno-lint-ignore no-explicit-any
  async readMeta(id: string): Promise<any> {
    try {
      return JSON.parse(await Deno.readTextFile(this.metaPath(id)));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    const { envelope } = splitEnvelope(await Deno.readFile(this.emlPath(id)));
    if (!envelope) throw new Error(`${id}: no metadata file and no envelope`);
    return envelope;
  }

  /** Names of the files in a spool sub-folder (`tmp`, `msg`, `meta`, `corrupt`). */
  async spoolFiles(sub: "tmp" | "msg" | "meta" | "corrupt"): Promise<string[]> {
    const names: string[] = [];
    try {
      for await (const e of Deno.readDir(`${this.spoolDir}/${sub}`)) names.push(e.name);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    return names.sort();
  }

  /** Every queued message's metadata read raw from the spool (bounces the delivery engine made excluded). */
  async spoolMetas(): Promise<Record<string, unknown>[]> {
    const out: Record<string, unknown>[] = [];
    for (const name of await this.spoolFiles("msg")) {
      const meta = await this.readMeta(name.replace(/\.eml$/, ""));
      if (meta.is_bounce !== true) out.push(meta);
    }
    return out;
  }

  /** A driver connected to the STARTTLS port (or the implicit-TLS port). */
  connect(options: { implicitTls?: boolean } = {}): Promise<SmtpDriver> {
    return SmtpDriver.connect(options.implicitTls ? this.tlsPort : this.port, {
      certPem: this.certPem,
      implicitTls: options.implicitTls,
    });
  }

  /** A driver after EHLO, STARTTLS and EHLO, ready for AUTH. */
  async authedOrNot(): Promise<SmtpDriver> {
    const smtp = await this.connect();
    try {
      await smtp.expect(220);
      await smtp.cmd("EHLO t.test", 250);
      await smtp.startTls();
      await smtp.cmd("EHLO t.test", 250);
      return smtp;
    } catch (error) {
      smtp.close();
      throw error;
    }
  }

  /** A driver after EHLO, STARTTLS, EHLO and a successful AUTH PLAIN (TESTPLAN's P_AUTH). */
  async authed(who: { user: string; pass: string } = ALICE): Promise<SmtpDriver> {
    const smtp = await this.connect();
    try {
      await smtp.expect(220);
      await smtp.cmd("EHLO t.test", 250);
      await smtp.startTls();
      await smtp.cmd("EHLO t.test", 250);
      await smtp.cmd(`AUTH PLAIN ${plainBlob("", who.user, who.pass)}`, 235);
      return smtp;
    } catch (error) {
      smtp.close();
      throw error;
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#child) {
      this.#child.kill("SIGKILL");
      await this.#reap();
    }
    if (Deno.env.get("MINIMTA_KEEP_TEST_DIRS") !== "1") {
      await Deno.remove(this.dir, { recursive: true }).catch(() => {});
    }
  }
}

// Gives an Mta's folder and spool to `user` (for MtaOptions.runAs), with a
// copy of the Deno cache: root's is under /root, which the user cannot enter.
async function handOver(mta: Mta, user: { uid: number; gid: number }): Promise<void> {
  const info = await run(Deno.execPath(), ["info", "--json"]);
  const denoDir = JSON.parse(info.stdout).denoDir as string;
  const steps: [string, string[]][] = [
    ["cp", ["-r", denoDir, `${mta.dir}/deno_dir`]],
    ["mkdir", ["-p", "-m", "0700", mta.spoolDir]],
    ["chown", ["-R", `${user.uid}:${user.gid}`, mta.dir, mta.spoolDir]],
  ];
  for (const [cmd, args] of steps) {
    const r = await run(cmd, args);
    if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.stderr}`);
  }
}

/** base64 of `authzid\0authcid\0password` (RFC 4616). */
export function plainBlob(authzid: string, user: string, pass: string): string {
  return btoa(`${authzid}\0${user}\0${pass}`);
}

/** Waits `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
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
    await delay(100);
  }
}

/**
 * Writes a message straight into a spool (the daemon must not be running):
 * simulates legacy or corrupt content that bypassed the intake's rules, or
 * (with `createdAt`) a message queued back then.
 */
export async function spoolFixture(
  spoolDir: string,
  body: Uint8Array,
  envelope: { from: string; recipients: string[]; createdAt?: Date },
): Promise<string> {
  const { createdAt } = envelope;
  const spool = await Spool.open(spoolDir, createdAt ? { now: () => createdAt } : {});
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

/** The queue id in a `250 … queued as ID` reply text; throws when there is none. */
export function queuedId(text: string): string {
  const match = /queued as ([0-9A-Z]{16})\b/.exec(text);
  if (!match) throw new Error(`No queue id in ${JSON.stringify(text)}`);
  return match[1];
}

/** Offsets of CR not followed by LF and LF not preceded by CR; empty when every line ends CRLF. */
export function bareLineEnds(bytes: Uint8Array): number[] {
  const bad: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === 0x0d && bytes[i + 1] !== 0x0a) bad.push(i);
    if (bytes[i] === 0x0a && bytes[i - 1] !== 0x0d) bad.push(i);
  }
  return bad;
}

/** Asserts that a queue entry has every field of the `queue list --json` contract (DESIGN.md). */
export function contractProblems(entry: QueueEntry): string[] {
  const problems: string[] = [];
  const isIso = (v: unknown) => typeof v === "string" && !Number.isNaN(Date.parse(v));
  if (typeof entry.id !== "string" || !/^[0-9A-Z]{16}$/.test(entry.id)) problems.push("id");
  if (typeof entry.from !== "string") problems.push("from");
  if (!["queued", "deferred", "held"].includes(entry.state)) problems.push(`state=${entry.state}`);
  if (!isIso(entry.created_at)) problems.push("created_at");
  if (!isIso(entry.next_attempt_at)) problems.push("next_attempt_at");
  if (typeof entry.size !== "number" || entry.size <= 0) problems.push("size");
  if (!Array.isArray(entry.recipients) || entry.recipients.length === 0) {
    problems.push("recipients");
  } else {
    for (const r of entry.recipients) {
      if (typeof r.address !== "string") problems.push("recipients.address");
      if (!["pending", "deferred", "delivered", "failed"].includes(r.status)) {
        problems.push(`recipients.status=${r.status}`);
      }
      if (typeof r.attempts !== "number") problems.push("recipients.attempts");
      if (!(r.last_error === null || typeof r.last_error === "string")) {
        problems.push("recipients.last_error");
      }
    }
  }
  return problems;
}

/**
 * Splits a spool message file into its envelope (the first metadata, JSON;
 * null for the older layout of message bytes only) and the message. Read
 * here from the bytes, not through src/spool: `NUL "minimta-envelope " LENGTH
 * LF JSON LF MESSAGE`.
 */
export function splitEnvelope(
  bytes: Uint8Array,
): { envelope: Record<string, unknown> | null; message: Uint8Array } {
  if (bytes[0] !== 0) return { envelope: null, message: bytes };
  const lf = bytes.indexOf(0x0a);
  const line = new TextDecoder().decode(bytes.subarray(0, lf));
  const m = /^\0minimta-envelope (\d+)$/.exec(line);
  if (!m) throw new Error(`not a minimta envelope: ${JSON.stringify(line.slice(0, 40))}`);
  const end = lf + 1 + Number(m[1]);
  const envelope = JSON.parse(new TextDecoder().decode(bytes.subarray(lf + 1, end)));
  if (bytes[end] !== 0x0a) throw new Error("envelope not followed by LF");
  return { envelope, message: bytes.subarray(end + 1) };
}
