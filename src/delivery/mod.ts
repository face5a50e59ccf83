/**
 * @module
 * The delivery engine: takes messages from the spool, routes them to each
 * recipient domain's MX hosts (or a smarthost) with minimta's own SMTP
 * client, retries what can be retried, and bounces the rest with one DSN per
 * message. The engine owns scheduling; the transport makes one attempt and
 * returns each recipient's outcome as data.
 */
export { DeliveryEngine, type DeliveryEngineOptions } from "./engine.ts";
export { applyOperation, type Operation } from "./operations.ts";
export { SmtpTransport, type SmtpTransportOptions } from "./smtp_transport.ts";
export {
  type IndexEntry,
  QueueIndex,
  type QueueSummary,
  type SearchOptions,
} from "./queue_index.ts";
export { Semaphore } from "./semaphore.ts";
export { ProviderShaper, type ProviderShaperOptions, type ProviderStatus } from "./shaper.ts";
export { mergeProviders } from "./shaping.ts";
