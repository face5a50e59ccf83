/**
 * @module
 * Delivery webhooks: a signed JSON event (HMAC-SHA256 of the body in
 * `X-Minimta-Signature`) per delivered, deferred, bounced and expired
 * recipient and per suppressed address, kept in a durable outbox in the
 * spool until the receiver
 * answers 2xx, retried with backoff, never blocking delivery.
 */
export { type Pending, WebhookDispatcher, type WebhookEvent } from "./dispatcher.ts";
