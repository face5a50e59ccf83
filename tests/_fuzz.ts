/**
 * Helpers for the robustness tests (TESTPLAN R13, R14): a seeded PRNG, what
 * /proc says about the daemon (open descriptors, resident memory), and the
 * checks that the daemon neither crashed nor logged a fault meanwhile.
 */
import type { Mta } from "./_harness.ts";

/** The seed of every random choice; set MINIMTA_FUZZ_SEED to replay a failure. */
export const FUZZ_SEED: number = Number(Deno.env.get("MINIMTA_FUZZ_SEED") ?? 0x5eed_0013) >>> 0;

/** A small seeded PRNG (mulberry32): the same seed gives the same bytes on every machine. */
export class Rng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** 32 random bits. */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + (this.next() % (max - min + 1));
  }

  /** One of `items`. */
  pick<T>(items: readonly T[]): T {
    return items[this.next() % items.length];
  }

  /** `n` random bytes. */
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const word = this.next();
      for (let j = 0; j < 4 && i + j < n; j++) out[i + j] = (word >>> (8 * j)) & 0xff;
    }
    return out;
  }

  /** `total` split at random points into `parts` lengths (some may be 0). */
  split(total: number, parts: number): number[] {
    const cuts = Array.from({ length: parts - 1 }, () => this.next() % (total + 1)).sort((a, b) =>
      a - b
    );
    return [...cuts, total].map((cut, i) => cut - (i === 0 ? 0 : cuts[i - 1]));
  }
}

/** Open file descriptors of a process (`/proc/<pid>/fd`). */
export function fdCount(pid: number): number {
  let n = 0;
  for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
  return n;
}

/** Resident set size of a process in KiB (`VmRSS` in `/proc/<pid>/status`). */
export function rssKib(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!match) throw new Error(`No VmRSS in /proc/${pid}/status`);
  return Number(match[1]);
}

/** True while `/proc/<pid>` is a live process (not gone, not a zombie). */
export function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(Deno.readTextFileSync(`/proc/${pid}/status`));
  } catch {
    return false;
  }
}

/**
 * Polls `value` every 100 ms until it is at most `limit`, for up to
 * `timeoutMs`; returns the last value read either way.
 */
export async function settleTo(
  value: () => number,
  limit: number,
  timeoutMs: number,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = value();
  while (last > limit && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    last = value();
  }
  return last;
}

/**
 * What the daemon reported that a crash-free run must not contain: an
 * uncaught exception or unhandled rejection (Deno prints `Uncaught` and a
 * stack to stderr and exits), a panic, or a log line at level ERROR/FATAL.
 */
export function daemonFaults(mta: Mta): string[] {
  const faults: string[] = [];
  for (const line of mta.stderr.split("\n")) {
    if (/Uncaught|Unhandled|panicked|^\s+at |error:/i.test(line)) faults.push(`stderr: ${line}`);
  }
  for (const entry of mta.logs()) {
    if (entry.level === "ERROR" || entry.level === "FATAL") {
      faults.push(`log: ${JSON.stringify(entry)}`);
    }
  }
  return faults;
}

/** Replaces each `\r\n.\r\n` with `\r\nx\r\n`, so garbage sent in DATA never ends the message. */
export function withoutEndOfData(bytes: Uint8Array): Uint8Array {
  for (let i = 0; i + 4 < bytes.length; i++) {
    if (
      bytes[i] === 0x0d && bytes[i + 1] === 0x0a && bytes[i + 2] === 0x2e &&
      bytes[i + 3] === 0x0d && bytes[i + 4] === 0x0a
    ) {
      bytes[i + 2] = 0x78;
    }
  }
  return bytes;
}
