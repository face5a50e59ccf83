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
  command:
    | "ping"
    | "operate"
    | "retry-all"
    | "reload"
    | "submit"
    | "list"
    | "suppress"
    | "providers";
  op?: "hold" | "release" | "retry" | "delete";
  ids?: string[];
  suppress?: SuppressRequest;
  /**
   * For "list": answer with a stream (see {@linkcode ControlResponse.stream})
   * rather than one JSON document. Sent by this CLI; older ones leave it out.
   */
  stream?: boolean;
  /**
   * For a streamed "list": the entries already written as `queue list
   * --json` prints them (see {@linkcode ControlResponse.raw}).
   */
  render?: "json";
  /** For "submit": the message and its envelope. */
  message?: { from: string; recipients: string[]; data: string /* base64 */; user: string };
}

/** The daemon's answer: one line of text per id, or an error; `data` for "list". */
export interface ControlResponse {
  ok: boolean;
  lines: string[];
  error?: string;
  data?: unknown;
  /**
   * Items sent one JSON document per line after the response itself (which
   * then ends with a newline and says `"stream": true`), made and written a
   * chunk at a time: 100,000 queue entries never become one giant string.
   * {@linkcode socketRequest} gathers them into `data`.
   */
  stream?: Iterable<unknown>;
  /**
   * The stream's items are text, written as they are after the response
   * line; {@linkcode socketRequest} hands those bytes to
   * {@linkcode SocketRequestOptions.raw} instead of parsing them.
   */
  raw?: boolean;
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
  /** Requests read and handled at once; more connections wait. @default {Infinity} */
  maxConcurrent?: number;
  /** Time a client has, from its connect, to send its whole request. @default {60000} */
  readTimeoutMs?: number;
  /**
   * Silence allowed before the first byte and between reads. A client gets a
   * slot only once its first bytes are in, so idle connections never hold
   * one. @default {5000, or readTimeoutMs when shorter}
   */
  idleTimeoutMs?: number;
}

/** Options for {@linkcode socketRequest}. */
export interface SocketRequestOptions {
  /** Give up after this long without the whole answer (connect included). @default {Infinity} */
  timeoutMs?: number;
  /** Where the text of a raw stream goes, a chunk at a time, as it arrives. */
  raw?: (bytes: Uint8Array) => void;
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
  /** Connections whose request is still being read, closed by {@linkcode close}. */
  #reading = new Set<() => void>();
  /** Requests being handled, waited for by {@linkcode close}. */
  #handling = new Set<Promise<void>>();
  #idleTimeoutMs: number;

  private constructor(
    listener: Deno.Listener,
    handler: ControlHandler,
    options: ControlServerOptions,
  ) {
    this.#listener = listener;
    this.#maxRequest = options.maxRequest ?? MAX_REQUEST;
    this.#slots = new Semaphore(options.maxConcurrent ?? Number.MAX_SAFE_INTEGER);
    this.#readTimeoutMs = options.readTimeoutMs ?? 60_000;
    this.#idleTimeoutMs = Math.min(options.idleTimeoutMs ?? 5_000, this.#readTimeoutMs);
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

  /**
   * Stops listening and removes the socket. Requests already read are
   * answered first; a client still sending its request is cut off without
   * an answer, so it knows nothing was done (a sendmail then tries again).
   */
  async close(): Promise<void> {
    this.#listener.close();
    await this.#done;
    for (const cut of this.#reading) cut();
    await Promise.all(this.#handling);
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
    // Counted from the connect, waiting for a slot included: ten idle
    // connections once held all ten local slots for a minute, and again.
    const deadline = setTimeout(close, this.#readTimeoutMs);
    let handled: PromiseWithResolvers<void> | null = null;
    let idle = setTimeout(close, this.#idleTimeoutMs);
    const progress = () => {
      clearTimeout(idle);
      idle = setTimeout(close, this.#idleTimeoutMs);
    };
    let slot = false;
    try {
      let text: string;
      this.#reading.add(close);
      try {
        // The first bytes are awaited without a slot, so a client that
        // sends nothing holds none; one small buffer is all it costs.
        const first = await readChunk(conn, new Uint8Array(4096));
        clearTimeout(idle);
        await this.#slots.acquire();
        slot = true;
        if (closed) throw new Deno.errors.TimedOut("Request not sent in time");
        progress();
        text = await readAll(conn, { max: this.#maxRequest, first, progress });
      } finally {
        clearTimeout(deadline);
        this.#reading.delete(close);
        clearTimeout(idle);
      }
      if (closed) throw new Deno.errors.Interrupted("Closed before the request was read");
      handled = Promise.withResolvers<void>();
      this.#handling.add(handled.promise);
      response = await handler(JSON.parse(text) as ControlRequest);
    } catch (error) {
      response = {
        ok: false,
        lines: [],
        error: error instanceof Error ? error.message : String(error),
      };
    }
    try {
      if (!closed) await writeResponse(conn, response);
    } catch {
      // The client went away; nothing to tell it.
    } finally {
      close();
      if (slot) this.#slots.release();
      if (handled) {
        this.#handling.delete(handled.promise);
        handled.resolve();
      }
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
  options: SocketRequestOptions = {},
): Promise<ControlResponse | null> {
  return socketRequest(controlPath(spoolDir), req, options);
}

/**
 * Sends one request to the daemon on the socket at `path`. Null when nothing
 * listens there, this user may not reach it, or the daemon closed the
 * connection without an answer (it was stopping: the request was not run);
 * throws `Deno.errors.TimedOut` when the answer takes longer than
 * `options.timeoutMs`.
 */
export async function socketRequest(
  path: string,
  req: ControlRequest,
  options: SocketRequestOptions = {},
): Promise<ControlResponse | null> {
  const limit = options.timeoutMs ?? Infinity;
  let timedOut = false;
  let conn: Deno.UnixConn | null = null;
  const timer = Number.isFinite(limit)
    ? setTimeout(() => {
      timedOut = true;
      conn?.close();
    }, limit)
    : undefined;
  try {
    try {
      conn = await Deno.connect({ transport: "unix", path });
    } catch {
      return null;
    }
    if (timedOut) conn.close();
    await writeAll(conn, new TextEncoder().encode(JSON.stringify(req)));
    await conn.closeWrite();
    return await readResponse(conn, options.raw);
  } catch (error) {
    if (timedOut) {
      throw new Deno.errors.TimedOut(`No answer on ${path} within ${limit / 1000} s`, {
        cause: error,
      });
    }
    if (error instanceof Deno.errors.BrokenPipe || error instanceof Deno.errors.ConnectionReset) {
      return null;
    }
    throw error;
  } finally {
    clearTimeout(timer);
    if (!timedOut) conn?.close();
  }
}

const STREAM_CHUNK = 256 * 1024;

// The response as one JSON document; or, with a stream, its head line and
// then one line per item, written whenever a chunk's worth is made.
async function writeResponse(conn: Deno.Conn, response: ControlResponse): Promise<void> {
  const encoder = new TextEncoder();
  const { stream, ...head } = response;
  if (!stream) return await writeAll(conn, encoder.encode(JSON.stringify(head)));
  let chunk = `${JSON.stringify({ ...head, stream: true })}\n`;
  for (const item of stream) {
    chunk += head.raw ? item as string : `${JSON.stringify(item)}\n`;
    if (chunk.length < STREAM_CHUNK) continue;
    await writeAll(conn, encoder.encode(chunk));
    chunk = "";
  }
  await writeAll(conn, encoder.encode(chunk));
}

// Reads a response, parsing a stream's lines as they arrive (into `data`),
// or handing a raw stream's bytes to `raw`. Null when the daemon closed
// without answering.
async function readResponse(
  conn: Deno.Conn,
  raw?: (bytes: Uint8Array) => void,
): Promise<ControlResponse | null> {
  const decoder = new TextDecoder();
  const buf = new Uint8Array(64 * 1024);
  // The response line, found in the bytes (a raw stream's text is passed on as it came).
  const chunks: Uint8Array[] = [];
  let size = 0;
  let newline = -1;
  while (newline < 0) {
    const n = await conn.read(buf);
    if (n === null) {
      const whole = decoder.decode(concat(chunks, size));
      return whole === "" ? null : JSON.parse(whole) as ControlResponse;
    }
    const at = buf.subarray(0, n).indexOf(0x0a);
    if (at >= 0) newline = size + at;
    chunks.push(buf.slice(0, n));
    size += n;
    if (size > MAX_REQUEST) throw new RangeError("Answer too large");
  }
  const first = concat(chunks, size);
  const head = JSON.parse(decoder.decode(first.subarray(0, newline))) as ControlResponse;
  const rest = first.subarray(newline + 1);
  delete head.stream;
  if (head.raw) {
    if (!raw) throw new TypeError("A raw control answer needs somewhere to go");
    if (rest.length) raw(rest);
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      raw(buf.subarray(0, n));
    }
    return head;
  }
  let text = decoder.decode(rest, { stream: true });
  let scanned = 0;
  const items: unknown[] = [];
  while (true) {
    let start = 0;
    // Only the new text is searched: a long answer without newlines is not rescanned.
    for (let end = text.indexOf("\n", scanned); end >= 0; end = text.indexOf("\n", start)) {
      items.push(JSON.parse(text.slice(start, end)));
      start = end + 1;
    }
    if (start) text = text.slice(start);
    scanned = text.length;
    const n = await conn.read(buf);
    if (n === null) break;
    text += decoder.decode(buf.subarray(0, n), { stream: true });
  }
  text += decoder.decode();
  if (text !== "") throw new SyntaxError("Control answer ended in the middle of a line");
  return { ...head, data: items };
}

function concat(chunks: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let offset = 0;
  for (const c of chunks) (out.set(c, offset), offset += c.length);
  return out;
}

/** One read into `buf`: the bytes read (a copy), or an empty array at the end of the stream. */
async function readChunk(conn: Deno.Conn, buf: Uint8Array): Promise<Uint8Array> {
  const n = await conn.read(buf);
  return n === null ? new Uint8Array(0) : buf.slice(0, n);
}

async function readAll(
  conn: Deno.Conn,
  options: { max?: number; first?: Uint8Array; progress?: () => void } = {},
): Promise<string> {
  const max = options.max ?? MAX_REQUEST;
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (options.first?.length) {
    chunks.push(options.first);
    size = options.first.length;
  }
  const buf = new Uint8Array(64 * 1024);
  // An empty first chunk was the end of the stream already.
  const ended = options.first?.length === 0;
  while (!ended) {
    const n = await conn.read(buf);
    if (n === null) break;
    options.progress?.();
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
