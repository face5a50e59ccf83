/**
 * @module
 * The messages between the daemon's main thread and its intake workers
 * (`server.workers`, src/cli/intake_pool.ts and src/cli/intake_worker.ts).
 * Everything here is structured-cloneable plain data; each side posts an
 * array of these per turn of its event loop (src/cli/post_batch.ts).
 */
import type { FailureVerdict, User } from "../auth/mod.ts";
import type { Config, LoadedConfig } from "../config/mod.ts";
import type { MailEvent } from "../events/mod.ts";
import type { MessageMeta } from "../spool/mod.ts";
import type { Admission } from "../submission/mod.ts";

/** What the main thread sends a worker. */
export type ToWorker =
  | {
    t: "init";
    /** Worker number, from 1, for the log. */
    index: number;
    loaded: LoadedConfig;
    cert: string;
    key: string;
    users: User[];
    /** The shared HMAC key of `Authenticator.attemptKey`. */
    authKey: Uint8Array;
    /** The `dkim` entries the main thread signs with (reread on SIGHUP: `minimta dkim rotate` edits them). */
    dkim: Config["dkim"];
  }
  /** The answer to the worker's request `id`. */
  | { t: "reply"; id: number; value: unknown }
  /**
   * SIGHUP or a DKIM rotation switch: the users read by the main thread
   * (null: keep the old ones) and the `dkim` entries whose keys the main
   * thread now signs with (null: keep the signer); says "reloaded".
   */
  | { t: "reload"; users: User[] | null; dkim: Config["dkim"] | null }
  /** SIGTERM: close as `SubmissionServer.close(graceMs)` does, then say "closed". */
  | { t: "close"; graceMs: number }
  /** Test hook (MINIMTA_TEST_HOOKS=1 only): throw an uncaught error. */
  | { t: "crash" };

/** What a worker sends the main thread. Those with an `id` wait for a "reply". */
export type FromWorker =
  | { t: "listening"; ports: number[] }
  | { t: "start_failed"; error: string }
  | { t: "event"; event: MailEvent }
  /** A message is in the spool (posted in the turn of its 250): the delivery engine schedules it. */
  | { t: "queued"; meta: MessageMeta }
  /** Reply: {@linkcode Admission}. */
  | { t: "admit"; id: number; ip: string; trusted: boolean }
  | { t: "release"; ip: string }
  /** Reply: an attempt number, or null while the IP is blocked. */
  | { t: "reserve"; id: number; ip: string; key: string }
  /** Reply: a {@linkcode FailureVerdict}. */
  | { t: "failed"; id: number; attempt: number; username: string; failures: number }
  | { t: "succeeded"; attempt: number; username: string }
  /** Reply: a {@linkcode Refusal} when the address is on the main thread's suppression list. */
  | { t: "suppressed"; id: number; address: string }
  /** Reply: a {@linkcode Refusal} when one more RCPT would go over the user's sending limit. */
  | { t: "limit"; id: number; user: User; pending: number }
  /** Reply: null, once the main thread counted the queued recipients. */
  | { t: "count"; id: number; username: string; recipients: number }
  | { t: "reloaded" }
  | { t: "closed" };

/** An `SmtpRejection` as plain data: its code and its message (enhanced code first). */
export interface Refusal {
  code: number;
  message: string;
}

/** The reply types, for the worker's side of a request. */
export interface Replies {
  admit: Admission;
  reserve: number | null;
  failed: FailureVerdict;
  suppressed: Refusal | null;
  limit: Refusal | null;
  count: null;
}
