/**
 * @module
 * The intake: SMTP submission on smtp-server with STARTTLS and implicit
 * TLS, AUTH only over TLS, per-user sender rules, bare CR/LF and NUL
 * hygiene, RFC 6409 header fixes, DKIM signing through an injected function,
 * and a 250 only once the message is durable in the spool.
 */
export {
  type Admission,
  type ConnectionGate,
  LocalConnectionGate,
  type LoginThrottle,
  SubmissionServer,
} from "./server.ts";
export { concat, Intake, type SharedChecks, type SignFunction } from "./intake.ts";
export { LineEndingNormalizer } from "./normalizer.ts";
export { addressList, fieldValue, parseMessage } from "./headers.ts";
export { SmtpRejection } from "./rejection.ts";
