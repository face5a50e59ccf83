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
  type LoginAttempt,
  type LoginThrottle,
  type SubmissionOptions,
  SubmissionServer,
} from "./server.ts";
export {
  concat,
  Intake,
  type IntakeOptions,
  type SignFunction,
  type Submission,
} from "./intake.ts";
export { LineEndingNormalizer } from "./normalizer.ts";
export { prepareIntakeMessage, rfc5322Date } from "./intake_message.ts";
export { addressList, fieldValue, parseMessage } from "./headers.ts";
export { SmtpRejection } from "./rejection.ts";
export { checkRecipient, checkSender } from "./envelope_address.ts";
