/**
 * An SMTP refusal from one of minimta's handlers. smtp-server sends
 * `responseCode` and the message; the message starts with the RFC 3463
 * enhanced status code.
 */
export class SmtpRejection extends Error {
  readonly responseCode: number;

  constructor(code: number, enhanced: string, text: string, options?: ErrorOptions) {
    super(`${enhanced} ${text}`, options);
    this.name = "SmtpRejection";
    this.responseCode = code;
  }
}
