import type { EmitEvent } from "../events/mod.ts";
import type { MessageMeta, Spool } from "../spool/mod.ts";

/** An operator action on a queued message. */
export type Operation = "hold" | "release" | "retry" | "delete";

/** Options for {@linkcode applyOperation}. */
export interface OperationOptions {
  op: Operation;
  now: Date;
  /** Receives the `held`, `released` and `removed` events. */
  emit: EmitEvent;
}

/** What {@linkcode applyOperation} did. */
export interface OperationResult {
  meta: MessageMeta;
  /** The message should go back on the delivery schedule. */
  schedule: boolean;
  text: string;
}

/**
 * Applies an operator action to a message nobody is delivering right now:
 * the engine calls it for messages not in flight, and the CLI calls it
 * directly while it holds the spool lock (daemon stopped). Held messages are
 * never delivered until released.
 */
export async function applyOperation(
  spool: Spool,
  meta: MessageMeta,
  options: OperationOptions,
): Promise<OperationResult> {
  const { op, now, emit } = options;
  switch (op) {
    case "delete":
      await spool.remove(meta.id, { durable: true });
      emit({ type: "removed", queue_id: meta.id, by: "operator" });
      return { meta, schedule: false, text: `${meta.id}: deleted` };
    case "hold":
      if (meta.state !== "held") {
        meta.state = "held";
        await spool.writeMeta(meta);
        emit({ type: "held", queue_id: meta.id, by: "operator" });
      }
      return { meta, schedule: false, text: `${meta.id}: held` };
    case "release":
      if (meta.state !== "held") return { meta, schedule: true, text: `${meta.id}: not held` };
      meta.state = meta.recipients.some((r) => r.attempts > 0) ? "deferred" : "queued";
      meta.next_attempt_at = now.toISOString();
      await spool.writeMeta(meta);
      emit({ type: "released", queue_id: meta.id, by: "operator" });
      return { meta, schedule: true, text: `${meta.id}: released` };
    case "retry":
      if (meta.state === "held") {
        return { meta, schedule: false, text: `${meta.id}: held; release it first` };
      }
      meta.next_attempt_at = now.toISOString();
      await spool.writeMeta(meta);
      return { meta, schedule: true, text: `${meta.id}: scheduled for delivery now` };
  }
}
