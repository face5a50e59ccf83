import { sizeLimit } from "./_extensions.ts";
import { localReply, type SmtpReply } from "./smtp_reply.ts";

/** What one transaction carries. */
export interface Envelope {
  from: string;
  recipients: string[];
  body: Uint8Array;
  smtputf8?: boolean;
  eightBit?: boolean;
}

/** How MAIL FROM must look for this envelope on this server. */
export interface MailPlan {
  /** The MAIL command line (no CRLF). */
  command: string;
  /** A locally made refusal when the message must not be sent to this server at all. */
  refusal: SmtpReply | null;
}

// Control characters and angle brackets would let an address end or extend the command.
// deno-lint-ignore no-control-regex
const UNSAFE = /[\x00-\x1f\x7f<>]/;
// deno-lint-ignore no-control-regex
const NON_ASCII = /[^\x00-\x7f]/;

/** True when the address may be put between `<` and `>` in a command line. */
export function isSendableAddress(address: string): boolean {
  return !UNSAFE.test(address) && address.length <= 512;
}

/** Build the MAIL command or a local refusal, from the envelope and the EHLO extensions. */
export function planMail(env: Envelope, host: string, ext: Map<string, string>): MailPlan {
  const params: string[] = [];
  const limit = sizeLimit(ext);
  const refuse = (reply: SmtpReply): MailPlan => ({ command: "", refusal: reply });
  if (!isSendableAddress(env.from)) {
    return refuse(
      localReply(553, "5.1.7", "Sender address contains characters that cannot be sent"),
    );
  }
  // RFC 1870 §6: do not send what the server has said it will refuse.
  if (limit !== null && env.body.length > limit) {
    return refuse(
      localReply(
        552,
        "5.3.4",
        `Message size ${env.body.length} exceeds the limit ${limit} of ${host}`,
      ),
    );
  }
  if (limit !== null || ext.has("SIZE")) params.push(`SIZE=${env.body.length}`);
  const utf8 = env.smtputf8 === true || NON_ASCII.test(env.from) ||
    env.recipients.some((r) => NON_ASCII.test(r));
  // RFC 6531 §3.2: without the extension the message cannot be sent as is (no downgrade).
  if (utf8 && !ext.has("SMTPUTF8")) {
    return refuse(localReply(553, "5.6.7", `Message needs SMTPUTF8 but ${host} does not offer it`));
  }
  // RFC 6152: BODY=8BITMIME when offered. Without it we send the 8-bit body anyway, as
  // most MTAs do: converting would break the DKIM signature and refusing would bounce mail
  // that nearly every server accepts.
  if ((env.eightBit ?? hasEightBit(env.body)) && ext.has("8BITMIME")) params.push("BODY=8BITMIME");
  if (utf8) params.push("SMTPUTF8");
  return { command: [`MAIL FROM:<${env.from}>`, ...params].join(" "), refusal: null };
}

function hasEightBit(body: Uint8Array): boolean {
  for (let i = 0; i < body.length; i++) if (body[i] > 0x7f) return true;
  return false;
}
