import { isDiskFull, SpoolFullError, SpoolWriteError } from "./errors.ts";

/**
 * Writes a new file (mode 0600) from byte parts and, with `fsync`, flushes
 * its data before returning. A failed fsync is never retried and taken as
 * success (docs/testing.md D7): the error goes up and the write is abandoned.
 */
export async function writeDurably(
  path: string,
  parts: Uint8Array[],
  fsync: boolean,
): Promise<void> {
  const file = await Deno.open(path, { write: true, createNew: true, mode: 0o600 });
  try {
    for (const part of parts) {
      let offset = 0;
      while (offset < part.length) offset += await file.write(part.subarray(offset));
    }
    if (fsync) await file.syncData();
  } finally {
    file.close();
  }
}

/** Turns a write failure into {@linkcode SpoolFullError} or {@linkcode SpoolWriteError}. */
export function wrapWriteError(error: unknown, id: string): Error {
  if (isDiskFull(error)) {
    return new SpoolFullError(`Cannot store "${id}": disk full`, { cause: error });
  }
  const detail = error instanceof Error ? error.message : String(error);
  return new SpoolWriteError(`Cannot store "${id}": ${detail}`, { cause: error });
}
