/**
 * @module
 * The crash-safe file spool, the one place where messages live between
 * intake and delivery. Intake, delivery, the CLI and the status page all go
 * through {@linkcode Spool}; nothing else touches the spool directory. The
 * suppression list of addresses that hard-bounced lives here too, as the one
 * place intake and delivery share.
 */
export { Spool } from "./spool.ts";
export { MessageNotFoundError, SpoolFullError } from "./errors.ts";
export { isQueueId, newQueueId } from "./queue_id.ts";
export { formatSpoolTime, parseSpoolTime } from "./spool_time.ts";
export { Outbox } from "./outbox.ts";
export {
  type Suppression,
  SuppressionList,
  type SuppressionListOptions,
} from "./suppression_list.ts";
export type {
  ListIds,
  MessageMeta,
  MessageState,
  RecipientState,
  RecipientStatus,
} from "./types.ts";
export { pendingRecipient } from "./types.ts";
