/**
 * What the engine does with a message after an attempt (or after an
 * operator's hold or delete arrived during one), decided from its metadata
 * alone. The engine carries the step out (src/delivery/engine.ts `#finish`).
 */
import type { MessageMeta } from "../spool/mod.ts";
import { local, type RecipientOutcome } from "./outcome.ts";
import { isExpired, retryDelay } from "./retry.ts";

/** An operator's request that arrived while the message was being attempted. */
export type PendingOperation = "hold" | "delete";

/** What {@linkcode nextStep} needs besides the message. */
export interface NextStepOptions {
  now: Date;
  /** The operator's hold or delete that waited for the attempt, if any. */
  op?: PendingOperation;
  /** `delivery.max_queue_lifetime`, in ms. */
  maxQueueLifetimeMs: number;
  /** `delivery.retry_schedule`, in ms. */
  retrySchedule: readonly number[];
  /** ± fraction of the retry step added at random (see `retryDelay`). */
  jitter: number;
  /** For the jitter; `Math.random` unless a test fixes it. */
  random?: () => number;
  /**
   * Per recipient, the time (ms) before which it must not be tried: a
   * provider's suspension or warm-up cap held it back in this attempt.
   */
  notBefore?: ReadonlyMap<string, number | undefined>;
}

/**
 * The one step after an attempt:
 * - `delete`: the operator deleted it; remove it now.
 * - `expire`: recipients still open, but the message outlived
 *   `max_queue_lifetime`: fail them with `outcomes` (4.4.7, RFC 3463), then
 *   bounce and remove.
 * - `hold`: recipients still open and the operator held it.
 * - `defer`: recipients still open; try again at `nextAttemptAt`.
 * - `bounce`: no recipient is open; send the DSN for the failed ones (if
 *   any) and remove it.
 */
export type NextStep =
  | { kind: "delete" }
  | { kind: "expire"; outcomes: RecipientOutcome[] }
  | { kind: "hold" }
  | { kind: "defer"; nextAttemptAt: Date }
  | { kind: "bounce" };

/** Decides the {@linkcode NextStep} for `meta` (not changed). */
export function nextStep(meta: MessageMeta, options: NextStepOptions): NextStep {
  const { now, op } = options;
  if (op === "delete") return { kind: "delete" };
  const open = meta.recipients.filter((r) => r.status === "pending" || r.status === "deferred");
  if (!open.length) return { kind: "bounce" };
  if (isExpired(new Date(meta.created_at), now, options.maxQueueLifetimeMs)) {
    const age = formatAge(options.maxQueueLifetimeMs);
    return {
      kind: "expire",
      outcomes: open.map((r) =>
        local(
          r.address,
          "permanent",
          "4.4.7",
          `Message expired after ${age} in the queue; last error: ${r.last_error ?? "none"}`,
          r.remote,
        )
      ),
    };
  }
  if (op === "hold") return { kind: "hold" };
  const attempts = Math.max(...open.map((r) => r.attempts));
  // Recipients held back by a suspension or a warm-up cap go when it ends;
  // when every open one was, that is the next attempt, else the schedule's.
  const waits = open.map((r) => options.notBefore?.get(r.address));
  if (waits.every((w): w is number => w !== undefined)) {
    return { kind: "defer", nextAttemptAt: new Date(Math.max(now.getTime(), Math.min(...waits))) };
  }
  const delayMs = retryDelay(attempts, options.retrySchedule, options.jitter, options.random);
  return { kind: "defer", nextAttemptAt: new Date(now.getTime() + delayMs) };
}

/** "2 hours", "5 days": a lifetime as a person reads it in a DSN. */
export function formatAge(ms: number): string {
  if (ms >= 86_400_000) return `${+(ms / 86_400_000).toFixed(1)} days`;
  if (ms >= 3_600_000) return `${+(ms / 3_600_000).toFixed(1)} hours`;
  if (ms >= 60_000) return `${+(ms / 60_000).toFixed(1)} minutes`;
  return `${Math.round(ms / 1000)} seconds`;
}
