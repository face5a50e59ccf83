/**
 * minimta's own ESMTP client (RFC 5321): one outbound connection to one MX host or
 * smarthost. {@linkcode openSession} connects, reads the greeting, says EHLO (HELO as a
 * fallback), negotiates STARTTLS per {@linkcode TlsPolicy} and authenticates when asked;
 * the returned {@linkcode SmtpSession} sends transactions (PIPELINING, SIZE, 8BITMIME,
 * SMTPUTF8) and reports every server answer as data. {@linkcode classifyReply} is the one
 * function that decides temporary versus permanent, and `prepareBody` (prepare_body.ts) produces
 * the exact, smuggling-safe bytes sent after DATA.
 *
 * It imports nothing else of the project. Its only network edge is `transport.ts`.
 *
 * @example
 * ```ts
 * import { openSession } from "./mod.ts";
 * const session = await openSession({
 *   host: "mx.example.net", ip: "192.0.2.25", port: 25, heloName: "mail.example.com",
 *   tls: "opportunistic",
 * });
 * const result = await session.send({ from: "a@example.com", recipients: ["b@example.net"], body });
 * await session.quit();
 * ```
 *
 * @module
 */
export { openSession, type SessionOptions, type TlsPolicy } from "./open_session.ts";
export type { SmtpSession, TlsInfo, TransactionResult } from "./smtp_session.ts";
export { classifyReply, type SmtpReply } from "./smtp_reply.ts";
export { SmtpError } from "./smtp_error.ts";
export { stageTimeouts, type Timeouts } from "./timeouts.ts";
