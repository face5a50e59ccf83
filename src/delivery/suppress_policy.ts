import type { RecipientOutcome } from "./outcome.ts";

/**
 * True when a recipient's outcome shows that the address does not exist, so
 * mail to it should stop: a permanent failure with an RFC 3463 X.1.x
 * (addressing) status — 550 5.1.1 "bad destination mailbox", 5.1.2 for a
 * domain that does not exist (NXDOMAIN), 5.1.10 for a null MX (RFC 7505).
 * X.1.7 and X.1.8 are about the sender's address, not this recipient's, and
 * a policy or reputation refusal (5.7.x) or anything else says nothing about
 * the address: none of those suppress. A bare 550 without an enhanced code
 * does not either (biased, like the retry decision, against losing mail).
 */
export function suppressible(outcome: RecipientOutcome): boolean {
  if (outcome.kind !== "permanent") return false;
  const match = /^5\.1\.(\d{1,3})$/.exec(outcome.status);
  return match !== null && match[1] !== "7" && match[1] !== "8";
}
