// The one reader of From: and Sender: at intake. Both the sender check and the DKIM
// signing domain take their address from here, so they can never disagree about
// which address a header names (issue 8: a From: whose display name held
// `<alice@ours.test>` passed the check while the signer read the real address).
//
// Not an npm parser: email-addresses (RFC 5322, PEG with backtracking) took 0.3 s on
// 500 octets of unclosed comments and overflowed the stack at 10 k, and nodemailer's
// addressparser guesses (`<a@x> <b@y>` becomes a@x named "b@y", `ceo` a name), which is
// what a spoof hides in. This is one left-to-right pass over tokens, linear in the
// input, that refuses whatever it would have to guess about.
import { domainToASCII } from "node:url";

/** One mailbox of a From: or Sender: field (RFC 5322 §3.4). */
export interface Mailbox {
  /** `local@domain`, the local part unquoted, the domain lowercase as written (U-label). */
  address: string;
  /** The domain as a lowercase A-label: what a DKIM key's domain is matched against. */
  domain: string;
}

type Token = { kind: "atom" | "quoted"; text: string } | { kind: "special"; text: string };

// RFC 5322 §3.2.3 atext, plus any non-ASCII character (RFC 6532 §3.2 UTF8-non-ascii).
const ATEXT = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\u{10ffff}]$/u;
// The specials of RFC 5322 §3.2.3 that stand as tokens of their own.
const SPECIALS = new Set(["<", ">", "[", "]", ":", ";", "@", ",", "."]);
// A host name label by label (RFC 5321 §4.1.2 Domain), as an A-label.
const DOMAIN = /^(?!-)[a-z0-9_-]{1,63}(?<!-)(\.(?!-)[a-z0-9_-]{1,63}(?<!-))*$/;

/**
 * The mailboxes of an RFC 5322 §3.4 mailbox-list: a From: field's unfolded value.
 * Display names (phrases, with the obsolete dots of `John Q. Public`), quoted strings,
 * comments and white space around the tokens are read as the RFC says; the address is
 * the angle-addr when there is one, else the whole addr-spec.
 *
 * Null when the value is not a mailbox-list: no address (`ceo`), a group
 * (`team: a@x;`), a route (`<@relay:a@x>`), a domain literal, an unclosed quote,
 * comment or angle bracket, a control character, or a domain that is no host name.
 * Refusing those is the point: each is a header that readers may take in different ways.
 */
export function parseMailboxList(value: string): Mailbox[] | null {
  const tokens = tokenize(value);
  if (tokens === null) return null;
  const mailboxes: Mailbox[] = [];
  let start = 0;
  for (let i = 0; i <= tokens.length; i++) {
    if (i < tokens.length && !isSpecial(tokens[i], ",")) continue;
    const mailbox = parseMailbox(tokens.slice(start, i));
    if (mailbox === null) return null;
    mailboxes.push(mailbox);
    start = i + 1;
  }
  return mailboxes;
}

// RFC 5322 §3.2.2–§3.2.4: comments and folding white space are dropped, quoted
// strings become one token with their quoted-pairs resolved.
function tokenize(value: string): Token[] | null {
  const tokens: Token[] = [];
  const chars = Array.from(value);
  let i = 0;
  while (i < chars.length) {
    const c = chars[i];
    if (c === " " || c === "\t") i++;
    else if (c === "(") {
      i = skipComment(chars, i);
      if (i < 0) return null;
    } else if (c === '"') {
      const end = readQuoted(chars, i);
      if (end === null) return null;
      tokens.push({ kind: "quoted", text: end.text });
      i = end.next;
    } else if (SPECIALS.has(c)) {
      tokens.push({ kind: "special", text: c });
      i++;
    } else if (ATEXT.test(c)) {
      let text = "";
      while (i < chars.length && ATEXT.test(chars[i])) text += chars[i++];
      tokens.push({ kind: "atom", text });
    } else return null; // a control character, a stray ")" or "\"
  }
  return tokens;
}

/** The index after the comment opened at `open`, or -1 when it is not closed. */
function skipComment(chars: string[], open: number): number {
  let depth = 0;
  for (let i = open; i < chars.length; i++) {
    const c = chars[i];
    if (c === "\\") i++;
    else if (c === "(") depth++;
    else if (c === ")" && --depth === 0) return i + 1;
    else if (c < " " && c !== "\t") return -1;
  }
  return -1;
}

function readQuoted(chars: string[], open: number): { text: string; next: number } | null {
  let text = "";
  for (let i = open + 1; i < chars.length; i++) {
    const c = chars[i];
    if (c === '"') return { text, next: i + 1 };
    if (c === "\\") {
      if (i + 1 >= chars.length) return null;
      text += chars[++i];
    } else if (c < " " && c !== "\t") return null;
    else text += c;
  }
  return null;
}

// mailbox = name-addr / addr-spec; name-addr = [display-name] "<" addr-spec ">".
function parseMailbox(tokens: Token[]): Mailbox | null {
  const open = tokens.findIndex((t) => isSpecial(t, "<"));
  if (open < 0) return parseAddrSpec(tokens);
  if (!isPhrase(tokens.slice(0, open)) || !isSpecial(tokens[tokens.length - 1], ">")) return null;
  return parseAddrSpec(tokens.slice(open + 1, -1));
}

// display-name = phrase = 1*word / obs-phrase (word *(word / "."))
function isPhrase(tokens: Token[]): boolean {
  if (tokens.length > 0 && tokens[0].kind === "special") return false;
  return tokens.every((t) => t.kind !== "special" || t.text === ".");
}

// addr-spec = local-part "@" domain, the local part words joined by dots (with the
// quoted words obs-local-part allows), the domain atoms joined by dots.
function parseAddrSpec(tokens: Token[]): Mailbox | null {
  const at = tokens.findIndex((t) => isSpecial(t, "@"));
  if (at < 0) return null;
  const local = dotted(tokens.slice(0, at), ["atom", "quoted"]);
  const written = dotted(tokens.slice(at + 1), ["atom"]);
  if (!local || !written) return null;
  const domain = domainToASCII(written).toLowerCase();
  if (!DOMAIN.test(domain)) return null;
  return { address: `${local}@${written.toLowerCase()}`, domain };
}

/** Words of the given kinds separated by single dots, joined; null otherwise. */
function dotted(tokens: Token[], kinds: string[]): string | null {
  if (tokens.length % 2 === 0) return null;
  let out = "";
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    const ok = i % 2 === 0 ? kinds.includes(t.kind) : isSpecial(t, ".");
    if (!ok) return null;
    out += t.text;
  }
  return out;
}

function isSpecial(token: Token | undefined, text: string): boolean {
  return token?.kind === "special" && token.text === text;
}
