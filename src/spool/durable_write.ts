import { isDiskFull, SpoolFullError, SpoolWriteError } from "./errors.ts";

/** The owner of the spool folder (queue.dir): every file and folder in it must belong to it. */
export interface SpoolOwner {
  uid: number;
  gid: number;
}

/** Options for {@linkcode writeDurably}. */
export interface WriteOptions {
  /** Flush the file's data before returning. */
  fsync: boolean;
  /**
   * Give the new file to this owner when the writer is someone else (root's
   * CLI with the daemon stopped), so the daemon can read it. @default null
   */
  owner?: SpoolOwner | null;
}

/**
 * Files up to this size are opened and written with synchronous calls, on
 * the calling thread: each asynchronous file call is a hand-off to a thread
 * pool and back, which under load cost the intake more CPU than the calls
 * themselves (about 12% of its thread for open, write and rename; bench/).
 * The flush, which waits for the disk, stays asynchronous. Bigger files keep
 * every call off the event loop.
 */
export const SYNC_WRITE_LIMIT = 256 * 1024;

/**
 * Writes a new file (mode 0600) from byte parts and, with `fsync`, flushes
 * its data before returning. A failed fsync is never retried and taken as
 * success (docs/testing.md D7): the error goes up and the write is abandoned.
 */
export async function writeDurably(
  path: string,
  parts: Uint8Array[],
  options: WriteOptions,
): Promise<void> {
  const small = byteLength(parts) <= SYNC_WRITE_LIMIT;
  const file = small ? Deno.openSync(path, NEW_FILE) : await Deno.open(path, NEW_FILE);
  try {
    const given = options.owner && creatorUid !== options.owner.uid
      ? await giveNewFile(path, options.owner)
      : false;
    for (const part of parts) {
      let offset = 0;
      while (offset < part.length) {
        const rest = part.subarray(offset);
        offset += small ? file.writeSync(rest) : await file.write(rest);
      }
    }
    // A new owner is metadata that fdatasync need not flush.
    if (options.fsync) await (given ? file.sync() : file.syncData());
  } finally {
    file.close();
  }
}

/**
 * Renames a file {@linkcode writeDurably} wrote from `parts`: synchronously
 * when it was small enough to be written so, since a rename is one metadata
 * call like the open.
 */
export async function renameWritten(from: string, to: string, parts: Uint8Array[]): Promise<void> {
  if (byteLength(parts) <= SYNC_WRITE_LIMIT) Deno.renameSync(from, to);
  else await Deno.rename(from, to);
}

const NEW_FILE: Deno.OpenOptions = { write: true, createNew: true, mode: 0o600 };

/** The total size of byte parts. */
function byteLength(parts: Uint8Array[]): number {
  let size = 0;
  for (const part of parts) size += part.length;
  return size;
}

/**
 * The owner of the files this process creates (its file-system uid), learnt
 * from the first one: when it is the spool's owner, later files need no
 * lstat to check (two system calls less per message at intake).
 */
let creatorUid: number | null = null;

async function giveNewFile(path: string, owner: SpoolOwner): Promise<boolean> {
  const { uid } = await Deno.lstat(path);
  creatorUid = uid;
  return await chownFrom(path, uid, owner);
}

/**
 * Gives `path` to the spool's owner when someone else owns it, e.g. a file
 * root's CLI made with the daemon stopped: a 0600 file of root's is one the
 * daemon cannot read. Returns true when it changed the owner. Only root may
 * do this; anyone else gets the error.
 */
export async function giveToOwner(path: string, owner: SpoolOwner): Promise<boolean> {
  return await chownFrom(path, (await Deno.lstat(path)).uid, owner);
}

async function chownFrom(path: string, uid: number | null, owner: SpoolOwner): Promise<boolean> {
  if (uid === null || uid === owner.uid) return false;
  await Deno.chown(path, owner.uid, owner.gid);
  return true;
}

/** Turns a write failure into {@linkcode SpoolFullError} or {@linkcode SpoolWriteError}. */
export function wrapWriteError(error: unknown, id: string): Error {
  if (isDiskFull(error)) {
    return new SpoolFullError(`Cannot store "${id}": disk full`, { cause: error });
  }
  const detail = error instanceof Error ? error.message : String(error);
  return new SpoolWriteError(`Cannot store "${id}": ${detail}`, { cause: error });
}
