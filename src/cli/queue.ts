import { parseArgs } from "node:util";
import type { MessageMeta } from "../spool/mod.ts";
import { MessageNotFoundError, Spool } from "../spool/mod.ts";
import type { Config } from "../config/mod.ts";
import { CliError, UsageError } from "./errors.ts";

/** `minimta queue list|show …`. */
export async function queueCommand(
  args: string[],
  config: Config,
  out: (text: string) => void,
): Promise<number> {
  const [sub, ...rest] = args;
  const spool = await openSpool(config);
  switch (sub) {
    case "list":
      return await queueList(spool, rest, out);
    case "show":
      return await queueShow(spool, rest, out);
    case undefined:
      throw new UsageError("Missing queue command: list | show");
    default:
      throw new UsageError(`Unknown queue command "${sub}": expected list | show`);
  }
}

async function openSpool(config: Config): Promise<Spool> {
  try {
    await Deno.stat(`${config.queue.dir}/meta`);
  } catch {
    throw new CliError(`No spool at "${config.queue.dir}" (queue.dir); has minimta been started?`);
  }
  return await Spool.open(config.queue.dir);
}

async function queueList(
  spool: Spool,
  args: string[],
  out: (text: string) => void,
): Promise<number> {
  const { values } = parseArgs({ args, options: { json: { type: "boolean" } }, strict: true });
  const messages = await spool.list();
  if (values.json) {
    out(JSON.stringify(messages.map(summary), null, 2));
    return 0;
  }
  if (messages.length === 0) {
    out("Queue is empty");
    return 0;
  }
  out(formatTable(messages));
  return 0;
}

async function queueShow(
  spool: Spool,
  args: string[],
  out: (text: string) => void,
): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { json: { type: "boolean" } },
    allowPositionals: true,
  });
  if (positionals.length !== 1) throw new UsageError("Usage: minimta queue show ID [--json]");
  let meta: MessageMeta;
  let headers: string;
  try {
    meta = await spool.get(positionals[0]);
    headers = headerSection(await spool.readBody(meta.id));
  } catch (error) {
    if (error instanceof MessageNotFoundError) throw new CliError(error.message);
    throw error;
  }
  if (values.json) {
    out(JSON.stringify({ ...summary(meta), headers }, null, 2));
    return 0;
  }
  out(formatShow(meta, headers));
  return 0;
}

/** The fields of the `queue list --json` contract, in a stable order. */
export function summary(meta: MessageMeta): Record<string, unknown> {
  return {
    id: meta.id,
    from: meta.from,
    state: meta.state,
    created_at: meta.created_at,
    next_attempt_at: meta.next_attempt_at,
    size: meta.size,
    message_id: meta.message_id,
    recipients: meta.recipients.map((r) => ({
      address: r.address,
      status: r.status,
      attempts: r.attempts,
      last_error: r.last_error,
    })),
  };
}

function formatTable(messages: MessageMeta[]): string {
  const rows = [["ID", "STATE", "SIZE", "CREATED", "FROM", "RECIPIENTS"]];
  for (const m of messages) {
    const pending = m.recipients.filter((r) =>
      r.status === "pending" || r.status === "deferred"
    ).length;
    rows.push([
      m.id,
      m.state,
      String(m.size),
      m.created_at.slice(0, 19).replace("T", " "),
      m.from || "<>",
      `${pending}/${m.recipients.length} pending`,
    ]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const lines = rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd());
  return `${lines.join("\n")}\n${messages.length} message(s)`;
}

function formatShow(meta: MessageMeta, headers: string): string {
  const lines = [
    `id:              ${meta.id}`,
    `state:           ${meta.state}`,
    `from:            ${meta.from || "<>"}`,
    `created:         ${meta.created_at}`,
    `next attempt:    ${meta.next_attempt_at}`,
    `size:            ${meta.size}`,
    `message-id:      ${meta.message_id ?? "-"}`,
    `submitted by:    ${meta.auth_user ?? "-"} from ${meta.client_ip ?? "-"}`,
    "recipients:",
    ...meta.recipients.map((r) =>
      `  ${r.address}  ${r.status}  attempts=${r.attempts}${
        r.last_error ? `  last: ${r.last_error}` : ""
      }`
    ),
    "headers:",
    ...headers.split("\r\n").filter((l) => l !== "").map((l) => `  ${l}`),
  ];
  return lines.join("\n");
}

function headerSection(body: Uint8Array): string {
  const text = new TextDecoder("latin1").decode(body.subarray(0, 64 * 1024));
  const end = text.indexOf("\r\n\r\n");
  return end < 0 ? text : text.slice(0, end);
}
