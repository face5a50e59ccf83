import { writeMailLog } from "../events/mod.ts";
import { parseArgs } from "node:util";
import type { Config } from "../config/mod.ts";
import { Spool, type Suppression } from "../spool/mod.ts";
import { controlRequest, type ControlResponse, type SuppressRequest } from "./control.ts";
import { CliError, UsageError } from "./errors.ts";
import { applySuppress } from "./suppress_apply.ts";

type Out = (text: string) => void;

const USAGE = "suppress list [--json] | add ADDR [--reason TEXT] | remove ADDR | import FILE";

/**
 * `minimta suppress …`: the suppression list. While the daemon runs every
 * request goes through its control socket (it holds the list); otherwise
 * the CLI changes the spool's file itself under the spool lock.
 */
export async function suppressCommand(args: string[], config: Config, out: Out): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case "list":
      return await suppressList(config, rest, out);
    case "add":
    case "remove": {
      const { values, positionals } = parseArgs({
        args: rest,
        options: sub === "add" ? { reason: { type: "string" } } : {},
        allowPositionals: true,
        strict: true,
      });
      if (positionals.length !== 1) {
        throw new UsageError(
          `Usage: minimta suppress ${sub} ADDR${sub === "add" ? " [--reason TEXT]" : ""}`,
        );
      }
      const address = checkAddress(positionals[0], "");
      const reason = (values as { reason?: string }).reason;
      return await change(config, { op: sub, addresses: [address], reason }, out);
    }
    case "import": {
      const { positionals } = parseArgs({ args: rest, allowPositionals: true, strict: true });
      if (positionals.length !== 1) throw new UsageError("Usage: minimta suppress import FILE");
      const addresses = await readAddressFile(positionals[0]);
      return await change(config, {
        op: "add",
        addresses,
        source: "import",
        reason: `imported from ${positionals[0]}`,
      }, out);
    }
    case undefined:
      throw new UsageError(`Missing suppress command: ${USAGE}`);
    default:
      throw new UsageError(`Unknown suppress command "${sub}": expected ${USAGE}`);
  }
}

async function suppressList(config: Config, args: string[], out: Out): Promise<number> {
  const { values } = parseArgs({ args, options: { json: { type: "boolean" } }, strict: true });
  const answer = await controlRequest(config.queue.dir, {
    command: "suppress",
    suppress: { op: "list" },
  });
  let entries: Suppression[];
  if (answer) {
    if (!answer.ok) throw new CliError(answer.error ?? "the daemon refused the request");
    entries = answer.data as Suppression[];
  } else {
    // Reading needs no lock: the file only grows, or is replaced whole by a rename.
    entries = (await (await openSpool(config)).suppressions({ ttlMs: config.suppression.ttl }))
      .list();
  }
  out(values.json ? JSON.stringify(entries, null, 2) : formatTable(entries));
  return 0;
}

async function change(config: Config, req: SuppressRequest, out: Out): Promise<number> {
  const answer = await controlRequest(config.queue.dir, { command: "suppress", suppress: req }) ??
    await changeOffline(config, req);
  answer.lines.forEach((l) => out(l));
  if (!answer.ok) throw new CliError(answer.error ?? "the daemon refused the request");
  return 0;
}

// The daemon is not running: take the spool lock so it cannot start (and
// read the list) while we append to it.
async function changeOffline(config: Config, req: SuppressRequest): Promise<ControlResponse> {
  const spool = await openSpool(config);
  if (!(await spool.lock())) {
    throw new CliError("minimta is starting or stopping; try again in a moment");
  }
  try {
    return await applySuppress(
      await spool.suppressions({ ttlMs: config.suppression.ttl }),
      req,
      writeMailLog,
    );
  } finally {
    spool.close();
  }
}

async function openSpool(config: Config): Promise<Spool> {
  try {
    await Deno.stat(`${config.queue.dir}/meta`);
  } catch {
    throw new CliError(`No spool at "${config.queue.dir}" (queue.dir); has minimta been started?`);
  }
  return await Spool.open(config.queue.dir, { fsync: config.queue.fsync });
}

// One address a line; blank lines and # comments (whole-line or trailing) are skipped.
async function readAddressFile(path: string): Promise<string[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    const why = error instanceof Deno.errors.NotFound ? "not found" : (error as Error).message;
    throw new CliError(`Cannot read "${path}": ${why}`, { cause: error });
  }
  const addresses: string[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/#.*$/, "").trim();
    if (line) addresses.push(checkAddress(line, ` on line ${i + 1} of "${path}"`));
  });
  if (!addresses.length) throw new CliError(`No addresses in "${path}"`);
  return addresses;
}

function checkAddress(text: string, where: string): string {
  const address = text.replace(/^<(.*)>$/, "$1");
  const at = address.lastIndexOf("@");
  if (at <= 0 || at === address.length - 1 || /[\s<>]/.test(address)) {
    throw new CliError(`Not an email address${where}: "${text}"`);
  }
  return address;
}

function formatTable(entries: Suppression[]): string {
  if (!entries.length) return "No suppressed addresses.";
  const rows = entries.map((e) => [
    e.address,
    e.added_at.replace(/\.\d+Z$/, "Z"),
    e.expires_at.replace(/\.\d+Z$/, "Z"),
    e.source,
    e.sender_domain ?? "-",
    e.reply,
  ]);
  const head = ["ADDRESS", "ADDED", "EXPIRES", "SOURCE", "SENDER DOMAIN", "REPLY"];
  const widths = head.slice(0, -1).map((h, i) =>
    Math.max(h.length, ...rows.map((r) => r[i].length))
  );
  const line = (cells: string[]) =>
    cells.map((c, i) => (i < widths.length ? c.padEnd(widths[i]) : c)).join("  ").trimEnd();
  return [line(head), ...rows.map(line), `${entries.length} address(es)`].join("\n");
}
