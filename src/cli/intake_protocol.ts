/**
 * @module
 * The messages between the daemon's main thread and its intake workers
 * (`server.workers`, src/cli/intake_pool.ts and src/cli/intake_worker.ts).
 * Everything here is structured-cloneable plain data.
 */
import type { FailureVerdict, User } from "../auth/mod.ts";
import type { LoadedConfig } from "../config/mod.ts";
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
  }
  /** The answer to the worker's request `id`. */
  | { t: "reply"; id: number; value: unknown }
  /** SIGHUP: the users read by the main thread (null: keep the old ones); DKIM keys are reread. */
  | { t: "reload"; users: User[] | null }
  /** SIGTERM: close as `SubmissionServer.close(graceMs)` does, then say "closed". */
  | { t: "close"; graceMs: number }
  /** Test hook (MINIMTA_TEST_HOOKS=1 only): throw an uncaught error. */
  | { t: "crash" };

/** What a worker sends the main thread. Those with an `id` wait for a "reply". */
export type FromWorker =
  | { t: "listening"; ports: number[] }
  | { t: "start_failed"; error: string }
  | { t: "event"; event: MailEvent }
  /** A message is in the spool (sent before its 250): the delivery engine schedules it. */
  | { t: "queued"; meta: MessageMeta }
  /** Reply: {@linkcode Admission}. */
  | { t: "admit"; id: number; ip: string; trusted: boolean }
  | { t: "release"; ip: string }
  /** Reply: an attempt number, or null while the IP is blocked. */
  | { t: "reserve"; id: number; ip: string; key: string }
  /** Reply: a {@linkcode FailureVerdict}. */
  | { t: "failed"; id: number; attempt: number; username: string; failures: number }
  | { t: "succeeded"; attempt: number; username: string }
  | { t: "reloaded" }
  | { t: "closed" };

/** The reply types, for the worker's side of a request. */
export interface Replies {
  admit: Admission;
  reserve: number | null;
  failed: FailureVerdict;
}
