import { Buffer } from "node:buffer";
import type { Config } from "../config/mod.ts";
import {
  DkimSigner,
  loadDkimKeys,
  readRotationState,
  rotatingKeyConfig,
  ROTATION_STATE_FILE,
  rotationView,
} from "../dkim/mod.ts";
import { Spool } from "../spool/mod.ts";
import {
  addressList,
  concat,
  fieldValue,
  Intake,
  LineEndingNormalizer,
  parseMessage,
  SmtpRejection,
} from "../submission/mod.ts";
import {
  controlPath,
  type ControlRequest,
  DEFAULT_LOCAL_SOCKET,
  socketRequest,
} from "./control.ts";
import { CliError, UsageError } from "./errors.ts";

type Out = (text: string) => void;

/** The envelope of a message given to `minimta sendmail`. */
export interface LocalMessage {
  from: string;
  recipients: string[];
  data: Uint8Array;
}

// Flags sendmail-compatible programs pass that change nothing here.
const IGNORED = new Set([
  "-i",
  "-oi",
  "-bm",
  "-v",
  "-m",
  "-U",
  "-odi",
  "-odb",
  "-odq",
  "-oem",
  "-oep",
  "-oee",
  "-oeq",
  "-oew",
  "-Am",
  "-Ac",
]);
const IGNORED_WITH_VALUE = new Set(["-F", "-N", "-R", "-V", "-B", "-X", "-L", "-O", "-o"]);

/** Parsed `sendmail` arguments. */
export interface SendmailArgs {
  fromHeaders: boolean;
  sender: string | null;
  /** A line with only "." ends the input (sendmail's default without -i). */
  dotEnds: boolean;
  recipients: string[];
}

/** Parses sendmail's command line: `-t`, `-f SENDER`/`-fSENDER`, `-i`, common ignored flags, recipients. */
export function parseSendmailArgs(args: string[]): SendmailArgs {
  const parsed: SendmailArgs = { fromHeaders: false, sender: null, dotEnds: true, recipients: [] };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      parsed.recipients.push(...args.slice(i + 1));
      break;
    }
    if (arg === "-t") parsed.fromHeaders = true;
    else if (arg === "-i" || arg === "-oi") parsed.dotEnds = false;
    else if (arg === "-f" || arg === "-r") parsed.sender = args[++i] ?? "";
    else if (/^-[fr]./.test(arg)) parsed.sender = arg.slice(2);
    else if (IGNORED.has(arg) || /^-o[A-Za-z]/.test(arg) || /^-[FNRVBXLO]./.test(arg)) continue;
    else if (IGNORED_WITH_VALUE.has(arg)) i++;
    else if (arg.startsWith("-")) throw new UsageError(`Unsupported sendmail option "${arg}"`);
    else parsed.recipients.push(...arg.split(",").map((a) => a.trim()).filter(Boolean));
  }
  if (parsed.sender !== null && parsed.sender.startsWith("<") && parsed.sender.endsWith(">")) {
    parsed.sender = parsed.sender.slice(1, -1);
  }
  return parsed;
}

/**
 * `minimta sendmail`: reads a message on stdin and queues it, through the
 * running daemon when there is one (so it is signed and scheduled at once),
 * else straight into the spool under its lock. Local submitters are trusted
 * as Postfix's sendmail trusts them: no AUTH, any sender.
 */
export async function sendmailCommand(
  args: string[],
  config: Config | null,
  out: Out,
  stdin: () => Promise<Uint8Array>,
): Promise<number> {
  const parsed = parseSendmailArgs(args);
  let data = await stdin();
  if (parsed.dotEnds) data = cutAtDotLine(data);
  const headerRecipients = parsed.fromHeaders ? recipientsFromHeaders(data) : [];
  const recipients = [...new Set([...parsed.recipients, ...headerRecipients])];
  if (!recipients.length) throw new UsageError("No recipients: give them as arguments or use -t");
  // Without a domain, the daemon adds its host name (the config may be unreadable here).
  const from = parsed.sender ?? Deno.env.get("USER") ?? Deno.env.get("LOGNAME") ?? "root";
  const request: ControlRequest = {
    command: "submit",
    message: { from, recipients, data: Buffer.from(data).toString("base64"), user: "" },
  };
  // The control socket (root, the minimta user), else the local submission
  // socket (any user), else, with the daemon stopped, the spool itself.
  const sockets = config === null
    ? [DEFAULT_LOCAL_SOCKET]
    : [controlPath(config.queue.dir), config.server.local_socket].filter(Boolean);
  for (const path of sockets) {
    const answer = await socketRequest(path, request);
    if (!answer) continue;
    if (!answer.ok) throw new CliError(answer.error ?? "the daemon refused the message");
    answer.lines.forEach(out);
    return 0;
  }
  if (config === null) {
    throw new CliError(
      `Cannot read the config and no minimta daemon answers on ${DEFAULT_LOCAL_SOCKET}; is minimta running?`,
    );
  }
  const sender = from === "" || from.includes("@") ? from : `${from}@${config.server.hostname}`;
  const id = await submitOffline(config, { from: sender, recipients, data });
  out(`queued as ${id}`);
  return 0;
}

/** Runs a local message through the intake; used by the daemon's control socket and offline. */
export async function submitLocal(intake: Intake, message: LocalMessage): Promise<string> {
  const normalizer = new LineEndingNormalizer();
  const bytes = concat([...normalizer.push(message.data), ...normalizer.end()]);
  try {
    return await intake.accept({
      from: message.from,
      recipients: message.recipients,
      bytes,
      normalizer,
      sizeExceeded: false,
      user: null,
      clientIp: "127.0.0.1",
      heloName: "localhost",
      tls: null,
      smtputf8: false,
    });
  } catch (error) {
    if (error instanceof SmtpRejection) throw new CliError(`Message refused: ${error.message}`);
    throw error;
  }
}

async function submitOffline(config: Config, message: LocalMessage): Promise<string> {
  const spool = await Spool.open(config.queue.dir, { fsync: config.queue.fsync });
  if (!(await spool.lock())) {
    throw new CliError("minimta is starting or stopping; try again in a moment");
  }
  try {
    // The keys the daemon signs with: a rotated one once the daemon switched to it.
    const state = await readRotationState(`${config.queue.dir}/${ROTATION_STATE_FILE}`);
    const keys = await loadDkimKeys(
      config.dkim.map((d) => rotationView(rotatingKeyConfig(d), state).signing),
    );
    const signer = new DkimSigner(keys);
    const intake = new Intake({
      hostname: config.server.hostname,
      spool,
      sign: (m) => signer.sign(m),
      maxMessageSize: config.server.max_message_size,
    });
    return await submitLocal(intake, message);
  } finally {
    spool.close();
  }
}

function recipientsFromHeaders(data: Uint8Array): string[] {
  // Input from a pipe usually ends its lines with a bare LF; parseMessage wants CRLF.
  const normalizer = new LineEndingNormalizer();
  const { fields } = parseMessage(concat([...normalizer.push(data), ...normalizer.end()]));
  return fields.filter((f) => f.name === "to" || f.name === "cc" || f.name === "bcc").flatMap((f) =>
    addressList(fieldValue(f))
  );
}

// Traditional sendmail input ends at a line holding a single dot.
function cutAtDotLine(data: Uint8Array): Uint8Array {
  for (let i = 0; i < data.length; i++) {
    const lineStart = i === 0 || data[i - 1] === 0x0a;
    if (!lineStart || data[i] !== 0x2e) continue;
    const next = data[i + 1];
    if (next === undefined || next === 0x0a || (next === 0x0d && data[i + 2] === 0x0a)) {
      return data.subarray(0, i);
    }
  }
  return data;
}
