/**
 * @module
 * The `minimta` command line: `serve`, `queue …`, `suppress …`, `config check` and
 * `version`. Errors are one line on stderr; exit 0 on success, 1 on
 * failure, 2 on bad usage.
 */
import { parseArgs } from "node:util";
import { type Config, ConfigError, formatDuration, loadConfig } from "../config/mod.ts";
import { CliError, UsageError } from "./errors.ts";
import { printErr, printOut } from "./io.ts";
// Each command's module is loaded when it runs: loading them all (the SMTP
// server, DKIM, DNS and TLS libraries) took most of a second, on every
// `minimta queue list` and every `sendmail`.
const dkimCommand = lazy(() => import("./dkim.ts"), "dkimCommand");
const doctorCommand = lazy(() => import("./doctor.ts"), "doctorCommand");
const sendmailCommand = lazy(() => import("./sendmail.ts"), "sendmailCommand");
const tlsCommand = lazy(() => import("./tls.ts"), "tlsCommand");
const loadTlsPair = lazy(() => import("./tls.ts"), "loadTlsPair");
const queueCommand = lazy(() => import("./queue.ts"), "queueCommand");
const userCommand = lazy(() => import("./user.ts"), "userCommand");
const suppressCommand = lazy(() => import("./suppress.ts"), "suppressCommand");
const serve = lazy(() => import("./serve.ts"), "serve");

// A function of a module imported on its first call.
function lazy<M, K extends keyof M>(
  load: () => Promise<M>,
  name: K,
): M[K] extends (...args: infer A) => Promise<infer R> ? (...args: A) => Promise<R> : never {
  return (async (...args: unknown[]) => {
    const fn = (await load())[name] as (...args: unknown[]) => Promise<unknown>;
    return await fn(...args);
  }) as never;
}

/** minimta's version, printed by `minimta version`. */
export const VERSION = "0.1.0";

const USAGE = `Usage: minimta <command> [--config FILE]
  serve                 run the submission server and delivery engine
  queue list [--json] [--state S] [--from ADDR] [--to-domain D] [--older-than DUR]
  queue show ID [--json]
  queue stats [--json]
  queue retry ID...|--all, queue hold ID..., queue release ID..., queue delete ID...  (- reads ids from stdin)
  suppress list [--json], suppress add ADDR [--reason TEXT], suppress remove ADDR, suppress import FILE
  user add NAME [--email ADDR] [--admin] [--password-stdin], user passwd NAME, user list, user remove NAME
  dkim keygen --domain D --selector S [--algorithm rsa|ed25519] [--out FILE]
  dkim check --domain D
  doctor [--domain D] [--json]   check the DNS records receivers look at (A, PTR, SPF, DKIM, DMARC)
  dkim rotate --domain D [--selector CURRENT] [--activate]   new key, switched once its TXT is in DNS
  dkim list [--domain D] [--json]   signing, pending and retired selectors; what DNS must keep
  sendmail [-t] [-f SENDER] [-i] [RCPT...]   queue a message read from stdin
  tls selfsigned --cert FILE --key FILE [--hostname NAME]   make a self-signed certificate
  config check          validate and print the effective configuration
  version               print the version`;

/** Runs the command line and returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const out = printOut;
  try {
    const { command, rest, configPath } = splitArgs(args);
    switch (command) {
      case "version":
        if (rest.length) throw new UsageError(`Unexpected argument "${rest[0]}" for version`);
        out(`minimta ${VERSION} (deno ${Deno.version.deno})`);
        return 0;
      case "help":
      case "--help":
      case "-h":
        out(USAGE);
        return 0;
      case "serve":
        if (rest.length) throw new UsageError(`Unexpected argument "${rest[0]}" for serve`);
        return await serve(await loadConfig({ path: configPath }));
      case "queue":
        return await queueCommand(
          rest,
          (await loadConfig({ path: configPath, checkFiles: false })).config,
          out,
          readStdin,
        );
      case "suppress":
        return await suppressCommand(
          rest,
          (await loadConfig({ path: configPath, checkFiles: false })).config,
          out,
        );
      case "config":
        return await configCommand(rest, configPath, out);
      case "user":
        return await userCommand(
          rest,
          (await loadConfig({ path: configPath, checkFiles: false })).config,
          out,
        );
      case "sendmail":
        return await sendmailCommand(
          rest,
          await loadConfigForSendmail(configPath),
          out,
          readStdinBytes,
        );
      case "tls":
        return await tlsCommand(rest, out);
      case "dkim":
        return await dkimCommand(
          rest,
          await loadConfig({ path: configPath, checkFiles: false }),
          out,
        );
      case "doctor":
        return await doctorCommand(
          rest,
          (await loadConfig({ path: configPath, checkFiles: false })).config,
          out,
        );
      default:
        throw new UsageError(command ? `Unknown command "${command}"` : "Missing command");
    }
  } catch (error) {
    return reportError(error);
  }
}

/**
 * The config, or null when this user may not read it (the config holds
 * secrets; a web server's user running `sendmail` then uses the default
 * local socket).
 */
async function loadConfigForSendmail(configPath: string | undefined): Promise<Config | null> {
  try {
    return (await loadConfig({ path: configPath, checkFiles: false })).config;
  } catch (error) {
    if (error instanceof ConfigError && error.cause instanceof Deno.errors.PermissionDenied) {
      return null;
    }
    throw error;
  }
}

async function readStdinBytes(): Promise<Uint8Array> {
  return new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
}

async function readStdin(): Promise<string> {
  return await new Response(Deno.stdin.readable).text();
}

function splitArgs(
  args: string[],
): { command: string | undefined; rest: string[]; configPath?: string } {
  const rest: string[] = [];
  let configPath: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--config") {
      if (i + 1 >= args.length) throw new UsageError("--config needs a file name");
      configPath = args[++i];
    } else if (arg.startsWith("--config=")) {
      configPath = arg.slice("--config=".length);
    } else {
      rest.push(arg);
    }
  }
  return { command: rest[0], rest: rest.slice(1), configPath };
}

async function configCommand(
  args: string[],
  configPath: string | undefined,
  out: (t: string) => void,
): Promise<number> {
  const { positionals } = parseArgs({ args, allowPositionals: true, strict: true });
  if (positionals[0] !== "check" || positionals.length !== 1) {
    throw new UsageError("Usage: minimta config check [--config FILE]");
  }
  const loaded = await loadConfig({ path: configPath });
  // The embedded default's certificate is made on first start.
  if (!loaded.embedded) await loadTlsPair(loaded);
  out(`# ${loaded.source}: OK`);
  out(JSON.stringify(masked(loaded.config), null, 2));
  return 0;
}

function masked(config: Config): unknown {
  return JSON.parse(JSON.stringify(config, (key, value) => {
    if ((key === "relay_password" || key === "admin_token" || key === "secret") && value) {
      return "********";
    }
    if (
      typeof value === "number" && /timeout|delay|window|lifetime|rotation_check|^ttl$/.test(key)
    ) {
      return formatDuration(value);
    }
    if (key === "retry_schedule") return (value as number[]).map(formatDuration);
    return value;
  }));
}

function reportError(error: unknown): number {
  const line = (text: string) => printErr(`minimta: ${text.split("\n")[0]}`);
  if (error instanceof UsageError) {
    // One line, like every error: the usage hint goes on it.
    line(`${error.message.split("\n")[0]} (see \`minimta help\`)`);
    return 2;
  }
  if (error instanceof CliError || error instanceof ConfigError) {
    line(error.message);
    return 1;
  }
  if (
    error instanceof TypeError && (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")
  ) {
    line(error.message);
    return 2;
  }
  line(error instanceof Error ? error.message : String(error));
  return 1;
}
