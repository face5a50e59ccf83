/** Per-stage deadlines in milliseconds; each bounds a whole reply, not one read. */
export interface Timeouts {
  /** TCP connection set-up. @default {30_000} */
  connect: number;
  /** RFC 5321 §4.5.3.2.1: initial 220 message. @default {300_000} */
  greeting: number;
  /** EHLO or HELO reply (RFC 5321 uses the MAIL value). @default {300_000} */
  ehlo: number;
  /** RFC 5321 §4.5.3.2.2: MAIL reply. @default {300_000} */
  mail: number;
  /** RFC 5321 §4.5.3.2.3: each RCPT reply. @default {300_000} */
  rcpt: number;
  /** RFC 5321 §4.5.3.2.4: DATA initiation (the 354). @default {120_000} */
  dataInit: number;
  /** RFC 5321 §4.5.3.2.5: each write of body data. @default {180_000} */
  dataBlock: number;
  /** RFC 5321 §4.5.3.2.6: reply to the final dot. @default {600_000} */
  dataEnd: number;
  /** STARTTLS reply plus the whole TLS handshake (Postfix smtp_starttls_timeout). @default {120_000} */
  starttls: number;
  /** AUTH exchange, every reply. @default {120_000} */
  auth: number;
  /** RSET reply (Postfix smtp_rset_timeout). @default {20_000} */
  rset: number;
  /** QUIT reply (Postfix smtp_quit_timeout is 300 s; we give up sooner, the mail is sent). @default {30_000} */
  quit: number;
}

/** RFC 5321 §4.5.3.2 defaults. */
export const DEFAULT_TIMEOUTS: Readonly<Timeouts> = Object.freeze({
  connect: 30_000,
  greeting: 300_000,
  ehlo: 300_000,
  mail: 300_000,
  rcpt: 300_000,
  dataInit: 120_000,
  dataBlock: 180_000,
  dataEnd: 600_000,
  starttls: 120_000,
  auth: 120_000,
  rset: 20_000,
  quit: 30_000,
});
