import { Semaphore } from "../delivery/mod.ts";
import { log } from "../log/mod.ts";

/** A change to (or a read of) the suppression list, for the "suppress" command. */
export interface SuppressRequest {
  op: "list" | "add" | "remove";
  addresses?: string[];
  /** For "add": why, shown in the RCPT refusal. */
  reason?: string;
  /** For "add": `suppress add` or `suppress import`. */
  source?: "operator" | "import";
}

/** A request to the running daemon over its control socket. */
export interface ControlRequest {
  command: "ping" | "operate" | "retry-all" | "reload" | "submit" | "list" | "suppress";
  op?: "hold" | "release" | "retry" | "delete";
  ids?: string[];
  suppress?: SuppressRequest;
  /** For "submit": the message and its envelope. */
  message?: { from: string; recipients: string[]; data: string /* base64 */; user: string };
}

/** The daemon's answer: one line of text per id, or an error; `data` for "list". */
export interface ControlResponse {
  ok: boolean;
  lines: string[];
  error?: string;
  data?: unknown;
}

/** Handles one control request inside the daemon. */
export type ControlHandler = (req: ControlRequest) => Promise<ControlResponse>;

const MAX_REQUEST = 64 * 1024 * 1024;

/** Where the daemon listens when the config cannot be read (a local user's `sendmail`). */
export const DEFAULT_LOCAL_SOCKET = "/run/minimta/submit.sock";

/** How a {@linkcode ControlServer} admits clients. */
export interface ControlServerOptions {
  /** Socket file mode. @default {0o600} */
  mode?: number;
  /** Largest request in bytes. @default {64 MiB} */
  maxRequest?: number;
  /** Requests handled at once; more connections wait. @default {Infinity} */
  maxConcurrent?: number;
  /** Time a client has to send its whole request. @default {60000} */
  readTimeoutMs?: number;
}
const logger = log("control");

/** The control socket's path for a spool. */
export function controlPath(spoolDir: string): string {
  return `${spoolDir}/control.sock`;
}

/**
 * The daemon side: a Unix socket in the spool directory (0700, so only the
 * spool's owner reaches it), one JSON request and one JSON response per
 * connection. Queue commands go through it while the daemon runs, so the
 * daemon is the only writer of a message it may be delivering.
 */
export class ControlServer {
  #listener: Deno.Listener;
  #done: Promise<void>;
  #maxRequest: number;
  #slots: Semaphore;
  #readTimeoutMs: number;

  private constructor(
    listener: Deno.Listener,
    handler: ControlHandler,
    options: ControlServerOptions,
  ) {
    this.#listener = listener;
    this.#maxRequest = options.maxRequest ?? MAX_REQUEST;
    this.#slots = new Semaphore(options.maxConcurrent ?? Number.MAX_SAFE_INTEGER);
    this.#readTimeoutMs = options.readTimeoutMs ?? 60_000;
    this.#done = this.#serve(handler);
  }

  /** Listens on `path`, replacing a stale socket left by a crash. */
  static async listen(
    path: string,
    handler: ControlHandler,
    options: ControlServerOptions = {},
  ): Promise<ControlServer> {
    await Deno.remove(path).catch(() => {});
    const listener = Deno.listen({ transport: "unix", path });
    await Deno.chmod(path, options.mode ?? 0o600);
    return new ControlServer(listener, handler, options);
  }

  /** Stops listening and removes the socket. */
  async close(): Promise<void> {
    this.#listener.close();
    await this.#done;
  }

  async #serve(handler: ControlHandler): Promise<void> {
    try {
      for await (const conn of this.#listener) void this.#handle(conn, handler);
    } catch (error) {
      if (!(error instanceof Deno.errors.BadResource)) {
        logger.error("Control socket failed: {error}", { error: String(error) });
      }
    }
  }

  async #handle(conn: Deno.Conn, handler: ControlHandler): Promise<void> {
    let response: ControlResponse;
    let closed = false;
    const close = () => {
      if (!closed) conn.close();
      closed = true;
    };
    await this.#slots.acquire();
    // A client that never finishes its request must not keep its slot.
    const deadline = setTimeout(close, this.#readTimeoutMs);
    try {
      let text: string;
      try {
        text = await readAll(conn, this.#maxRequest);
      } finally {
        clearTimeout(deadline);
      }
      response = await handler(JSON.parse(text) as ControlRequest);
    } catch (error) {
      response = {
        ok: false,
        lines: [],
        error: error instanceof Error ? error.message : String(error),
      };
    }
    try {
      if (!closed) await writeAll(conn, new TextEncoder().encode(JSON.stringify(response)));
    } catch {
      // The client went away; nothing to tell it.
    } finally {
      close();
      this.#slots.release();
    }
  }
}

/**
 * The CLI side: sends one request to the daemon. Returns null when no
 * daemon listens on the spool's socket.
 */
export function controlRequest(
  spoolDir: string,
  req: ControlRequest,
): Promise<ControlResponse | null> {
  return socketRequest(controlPath(spoolDir), req);
}

/**
 * Sends one request to the daemon on the socket at `path`. Null when nothing
 * listens there or this user may not reach it.
 */
export async function socketRequest(
  path: string,
  req: ControlRequest,
): Promise<ControlResponse | null> {
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path });
  } catch {
    return null;
  }
  try {
    await writeAll(conn, new TextEncoder().encode(JSON.stringify(req)));
    await conn.closeWrite();
    return JSON.parse(await readAll(conn)) as ControlResponse;
  } finally {
    conn.close();
  }
}

async function readAll(conn: Deno.Conn, max = MAX_REQUEST): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const buf = new Uint8Array(64 * 1024);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
    size += n;
    if (size > max) throw new RangeError("Request too large");
  }
  const all = new Uint8Array(size);
  let offset = 0;
  for (const c of chunks) {
    all.set(c, offset);
    offset += c.length;
  }
  return new TextDecoder().decode(all);
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}
