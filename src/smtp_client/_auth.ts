import type { Channel } from "./_channel.ts";
import { SmtpError } from "./smtp_error.ts";
import { formatReply, type SmtpReply } from "./smtp_reply.ts";

/** Smarthost credentials. */
export interface Credentials {
  username: string;
  password: string;
}

/**
 * Authenticate with AUTH PLAIN (preferred) or LOGIN (RFC 4954, RFC 4616). The caller
 * must have checked that TLS is up. Every failure is temporary: a wrong password is a
 * configuration problem to fix, not a reason to bounce mail (Postfix
 * smtp_sasl_auth_soft_bounce = yes).
 */
export async function authenticate(
  channel: Channel,
  creds: Credentials,
  options: { mechanisms: string; host: string; timeoutMs: number },
): Promise<void> {
  const mechanisms = options.mechanisms.toUpperCase().split(/\s+/);
  const t = options.timeoutMs;
  let reply: SmtpReply;
  if (mechanisms.includes("PLAIN")) {
    const token = base64(`\0${creds.username}\0${creds.password}`);
    reply = await channel.command("auth", `AUTH PLAIN ${token}`, t);
    // RFC 4954 §4: a server that ignores the initial response asks with an empty 334.
    if (reply.code === 334) reply = await channel.command("auth", token, t);
  } else if (mechanisms.includes("LOGIN")) {
    reply = await channel.command("auth", "AUTH LOGIN", t);
    if (reply.code === 334) reply = await channel.command("auth", base64(creds.username), t);
    if (reply.code === 334) reply = await channel.command("auth", base64(creds.password), t);
  } else {
    throw new SmtpError(`${options.host} offers neither AUTH PLAIN nor AUTH LOGIN`, {
      stage: "auth",
    });
  }
  if (reply.code !== 235) {
    throw new SmtpError(`Authentication with ${options.host} failed: ${formatReply(reply)}`, {
      stage: "auth",
      reply,
    });
  }
}

function base64(text: string): string {
  const bytes = new TextEncoder().encode(text);
  return btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join(""));
}
