import { writeMailLog } from "../events/mod.ts";
import { parseArgs } from "node:util";
import { BUILTIN_PROVIDERS, type Config, parseDuration } from "../config/mod.ts";
import {
  applyOperation,
  mergeProviders,
  type Operation,
  ProviderShaper,
  type ProviderStatus,
  type QueueSummary,
} from "../delivery/mod.ts";
import { type MessageMeta, MessageNotFoundError, Spool } from "../spool/mod.ts";
import { controlRequest } from "./control.ts";
import { printBytes } from "./io.ts";
import { CliError, UsageError } from "./errors.ts";
import { formatShow, formatStats, formatTable, queueStats, summary } from "./queue_format.ts";

type Out = (text: string) => void;
/** Where command output goes as bytes, passed on as the daemon sent them. */
type OutBytes = (bytes: Uint8Array) => void;

const USAGE = "queue list|show|retry|hold|release|delete|stats";

/** `minimta queue …`: reads go straight to the spool; changes go through the daemon when it runs. */
export async function queueCommand(
  args: string[],
  config: Config,
  out: Out,
  stdin: () => Promise<string>,
  outBytes: OutBytes = printBytes,
): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    // The spool is opened after the arguments are checked: bad usage is exit 2 either way.
    case "list":
      return await queueList(
        { all: () => allMessages(config), json: () => jsonFromDaemon(config, outBytes) },
        rest,
        out,
      );
    case "show":
      return await queueShow(() => openSpool(config), rest, out);
    case "stats":
      return await queueStatsCommand(
        () => allMessages(config),
        () => providerStatus(config),
        rest,
        out,
      );
    case "retry":
    case "hold":
    case "release":
    case "delete":
      return await queueOperate(config, sub, rest, out, stdin);
    case undefined:
      throw new UsageError(`Missing queue command: ${USAGE}`);
    default:
      throw new UsageError(`Unknown queue command "${sub}": expected ${USAGE}`);
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

// While the daemon runs, its in-memory index answers at once (100,000
// messages in well under a second, streamed); otherwise every metadata
// file is read.
async function allMessages(config: Config): Promise<QueueSummary[]> {
  const answer = await controlRequest(config.queue.dir, { command: "list", stream: true });
  if (answer?.ok && Array.isArray(answer.data)) return answer.data as QueueSummary[];
  return await (await openSpool(config)).list();
}

/**
 * The whole queue as `queue list --json` prints it, passed on as the running
 * daemon writes it (no entry is parsed here). False when no daemon answers.
 */
async function jsonFromDaemon(config: Config, outBytes: OutBytes): Promise<boolean> {
  let tail = new Uint8Array(0);
  const answer = await controlRequest(
    config.queue.dir,
    { command: "list", stream: true, render: "json" },
    {
      raw: (bytes) => {
        outBytes(bytes);
        tail = new Uint8Array([...tail, ...bytes.subarray(-2)]).slice(-2);
      },
    },
  );
  if (answer?.ok !== true || answer.raw !== true) return false;
  // The text ends "]\n": anything else is a daemon that stopped half-way.
  if (tail.at(-1) !== 0x0a || tail.at(-2) !== 0x5d) {
    throw new CliError("The daemon's list ended half-way (it stopped?); run the command again");
  }
  return true;
}

/**
 * The providers' state: the running daemon's, else what the spool keeps
 * across restarts (suspensions and warm-up counts; no connections open).
 */
async function providerStatus(config: Config): Promise<ProviderStatus[]> {
  const answer = await controlRequest(config.queue.dir, { command: "providers" });
  if (answer?.ok && Array.isArray(answer.data)) return answer.data as ProviderStatus[];
  const spool = await openSpool(config);
  const d = config.delivery;
  const shaper = new ProviderShaper({
    providers: mergeProviders(structuredClone(BUILTIN_PROVIDERS), structuredClone(d.providers)),
    rules: [],
    warmup: d.warmup.map((w) => ({ ...w })),
    route: () => Promise.resolve({ kind: "temporary", status: "4.4.3", text: "offline" }),
    store: { read: () => spool.readState("throttle"), write: () => Promise.resolve() },
    emit: () => {},
  });
  await shaper.load();
  return shaper.status();
}

async function queueList(
  load: { all: () => Promise<QueueSummary[]>; json: () => Promise<boolean> },
  args: string[],
  out: Out,
): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      json: { type: "boolean" },
      state: { type: "string" },
      from: { type: "string" },
      "to-domain": { type: "string" },
      "older-than": { type: "string" },
    },
    strict: true,
  });
  if (values.state && !["queued", "deferred", "held"].includes(values.state)) {
    throw new UsageError(`--state must be queued, deferred or held, not "${values.state}"`);
  }
  const olderThan = values["older-than"] === undefined ? null : parseDuration(values["older-than"]);
  if (values["older-than"] !== undefined && olderThan === null) {
    throw new UsageError(
      `--older-than needs a duration like 30m or 2d, not "${values["older-than"]}"`,
    );
  }
  const filtered = values.state || values.from || values["to-domain"] || olderThan !== null;
  if (values.json && !filtered && await load.json()) return 0;
  const domain = values["to-domain"]?.toLowerCase();
  const cutoff = Date.now() - (olderThan ?? 0);
  const messages = (await load.all()).filter((m) =>
    (!values.state || m.state === values.state) &&
    (!values.from || m.from.toLowerCase() === values.from.toLowerCase()) &&
    (!domain || m.recipients.some((r) => r.address.toLowerCase().endsWith(`@${domain}`))) &&
    (olderThan === null || Date.parse(m.created_at) <= cutoff)
  );
  out(values.json ? JSON.stringify(messages.map(summary), null, 2) : formatTable(messages));
  return 0;
}

async function queueShow(open: () => Promise<Spool>, args: string[], out: Out): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { json: { type: "boolean" } },
    allowPositionals: true,
  });
  if (positionals.length !== 1) throw new UsageError("Usage: minimta queue show ID [--json]");
  const spool = await open();
  let meta: MessageMeta;
  let headers: string;
  try {
    meta = await spool.get(positionals[0]);
    headers = await spool.readHeaders(meta.id);
  } catch (error) {
    if (error instanceof MessageNotFoundError) throw new CliError(error.message);
    throw error;
  }
  const detail = {
    ...summary(meta),
    recipients: meta.recipients,
    auth_user: meta.auth_user,
    client_ip: meta.client_ip,
    headers,
  };
  out(values.json ? JSON.stringify(detail, null, 2) : formatShow(meta, headers));
  return 0;
}

async function queueStatsCommand(
  load: () => Promise<QueueSummary[]>,
  providers: () => Promise<ProviderStatus[]>,
  args: string[],
  out: Out,
): Promise<number> {
  const { values } = parseArgs({ args, options: { json: { type: "boolean" } }, strict: true });
  const stats = queueStats(await load(), new Date(), await providers());
  out(values.json ? JSON.stringify(stats, null, 2) : formatStats(stats));
  return 0;
}

async function queueOperate(
  config: Config,
  op: Operation,
  args: string[],
  out: Out,
  stdin: () => Promise<string>,
): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { all: { type: "boolean" } },
    allowPositionals: true,
  });
  if (values.all && (op !== "retry" || positionals.length)) {
    throw new UsageError("--all goes alone, with retry only");
  }
  // "-" reads ids from stdin, one per line or space-separated, as postsuper does.
  const ids = positionals.includes("-")
    ? [...positionals.filter((p) => p !== "-"), ...(await stdin()).split(/\s+/).filter(Boolean)]
    : positionals;
  if (!values.all && ids.length === 0) {
    throw new UsageError(`Usage: minimta queue ${op} ID... (or - to read ids from stdin)`);
  }
  const request = values.all
    ? { command: "retry-all" as const }
    : { command: "operate" as const, op, ids };
  const answer = await controlRequest(config.queue.dir, request);
  if (answer) {
    answer.lines.forEach((l) => out(l));
    if (!answer.ok) throw new CliError(answer.error ?? "the daemon refused the request");
    return 0;
  }
  return await operateOffline(config, op, values.all ? null : ids, out);
}

// The daemon is not running: take the spool lock so it cannot start (and
// deliver) while we change files, then apply the same operations it would.
async function operateOffline(
  config: Config,
  op: Operation,
  ids: string[] | null,
  out: Out,
): Promise<number> {
  const spool = await openSpool(config);
  if (!(await spool.lock())) {
    throw new CliError("minimta is starting or stopping; try again in a moment");
  }
  let failures = 0;
  try {
    for (const id of ids ?? (await spool.ids())) {
      try {
        const meta = await spool.get(id);
        if (ids === null && meta.state === "held") continue;
        out((await applyOperation(spool, meta, { op, now: new Date(), emit: writeMailLog })).text);
      } catch (error) {
        if (!(error instanceof MessageNotFoundError)) throw error;
        out(`${id}: no such message`);
        failures++;
      }
    }
  } finally {
    spool.close();
  }
  if (failures) throw new CliError(`${failures} of the given ids are not in the queue`);
  return 0;
}
