/**
 * @module
 * Delivery webhooks: an event per delivered, deferred, bounced, expired and
 * delayed recipient and per suppressed address, in minimta's signed JSON (HMAC-SHA256 of the body in
 * `X-Minimta-Signature`), listmonk's bounce API (basic auth) or Postal's
 * webhook payloads (RSA-signed like Postal's), kept in a durable outbox in
 * the spool until the receiver answers 2xx, retried with backoff, never
 * blocking delivery.
 */
export { type Pending, WebhookDispatcher, type WebhookDispatcherOptions } from "./dispatcher.ts";
export { postalSignatures, type WebhookEvent, type WebhookTarget } from "./formats.ts";
