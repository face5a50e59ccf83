import type { User } from "./users.ts";

/**
 * Splits an address into local part and lowercase domain; the domain part
 * is case-insensitive (RFC 5321 §2.4), the local part is compared as is
 * except for case, which every mailbox provider in practice ignores.
 */
function split(address: string): { local: string; domain: string } | null {
  const at = address.lastIndexOf("@");
  if (at <= 0 || at === address.length - 1) return null;
  return { local: address.slice(0, at).toLowerCase(), domain: address.slice(at + 1).toLowerCase() };
}

/** The senders a user may use: `allowed_senders`, else its email and that email's domain. */
export function allowedSenders(user: User): string[] {
  if (user.allowed_senders) return user.allowed_senders;
  if (!user.email) return [];
  const parts = split(user.email);
  return parts ? [user.email, `@${parts.domain}`] : [user.email];
}

/**
 * True when `user` may use `address` as envelope sender or From: address.
 * Entries are full addresses or `@domain` (exactly that domain). A
 * sub-address `alice+tag@` matches an entry for `alice@`. The null sender is
 * never allowed to users: only minimta itself sends bounces (RFC 5321 §4.5.5).
 */
export function senderAllowed(user: User, address: string): boolean {
  const parts = split(address);
  if (!parts) return false;
  const base = parts.local.replace(/\+.*$/, "");
  for (const entry of allowedSenders(user)) {
    if (entry.startsWith("@")) {
      if (entry.slice(1).toLowerCase() === parts.domain) return true;
      continue;
    }
    const allowed = split(entry);
    if (
      allowed && allowed.domain === parts.domain &&
      (allowed.local === parts.local || allowed.local === base)
    ) {
      return true;
    }
  }
  return false;
}
