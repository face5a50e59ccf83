/**
 * @module
 * The crash-safe file spool, the one place where messages live between
 * intake and delivery. Intake, delivery, the CLI and the status page all go
 * through {@linkcode Spool}; nothing else touches the spool directory.
 */
export { type RecoveryReport, Spool, type SpoolOptions } from "./spool.ts";
export { isDiskFull, MessageNotFoundError, SpoolFullError, SpoolWriteError } from "./errors.ts";
export { isQueueId, newQueueId } from "./queue_id.ts";
export { Outbox } from "./outbox.ts";
export type {
  ListIds,
  MessageMeta,
  MessageState,
  NewMessage,
  RecipientState,
  RecipientStatus,
} from "./types.ts";
