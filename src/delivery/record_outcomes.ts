import type { EmitEvent } from "../events/mod.ts";
import type { MessageMeta } from "../spool/mod.ts";
import { clipText, describe, type RecipientOutcome } from "./outcome.ts";

/** Attempts kept in a recipient's history; older ones are dropped. */
export const HISTORY_LENGTH = 10;

/** Options for {@linkcode recordOutcomes}. */
export interface RecordOptions {
  now: Date;
  /** How long the attempt took; null for a local decision such as expiry. */
  durationMs: number | null;
  /** The engine gave up on these recipients: they expired, no attempt was made. */
  expired: boolean;
  /** Where each recipient's event goes. */
  emit: EmitEvent;
}

/**
 * Writes one attempt's outcomes into a message's metadata (status,
 * attempts, last error, the last {@linkcode HISTORY_LENGTH} attempts, each
 * reply clipped to 1 KB by {@linkcode clipText}) and emits one event per
 * recipient: `delivered`, `deferred`, `failed`, or `expired`.
 */
export function recordOutcomes(
  meta: MessageMeta,
  outcomes: RecipientOutcome[],
  options: RecordOptions,
): void {
  const { now, durationMs, expired, emit } = options;
  for (const raw of outcomes) {
    // Outcomes are clipped where they are made; clip again so that no
    // transport can write an unbounded reply into the metadata.
    const outcome = { ...raw, text: clipText(raw.text) };
    const rcpt = meta.recipients.find((r) =>
      r.address === outcome.address && (r.status === "pending" || r.status === "deferred")
    );
    if (!rcpt) continue;
    rcpt.attempts++;
    rcpt.status = outcome.kind === "delivered"
      ? "delivered"
      : outcome.kind === "permanent"
      ? "failed"
      : "deferred";
    rcpt.last_error = outcome.kind === "delivered" ? null : describe(outcome);
    rcpt.last_status = outcome.status;
    rcpt.remote = outcome.remote;
    rcpt.updated_at = now.toISOString();
    rcpt.history = [...(rcpt.history ?? []), {
      at: rcpt.updated_at,
      // The spool keeps its own word for a temporary failure, "transient":
      // metadata written by older versions must still load (decode_meta.ts).
      outcome: outcome.kind === "temporary" ? "transient" as const : outcome.kind,
      status: outcome.status,
      text: outcome.code !== null ? `${outcome.code} ${outcome.text}` : outcome.text,
      remote: outcome.remote,
    }].slice(-HISTORY_LENGTH);
    emit({
      type: outcome.kind === "delivered"
        ? "delivered"
        : outcome.kind === "temporary"
        ? "deferred"
        : expired
        ? "expired"
        : "failed",
      queue_id: meta.id,
      recipient: outcome.address,
      relay: outcome.remote,
      code: outcome.code,
      status: outcome.status,
      text: outcome.text,
      attempt: rcpt.attempts,
      delay_s: Math.round((now.getTime() - Date.parse(meta.created_at)) / 1000),
      duration_ms: durationMs,
      from: meta.from,
      message_id: meta.message_id,
      tls: outcome.tls
        ? { used: outcome.tls.used, version: outcome.tls.version, verified: outcome.tls.verified }
        : null,
      ...(meta.list_ids ? { list_ids: meta.list_ids } : {}),
      ...(meta.subject !== undefined ? { subject: meta.subject } : {}),
    });
  }
}
