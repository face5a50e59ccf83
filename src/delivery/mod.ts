/**
 * @module
 * The delivery engine: takes messages from the spool, routes them to each
 * recipient domain's MX hosts (or a smarthost) with minimta's own SMTP
 * client, retries what can be retried, and bounces the rest with one DSN per
 * message. The engine owns scheduling; the transport makes one attempt and
 * returns each recipient's outcome as data.
 */
export { DeliveryEngine, type DeliveryEngineOptions, type Transport } from "./engine.ts";
export { applyOperation, type Operation, type OperationResult } from "./operations.ts";
export {
  type AttemptRequest,
  type Relay,
  type RouteLookup,
  SmtpTransport,
  type SmtpTransportOptions,
} from "./smtp_transport.ts";
export { describe, type RecipientOutcome } from "./outcome.ts";
export { bounceFailed, buildDsn, type FailedRecipient } from "./dsn.ts";
export { recordOutcomes } from "./record_outcomes.ts";
export { isExpired, retryDelay } from "./retry.ts";
export {
  type IndexEntry,
  QueueIndex,
  type QueueSummary,
  type SearchOptions,
} from "./queue_index.ts";
export { SessionPool, type SessionPoolOptions } from "./session_pool.ts";
export { Semaphore } from "./semaphore.ts";
