/** Options of {@linkcode RotatingFile}. */
export interface RotatingFileOptions {
  /** Size in bytes after which the live file is rotated. @default {104857600} */
  maxSize?: number;
  /** How many rotated files (`FILE.1` … `FILE.N`) are kept. @default {10} */
  maxFiles?: number;
}

/**
 * A log file rotated by size: when a line would take the live file past
 * `maxSize`, `FILE.N-1` becomes `FILE.N` (the oldest is replaced), …,
 * `FILE` becomes `FILE.1`, and a new `FILE` is started. A line is never
 * split across files.
 *
 * Each line is one `write(2)` with no buffering in the process, as stdout is:
 * a line is in the kernel before {@linkcode RotatingFile.write} returns, so
 * a crash or `kill -9` loses nothing. There is no fsync per line: that
 * would block the event loop on the disk for every mail-log event (about
 * 0.2 ms a line on this machine's SSD, 150 times a plain write).
 */
export class RotatingFile {
  readonly path: string;
  #maxSize: number;
  #maxFiles: number;
  #file: Deno.FsFile | null = null;
  #size = 0;

  /** Opens (creating, mode 0640) `path` for appending. @throws {Deno.errors.PermissionDenied} and the like */
  constructor(path: string, options: RotatingFileOptions = {}) {
    this.path = path;
    this.#maxSize = options.maxSize ?? 100 * 1024 * 1024;
    this.#maxFiles = Math.max(1, options.maxFiles ?? 10);
    this.reopen();
  }

  /**
   * Closes the file and opens `path` again: after an outside logrotate moved
   * it away, new lines go to a new file at `path` (SIGUSR1).
   */
  reopen(): void {
    this.close();
    const file = Deno.openSync(this.path, { create: true, append: true, mode: 0o640 });
    try {
      this.#size = file.statSync().size;
    } catch (error) {
      file.close();
      throw error;
    }
    this.#file = file;
  }

  /** Appends one whole line, rotating first when it would not fit. */
  write(bytes: Uint8Array): void {
    if (!this.#file) this.reopen();
    if (this.#size > 0 && this.#size + bytes.length > this.#maxSize) {
      // Someone else (copytruncate) may have changed the file: trust the disk.
      this.#size = this.#file!.statSync().size;
      if (this.#size > 0 && this.#size + bytes.length > this.#maxSize) this.#rotate();
    }
    let offset = 0;
    while (offset < bytes.length) offset += this.#file!.writeSync(bytes.subarray(offset));
    this.#size += bytes.length;
  }

  /** Closes the file; a later write opens it again. */
  close(): void {
    try {
      this.#file?.close();
    } catch {
      // Already closed.
    }
    this.#file = null;
  }

  #rotate(): void {
    this.close();
    for (let i = this.#maxFiles - 1; i >= 1; i--) {
      try {
        Deno.renameSync(`${this.path}.${i}`, `${this.path}.${i + 1}`);
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
    }
    Deno.renameSync(this.path, `${this.path}.1`);
    this.reopen();
  }
}
