import { promises as fsp } from "node:fs";
import { decodeMeta } from "./decode_meta.ts";
import { DirSync } from "./dir_sync.ts";
import { fileLines } from "./file_lines.ts";
import { encodeEnvelope, type EnvelopeSpan, envelopeSpan, HEAD_PROBE } from "./envelope.ts";
import { MessageNotFoundError, SpoolReadError, SpoolWriteError } from "./errors.ts";
import {
  giveToOwner,
  renameWritten,
  type SpoolOwner,
  wrapWriteError,
  writeDurably,
} from "./durable_write.ts";
import { Outbox } from "./outbox.ts";
import { isQueueId, newQueueId } from "./queue_id.ts";
import { SuppressionList } from "./suppression_list.ts";
import { type MessageMeta, type NewMessage, pendingRecipient } from "./types.ts";

/** Options for {@linkcode Spool.open}. */
export interface SpoolOptions {
  /** fsync files and directories before a write counts as done. Only benchmarks of the disk-less path turn it off. @default true */
  fsync?: boolean;
  /** The clock. @default () => new Date() */
  now?: () => Date;
}

/** Options for {@linkcode Spool.recover}. */
export interface RecoverOptions {
  /**
   * Called with each good message's metadata as it is read (in no
   * particular order), instead of collecting them all in
   * {@linkcode RecoveryReport.metas}: at 100,000 messages the full metadata
   * (attempt histories included) would otherwise be held at once.
   */
  onMessage?: (meta: MessageMeta) => void;
  /**
   * The messages of a snapshot of the queue index that
   * {@linkcode Spool.takeSnapshot} found current. Unless an interrupted
   * write left a temporary file (then every file is read and checked as
   * without it), nothing is read: {@linkcode RecoveryReport.matched} is true
   * and `onMessage` is not called.
   */
  expected?: { has(id: string): boolean; readonly size: number };
}

/** What {@linkcode Spool.recover} found and did at start-up. */
export interface RecoveryReport {
  messages: number;
  /**
   * Every good message's metadata, oldest first (the engine's schedule is
   * built from it); empty when {@linkcode RecoverOptions.onMessage} took them.
   */
  metas: MessageMeta[];
  tmpRemoved: string[];
  orphanBodiesRemoved: string[];
  quarantined: { id: string; reason: string }[];
  /**
   * Metadata the daemon may not read (EACCES: another user's file, e.g. one
   * root wrote). Left in place, never quarantined: once its owner is fixed
   * it is delivered after a restart.
   */
  unreadable: { id: string; reason: string }[];
  /** {@linkcode RecoverOptions.expected} was taken as the queue; nothing was read. */
  matched: boolean;
}

/** Where a stopping daemon leaves its queue index, in the spool's top folder. */
const SNAPSHOT_FILE = "index-snapshot.json";

const FILE_MODE = 0o600;
const DIR_MODE = 0o700;

/**
 * The durable queue: `msg/ID.eml` holds an envelope (the message's first
 * metadata, src/spool/envelope.ts) followed by the message as signed (CRLF);
 * `meta/ID.json`, written once that metadata changes, holds the envelope
 * and per-recipient state from then on. A message exists once its message
 * file is in `msg/`. Every write goes to `tmp/` first, is fsynced, renamed
 * into place, and the directory is fsynced (docs/testing.md I1). Message
 * files of the older layout (message bytes only, metadata always in
 * `meta/`) are read as before.
 */
const FREE_SPACE_CACHE_MS = 1_000;
// Messages remembered as having no metadata file, at most (about 3 MiB): past
// it, new ones are read the ordinary way, metadata file first.
const FRESH_LIMIT = 50_000;

export class Spool {
  readonly dir: string;
  #free: { at: number; bytes: number | null } | undefined;
  #fsync: boolean;
  #now: () => Date;
  #msgSync: DirSync;
  #metaSync: DirSync;
  #topSync: DirSync | undefined;
  #lock: Deno.FsFile | null = null;
  /**
   * Messages this spool created that have no metadata file yet (null until
   * it holds the lock). With the lock it is the only writer of metadata, so
   * reading or removing one of these skips the metadata file: the failed
   * open of a file that is not there, and the error object built for it,
   * cost an attempt's read and removal more than the work itself.
   */
  #fresh: Set<string> | null = null;
  #listeners: ((meta: MessageMeta) => void)[] = [];
  #owner: SpoolOwner;

  private constructor(dir: string, owner: SpoolOwner, options: SpoolOptions) {
    this.dir = dir;
    this.#owner = owner;
    this.#fsync = options.fsync ?? true;
    this.#now = options.now ?? (() => new Date());
    this.#msgSync = new DirSync(`${dir}/msg`);
    this.#metaSync = new DirSync(`${dir}/meta`);
  }

  /**
   * Opens (creating when needed) the spool at `dir`, folders 0700. Whoever
   * owns `dir` owns everything in it: what another user (root's CLI with the
   * daemon stopped) creates is given to that owner, or the daemon could not
   * read it.
   */
  static async open(dir: string, options: SpoolOptions = {}): Promise<Spool> {
    await Deno.mkdir(dir, { recursive: true, mode: DIR_MODE });
    await Deno.chmod(dir, DIR_MODE);
    const info = await Deno.stat(dir);
    const owner = { uid: info.uid ?? 0, gid: info.gid ?? 0 };
    for (const sub of ["/tmp", "/msg", "/meta", "/corrupt"]) {
      await Deno.mkdir(`${dir}${sub}`, { recursive: true, mode: DIR_MODE });
      await giveToOwner(`${dir}${sub}`, owner);
      await Deno.chmod(`${dir}${sub}`, DIR_MODE);
    }
    return new Spool(dir, owner, options);
  }

  /**
   * Takes the spool's exclusive lock so two daemons never deliver from one
   * spool (docs/testing.md D13). Returns false when another process holds it.
   */
  async lock(): Promise<boolean> {
    const file = await Deno.open(`${this.dir}/lock`, {
      read: true,
      write: true,
      create: true,
      mode: FILE_MODE,
    });
    try {
      await giveToOwner(`${this.dir}/lock`, this.#owner);
    } catch (error) {
      file.close();
      throw error;
    }
    if (!(await file.tryLock(true))) {
      file.close();
      return false;
    }
    this.#lock = file;
    this.#fresh = new Set();
    return true;
  }

  /** True when a file can be written (and fsynced) in the spool now: the readiness probe. */
  async writable(): Promise<boolean> {
    const path = `${this.dir}/tmp/.probe-${crypto.randomUUID().slice(0, 8)}`;
    try {
      await this.#writeFile(path, [new Uint8Array([0x0a])]);
      await Deno.remove(path);
      return true;
    } catch {
      await Deno.remove(path).catch(() => {});
      return false;
    }
  }

  /** A durable outbox in `<spool>/<name>/` (created 0700), e.g. for webhook events. */
  async outbox<T>(name: string): Promise<Outbox<T>> {
    if (!/^[a-z]+$/.test(name)) throw new RangeError(`Invalid outbox name "${name}"`);
    await Deno.mkdir(`${this.dir}/${name}`, { recursive: true, mode: DIR_MODE });
    await giveToOwner(`${this.dir}/${name}`, this.#owner);
    return new Outbox<T>(`${this.dir}/${name}`, {
      tmp: `${this.dir}/tmp`,
      fsync: this.#fsync,
      owner: this.#owner,
    });
  }

  /**
   * The suppression list kept in this spool (`suppression.jsonl`), read from
   * disk. Only the lock holder (the daemon, or the CLI while it is stopped)
   * should change it.
   */
  suppressions(options: { ttlMs?: number } = {}): Promise<SuppressionList> {
    return SuppressionList.open(this.dir, {
      ...options,
      fsync: this.#fsync,
      now: this.#now,
      owner: this.#owner,
    });
  }

  /**
   * Replaces `<spool>/<name>.json` (small state the daemon keeps across
   * restarts, e.g. provider suspensions) atomically and durably: written and
   * fsynced under tmp/, renamed into place, the spool folder fsynced.
   */
  async writeState(name: string, value: unknown): Promise<void> {
    if (!/^[a-z_]+$/.test(name)) throw new RangeError(`Invalid state name "${name}"`);
    const tmp = `${this.dir}/tmp/${name}.${crypto.randomUUID().slice(0, 8)}.json`;
    try {
      await this.#writeFile(tmp, [new TextEncoder().encode(JSON.stringify(value))]);
      await Deno.rename(tmp, `${this.dir}/${name}.json`);
      if (this.#fsync) await (this.#topSync ??= new DirSync(this.dir)).sync();
    } catch (error) {
      await this.#discard([tmp]);
      throw wrapWriteError(error, `${name}.json`);
    }
  }

  /** Reads what {@linkcode writeState} wrote; null when there is none or it is not JSON. */
  async readState(name: string): Promise<unknown> {
    try {
      return JSON.parse(await Deno.readTextFile(`${this.dir}/${name}.json`));
    } catch {
      return null;
    }
  }

  /** Releases the lock taken by {@linkcode lock}. */
  close(): void {
    this.#lock?.close();
    this.#lock = null;
    this.#msgSync.close();
    this.#metaSync.close();
    this.#topSync?.close();
  }

  /**
   * Stores a new message durably and returns its metadata. `parts` are
   * written in order as the message file. Throws {@linkcode SpoolFullError}
   * on a full disk and {@linkcode SpoolWriteError} otherwise; either way no
   * file of the message is left behind.
   */
  async create(parts: Uint8Array[], message: NewMessage): Promise<MessageMeta> {
    const id = message.id ?? newQueueId(this.#now());
    if (!isQueueId(id)) throw new SpoolWriteError(`Invalid queue id "${id}"`);
    const now = this.#now().toISOString();
    const size = parts.reduce((n, p) => n + p.length, 0);
    const meta: MessageMeta = {
      version: 1,
      id,
      ...message,
      recipients: message.recipients.map(pendingRecipient),
      state: "queued",
      created_at: now,
      next_attempt_at: now,
      size,
    };
    const tmp = `${this.dir}/tmp/${id}.eml`;
    try {
      // One file: envelope and message, fsynced under tmp/, renamed into
      // msg/ (the message now exists), and msg/ fsynced before the caller
      // may answer 250 (docs/testing.md I1).
      const file = [encodeEnvelope(encodeMeta(meta)), ...parts];
      await this.#writeFile(tmp, file);
      await renameWritten(tmp, this.#bodyPath(id), file);
      if (this.#fsync) await this.#msgSync.sync();
    } catch (error) {
      await this.#discard([tmp, this.#bodyPath(id)]);
      throw wrapWriteError(error, id);
    }
    if (this.#fresh && this.#fresh.size < FRESH_LIMIT) this.#fresh.add(id);
    for (const listener of this.#listeners) listener(meta);
    return meta;
  }

  /**
   * Calls `listener` after each message {@linkcode create} stores, so the
   * delivery engine learns of new mail without polling the directory.
   */
  subscribe(listener: (meta: MessageMeta) => void): void {
    this.#listeners.push(listener);
  }

  /** Reads one message's metadata: `meta/ID.json`, or the message file's envelope until there is one. */
  async get(id: string): Promise<MessageMeta> {
    if (!isQueueId(id)) throw new MessageNotFoundError(id);
    if (this.#fresh?.has(id)) return await this.#envelopeMeta(id);
    let text: string;
    try {
      text = await Deno.readTextFile(this.#metaPath(id));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return await this.#envelopeMeta(id);
      throw await this.#readError(this.#metaPath(id), error);
    }
    return decodeMeta(text, id);
  }

  /** Reads one message's stored bytes (the message as signed, without the envelope). */
  async readBody(id: string): Promise<Uint8Array> {
    const { bytes, span } = await this.#readMessageFile(id);
    return span ? bytes.subarray(span.bodyOffset) : bytes;
  }

  /**
   * Reads a message's metadata and stored bytes for an attempt, its message
   * file once: what {@linkcode get} and {@linkcode readBody} give.
   */
  async load(id: string): Promise<{ meta: MessageMeta; body: Uint8Array }> {
    if (!isQueueId(id)) throw new MessageNotFoundError(id);
    let text: string | null = null;
    try {
      if (!this.#fresh?.has(id)) text = await Deno.readTextFile(this.#metaPath(id));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) {
        throw await this.#readError(this.#metaPath(id), error);
      }
    }
    const { bytes, span } = await this.#readMessageFile(id);
    const body = span ? bytes.subarray(span.bodyOffset) : bytes;
    if (text !== null) return { meta: decodeMeta(text, id), body };
    // A message file of the older layout without metadata was never acknowledged.
    if (!span) throw new MessageNotFoundError(id);
    return { meta: decodeEnvelope(bytes.subarray(span.jsonStart, span.jsonEnd), span, id), body };
  }

  // A message file's bytes and where its envelope lies (null: the older layout).
  async #readMessageFile(id: string): Promise<{ bytes: Uint8Array; span: EnvelopeSpan | null }> {
    if (!isQueueId(id)) throw new MessageNotFoundError(id);
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(this.#bodyPath(id));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) throw new MessageNotFoundError(id);
      throw await this.#readError(this.#bodyPath(id), error);
    }
    const span = envelopeSpan(bytes.subarray(0, HEAD_PROBE));
    if (typeof span === "string") throw new SpoolReadError(`${this.#bodyPath(id)}: ${span}`);
    return { bytes, span };
  }

  // The metadata in a message file's envelope (a message no attempt has changed yet).
  async #envelopeMeta(id: string): Promise<MessageMeta> {
    const path = this.#bodyPath(id);
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) throw new MessageNotFoundError(id);
      throw await this.#readError(path, error);
    }
    try {
      const head = await readUpTo(file, HEAD_PROBE);
      const span = envelopeSpan(head);
      // A message file of the older layout without metadata was never acknowledged.
      if (span === null) throw new MessageNotFoundError(id);
      if (typeof span === "string") throw new SpoolReadError(`${path}: ${span}`);
      let json = head.subarray(span.jsonStart, span.jsonEnd);
      if (span.jsonEnd > head.length) {
        await file.seek(span.jsonStart, Deno.SeekMode.Start);
        json = await readUpTo(file, span.jsonEnd - span.jsonStart);
      }
      return decodeEnvelope(json, span, id);
    } finally {
      file.close();
    }
  }

  /** A message's header section (up to 64 KiB) for display, CRLF-separated, decoded as UTF-8 (RFC 6532). */
  async readHeaders(id: string): Promise<string> {
    if (!isQueueId(id)) throw new MessageNotFoundError(id);
    let file: Deno.FsFile;
    try {
      file = await Deno.open(this.#bodyPath(id));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) throw new MessageNotFoundError(id);
      throw await this.#readError(this.#bodyPath(id), error);
    }
    try {
      const span = envelopeSpan(await readUpTo(file, HEAD_PROBE));
      if (typeof span === "string") throw new SpoolReadError(`${this.#bodyPath(id)}: ${span}`);
      await file.seek(span?.bodyOffset ?? 0, Deno.SeekMode.Start);
      const text = new TextDecoder().decode(await readUpTo(file, 64 * 1024));
      const end = text.indexOf("\r\n\r\n");
      return end < 0 ? text : text.slice(0, end);
    } finally {
      file.close();
    }
  }

  /**
   * Bytes available to unprivileged writers on the spool's file system, read at
   * most once a second; null when it cannot be read (without `--allow-sys=statfs`,
   * or a file system that does not say).
   */
  async freeBytes(): Promise<number | null> {
    const now = Date.now();
    if (this.#free !== undefined && now - this.#free.at < FREE_SPACE_CACHE_MS) {
      return this.#free.bytes;
    }
    let bytes: number | null = null;
    try {
      const fs = await fsp.statfs(this.dir);
      bytes = fs.bavail * fs.bsize;
    } catch {
      // Unknown: the write itself still reports a full disk (ENOSPC → 452).
    }
    this.#free = { at: now, bytes };
    return bytes;
  }

  /** Ids of every queued message, oldest first (ids sort by time). */
  async ids(): Promise<string[]> {
    const ids: string[] = [];
    for await (const entry of Deno.readDir(`${this.dir}/msg`)) {
      if (entry.isFile && entry.name.endsWith(".eml")) {
        const id = entry.name.slice(0, -4);
        if (isQueueId(id)) ids.push(id);
      }
    }
    return ids.sort();
  }

  /** Every queued message's metadata, oldest first; unreadable entries are skipped. */
  async list(): Promise<MessageMeta[]> {
    // Removed meanwhile, or corrupt (recover() quarantines those): skipped.
    const metas = await mapBounded(await this.ids(), (id) => this.get(id).catch(() => null));
    return metas.filter((m): m is MessageMeta => m !== null);
  }

  /**
   * Replaces a message's metadata atomically: the new file is written and
   * fsynced under tmp/, renamed over the old one, and the directory fsynced.
   */
  async writeMeta(meta: MessageMeta): Promise<void> {
    // From now on the metadata file is read (until it exists, a reader falls back to the envelope).
    this.#fresh?.delete(meta.id);
    const tmp = `${this.dir}/tmp/${meta.id}.${crypto.randomUUID().slice(0, 8)}.json`;
    try {
      const file = [encodeMeta(meta)];
      await this.#writeFile(tmp, file);
      await renameWritten(tmp, this.#metaPath(meta.id), file);
      if (this.#fsync) await this.#metaSync.sync();
    } catch (error) {
      await this.#discard([tmp]);
      throw wrapWriteError(error, meta.id);
    }
  }

  /**
   * Removes a message: its message file first (from then on it no longer
   * exists), then its metadata.
   */
  async remove(id: string, options: { durable?: boolean } = {}): Promise<void> {
    if (!isQueueId(id)) throw new MessageNotFoundError(id);
    try {
      await Deno.remove(this.#bodyPath(id));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) throw new MessageNotFoundError(id);
      throw error;
    }
    // After delivery the removal is not fsynced, as Postfix does not fsync
    // its deletions: one lost in a crash brings the message back and it is
    // delivered once more (a duplicate, never a loss), while every delivery
    // would otherwise add a directory sync to the one new submissions wait
    // on. An operator's delete is made durable: deleted mail never returns.
    if (options.durable && this.#fsync) await this.#msgSync.sync();
    if (this.#fresh?.delete(id)) return; // it never had a metadata file
    // Left behind by a crash, metadata without its message file is quarantined at the next start.
    await Deno.remove(this.#metaPath(id)).catch(() => {});
  }

  /**
   * Start-up repair (docs/testing.md D11): empties tmp/, removes message bodies
   * of the older layout that never got metadata (never acknowledged), and
   * moves metadata or envelopes that cannot be read, or metadata whose
   * message file is missing, to corrupt/. Never throws for a bad entry.
   */
  async recover(options: RecoverOptions = {}): Promise<RecoveryReport> {
    const report: RecoveryReport = {
      messages: 0,
      metas: [],
      tmpRemoved: [],
      orphanBodiesRemoved: [],
      quarantined: [],
      unreadable: [],
      matched: false,
    };
    for await (const entry of Deno.readDir(`${this.dir}/tmp`)) {
      await Deno.remove(`${this.dir}/tmp/${entry.name}`, { recursive: true }).catch(() => {});
      report.tmpRemoved.push(entry.name);
    }
    if (options.expected && !report.tmpRemoved.length) {
      // The spool is as the last clean stop left it (Spool.takeSnapshot
      // compared the folders' change times, Spool.saveSnapshot the files).
      report.messages = options.expected.size;
      report.matched = true;
      return report;
    }
    const { bodies, names } = await this.#listFiles();
    names.sort();
    // Read one after another, synchronously: at start-up nothing else waits
    // on the event loop, and 100,000 small files cost half the CPU time of
    // async reads (thread hand-offs), 64 at a time. A message handed to
    // onMessage as soon as it is read is garbage a moment later: the full
    // metadata of 100,000 messages is never held at once.
    const take = options.onMessage;
    const checked: (MessageMeta | string | { unreadable: string } | true)[] = [];
    for (const [i, name] of names.entries()) {
      if (i % 2048 === 2047) await new Promise((resolve) => setTimeout(resolve, 0));
      const result = this.#checkMeta(name, bodies);
      if (!take || typeof result === "string" || "unreadable" in result) checked.push(result);
      else {
        take(result);
        checked.push(true);
      }
    }
    for (const [i, result] of checked.entries()) {
      const id = names[i].slice(0, -5);
      if (typeof result === "string") await this.#quarantine(names[i], result, report);
      else if (result !== true && "unreadable" in result) {
        report.unreadable.push({ id, reason: result.unreadable });
        bodies.delete(id);
      } else {
        if (result !== true) report.metas.push(result);
        report.messages++;
        bodies.delete(id);
      }
    }
    // What is left has no metadata file (a quarantined message's body went
    // with it): a message no attempt has changed yet, whose metadata is its
    // envelope, or an older layout's body that never got metadata.
    const quarantined = new Set(report.quarantined.map((q) => q.id));
    const left = [...bodies.keys()].filter((id) => !quarantined.has(id)).sort();
    for (const [i, id] of left.entries()) {
      if (i % 2048 === 2047) await new Promise((resolve) => setTimeout(resolve, 0));
      const result = isQueueId(id) ? this.#checkEnvelope(id) : null;
      if (result === null) {
        await Deno.remove(this.#bodyPath(id)).catch(() => {});
        report.orphanBodiesRemoved.push(`${id}.eml`);
      } else if (typeof result === "string") {
        await this.#quarantineBody(id, result, report);
      } else if ("unreadable" in result) {
        report.unreadable.push({ id, reason: result.unreadable });
      } else {
        if (take) take(result);
        else report.metas.push(result);
        report.messages++;
      }
    }
    if (!take) report.metas.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return report;
  }

  /**
   * Leaves a queue index (its {@linkcode QueueIndex.snapshot} lines) for
   * the next start, after a line stamped with the times the message and
   * metadata folders last changed. Only the lock holder calls it, as it
   * stops, once nothing writes messages any more. Nothing is left (false)
   * when the files are not exactly the index's messages.
   */
  async saveSnapshot(
    index: { has(id: string): boolean; readonly size: number; snapshot(): Iterable<string> },
  ): Promise<boolean> {
    // Stamped before the listing: a change while it runs makes the snapshot stale.
    const times = await this.#folderTimes();
    if (times.meta_mtime === null || times.msg_mtime === null) return false;
    const { bodies, names } = await this.#listFiles();
    if (!holdsExactly(index, bodies, names)) return false;
    const encoder = new TextEncoder();
    let chunk = `${JSON.stringify({ version: 1, ...times })}\n`;
    const parts: Uint8Array[] = [];
    for (const line of index.snapshot()) {
      chunk += line;
      if (chunk.length < 256 * 1024) continue;
      parts.push(encoder.encode(chunk));
      chunk = "";
    }
    parts.push(encoder.encode(chunk));
    const tmp = `${this.dir}/tmp/${SNAPSHOT_FILE}.${crypto.randomUUID().slice(0, 8)}`;
    try {
      await this.#writeFile(tmp, parts);
      await Deno.rename(tmp, `${this.dir}/${SNAPSHOT_FILE}`);
    } catch (error) {
      await this.#discard([tmp]);
      throw error;
    }
    return true;
  }

  // When msg/ and meta/ last changed (ms), as a snapshot's first line records them.
  async #folderTimes(): Promise<{ meta_mtime: number | null; msg_mtime: number | null }> {
    const [meta, msg] = await Promise.all([
      Deno.stat(`${this.dir}/meta`),
      Deno.stat(`${this.dir}/msg`),
    ]);
    return { meta_mtime: meta.mtime?.getTime() ?? null, msg_mtime: msg.mtime?.getTime() ?? null };
  }

  // The message files (id → is a regular file) and metadata file names;
  // both folders are listed at once (each listing waits on the file system).
  async #listFiles(): Promise<{ bodies: Map<string, boolean>; names: string[] }> {
    const bodies = new Map<string, boolean>();
    const names: string[] = [];
    await Promise.all([
      (async () => {
        for await (const entry of Deno.readDir(`${this.dir}/msg`)) {
          bodies.set(entry.name.replace(/\.eml$/, ""), entry.isFile);
        }
      })(),
      (async () => {
        for await (const entry of Deno.readDir(`${this.dir}/meta`)) names.push(entry.name);
      })(),
    ]);
    return { bodies, names };
  }

  /**
   * Takes (opens and removes) the snapshot a clean stop left: its lines
   * after the stamp, read as they are asked for (see {@linkcode fileLines}),
   * or why they cannot be used. It is stale once a message
   * or metadata file was added, replaced or removed since (the folders'
   * change times differ): `minimta queue` changes made while the daemon was
   * stopped, a crash after a start, files moved by hand. Null when there is
   * none.
   */
  async takeSnapshot(): Promise<{ lines: Iterable<Uint8Array> } | { stale: string } | null> {
    const path = `${this.dir}/${SNAPSHOT_FILE}`;
    let lines: Generator<Uint8Array>;
    try {
      lines = fileLines(await Deno.open(path));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return null;
      return { stale: `${path}: ${error instanceof Error ? error.message : error}` };
    }
    // Used once: a crash after this start must not find it again. (The open
    // file is still read.)
    await Deno.remove(path).catch(() => {});
    const stale = await this.#staleness(lines);
    if (stale === null) return { lines };
    lines.return(undefined);
    return { stale: `${path}: ${stale}` };
  }

  // Why a snapshot whose first line `lines` gives next cannot be used; null when it can.
  async #staleness(lines: Iterator<Uint8Array>): Promise<string | null> {
    let head: { version?: unknown; meta_mtime?: unknown; msg_mtime?: unknown } | null = null;
    try {
      const first = lines.next();
      if (!first.done) head = JSON.parse(new TextDecoder().decode(first.value));
    } catch {
      // Reported below.
    }
    if (typeof head !== "object" || head === null) return "the first line is not JSON";
    if (head.version !== 1) return `version ${head.version} is not 1`;
    const now = await this.#folderTimes();
    if (now.meta_mtime !== head.meta_mtime || now.msg_mtime !== head.msg_mtime) {
      return "the spool changed after it was written";
    }
    return null;
  }

  // The envelope of a message file without a metadata file: its metadata,
  // null for an older layout's orphan body, or why it is unusable.
  #checkEnvelope(id: string): MessageMeta | null | string | { unreadable: string } {
    const path = this.#bodyPath(id);
    let file: Deno.FsFile;
    try {
      file = Deno.openSync(path);
    } catch (error) {
      if (error instanceof Deno.errors.PermissionDenied) {
        return { unreadable: this.#permissionError(path, error).message };
      }
      return error instanceof Error ? error.message : String(error);
    }
    try {
      const head = readUpToSync(file, HEAD_PROBE);
      const span = envelopeSpan(head);
      if (span === null || typeof span === "string") return span;
      let json = head.subarray(span.jsonStart, span.jsonEnd);
      if (span.jsonEnd > head.length) {
        file.seekSync(span.jsonStart, Deno.SeekMode.Start);
        json = readUpToSync(file, span.jsonEnd - span.jsonStart);
      }
      return decodeEnvelope(json, span, id);
    } catch (error) {
      return error instanceof Error ? error.message : String(error);
    } finally {
      file.close();
    }
  }

  // The metadata of one entry, why it is unusable, or why it may not be read.
  #checkMeta(
    name: string,
    bodies: Map<string, boolean>,
  ): MessageMeta | string | { unreadable: string } {
    const id = name.endsWith(".json") ? name.slice(0, -5) : "";
    if (!isQueueId(id)) return "unexpected file name";
    const body = bodies.get(id);
    if (body === undefined) return "message file is missing";
    if (!body) return "message file is not a regular file";
    let text: string;
    try {
      text = Deno.readTextFileSync(this.#metaPath(id));
    } catch (error) {
      // Not corrupt, only someone else's: quarantining it would lose mail
      // that was answered "queued" (issue 8).
      if (error instanceof Deno.errors.PermissionDenied) {
        return { unreadable: this.#permissionError(this.#metaPath(id), error).message };
      }
      return error instanceof Error ? error.message : String(error);
    }
    try {
      return decodeMeta(text, id);
    } catch (error) {
      return error instanceof Error ? error.message : String(error);
    }
  }

  // A read that failed for lack of permission names the file, its owner and
  // the fix; other errors go up as they are.
  async #readError(path: string, error: unknown): Promise<unknown> {
    if (!(error instanceof Deno.errors.PermissionDenied)) return error;
    const uid = await Deno.lstat(path).then((i) => i.uid, () => null);
    return this.#permissionError(path, error, uid);
  }

  #permissionError(
    path: string,
    error: unknown,
    uid: number | null = lstatUid(path),
  ): Deno.errors.PermissionDenied {
    const { uid: owner, gid } = this.#owner;
    return new Deno.errors.PermissionDenied(
      `Cannot read queue file "${path}": permission denied (owned by uid ${uid}, the spool by uid ${owner}); ` +
        `it stays queued until the spool's owner can read it: chown -R ${owner}:${gid} "${this.dir}"`,
      { cause: error },
    );
  }

  async #quarantine(name: string, reason: string, report: RecoveryReport): Promise<void> {
    const id = name.replace(/\.json$/, "");
    const stamp = this.#now().getTime();
    await Deno.rename(`${this.dir}/meta/${name}`, `${this.dir}/corrupt/${name}.${stamp}`).catch(
      () => {},
    );
    await Deno.rename(this.#bodyPath(id), `${this.dir}/corrupt/${id}.eml.${stamp}`).catch(() => {});
    report.quarantined.push({ id, reason });
  }

  async #quarantineBody(id: string, reason: string, report: RecoveryReport): Promise<void> {
    const stamp = this.#now().getTime();
    await Deno.rename(this.#bodyPath(id), `${this.dir}/corrupt/${id}.eml.${stamp}`).catch(() => {});
    report.quarantined.push({ id, reason });
  }

  #writeFile(path: string, parts: Uint8Array[]): Promise<void> {
    return writeDurably(path, parts, { fsync: this.#fsync, owner: this.#owner });
  }

  async #discard(paths: string[]): Promise<void> {
    for (const path of paths) await Deno.remove(path).catch(() => {});
  }

  #bodyPath(id: string): string {
    return `${this.dir}/msg/${id}.eml`;
  }

  #metaPath(id: string): string {
    return `${this.dir}/meta/${id}.json`;
  }
}

const encoder = new TextEncoder();

function lstatUid(path: string): number | null {
  try {
    return Deno.lstatSync(path).uid;
  } catch {
    return null;
  }
}

/** Reads up to `limit` bytes from the file's current position (fewer at its end). */
async function readUpTo(file: Deno.FsFile, limit: number): Promise<Uint8Array> {
  const buf = new Uint8Array(limit);
  let filled = 0;
  while (filled < limit) {
    const n = await file.read(buf.subarray(filled));
    if (n === null) break;
    filled += n;
  }
  return buf.subarray(0, filled);
}

function readUpToSync(file: Deno.FsFile, limit: number): Uint8Array {
  const buf = new Uint8Array(limit);
  let filled = 0;
  while (filled < limit) {
    const n = file.readSync(buf.subarray(filled));
    if (n === null) break;
    filled += n;
  }
  return buf.subarray(0, filled);
}

// The metadata in an envelope's JSON bytes, read as far as the file had them.
function decodeEnvelope(json: Uint8Array, span: EnvelopeSpan, id: string): MessageMeta {
  if (json.length !== span.jsonEnd - span.jsonStart) {
    throw new SpoolReadError("envelope is cut short");
  }
  return decodeMeta(new TextDecoder().decode(json), id);
}

function encodeMeta(meta: MessageMeta): Uint8Array {
  return encoder.encode(JSON.stringify(meta));
}

// Reads overlap (64 at a time) so that start-up and `queue list` over
// 100,000 messages take seconds, not minutes; results keep input order.
async function mapBounded<T, R>(items: T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(64, items.length) }, worker));
  return out;
}

// True when the listed message files (id → is a regular file) and metadata
// file names are exactly the `expected` messages: every id expected has its
// message file, every metadata file belongs to one of them.
function holdsExactly(
  expected: { has(id: string): boolean; readonly size: number },
  bodies: Map<string, boolean>,
  metaNames: string[],
): boolean {
  if (bodies.size !== expected.size) return false;
  for (const [id, isFile] of bodies) if (!isFile || !expected.has(id)) return false;
  for (const name of metaNames) {
    if (!name.endsWith(".json") || bodies.get(name.slice(0, -5)) !== true) return false;
  }
  return true;
}
