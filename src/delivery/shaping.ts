/** A mailbox provider: the MX host name suffixes that identify it and its limits. */
export interface Provider {
  name: string;
  /** Suffixes of MX host names, e.g. `".google.com"`; matched case-insensitively. */
  mx: string[];
  /** Concurrent connections to the provider as a whole. */
  connections: number;
  /** Messages over one connection, then QUIT and reconnect. */
  messages_per_connection: number;
  /** Messages to the provider as a whole, `"N/s"`, `"N/m"` or `"N/h"`; `""` for no limit. */
  rate: string;
}

/** A reply that tells the sender to slow down or stop for a while. */
export interface ThrottleRule {
  /** A regular expression (case-insensitive) tried on `"CODE ENHANCED TEXT"`. */
  match: string;
  /** Only replies from this provider; absent for any destination. */
  provider?: string;
  /** No new transaction at the destination for this long (ms). */
  suspend?: number;
  /** At most this rate (`"N/m"`) for {@linkcode ThrottleRule.for} ms. */
  rate?: string;
  for?: number;
}

/** A remote reply as the rules see it. */
export interface ReplyLike {
  code: number;
  enhanced: string | null;
  text: string;
}

const UNIT_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000 };

/**
 * Parses a rate such as `"600/m"` into the milliseconds between two
 * messages at that rate (100 for 600/m). Returns null when malformed or zero.
 */
export function parseRate(text: string): number | null {
  const match = /^\s*(\d+(?:\.\d+)?)\s*\/\s*(s|m|h)\s*$/.exec(text);
  if (!match || Number(match[1]) <= 0) return null;
  return UNIT_MS[match[2]] / Number(match[1]);
}

/**
 * True when `host` ends with `suffix` at a label boundary: `".google.com"`
 * (or `"google.com"`) matches `aspmx.l.google.com` and `google.com`, never
 * `evilgoogle.com`. Trailing dots and case are ignored (RFC 4343).
 */
export function hostMatches(host: string, suffix: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, "");
  const s = suffix.toLowerCase().replace(/\.$/, "").replace(/^\./, "");
  return s !== "" && (h === s || h.endsWith(`.${s}`));
}

/**
 * The provider of a destination from its MX hosts, most preferred first:
 * the first provider whose suffixes match any of them, else null.
 */
export function providerFor(hosts: string[], providers: Provider[]): Provider | null {
  for (const host of hosts) {
    const found = providers.find((p) => p.mx.some((s) => hostMatches(host, s)));
    if (found) return found;
  }
  return null;
}

/**
 * The built-in providers with the configured ones laid over them by name:
 * a configured entry replaces the built-in of the same name, others are
 * added. Configured entries come first so their suffixes win.
 */
export function mergeProviders(builtIn: Provider[], configured: Provider[]): Provider[] {
  const names = new Set(configured.map((p) => p.name));
  return [...configured, ...builtIn.filter((p) => !names.has(p.name))];
}

/** The line rules are matched against: code, enhanced status and text. */
export function replyLine(reply: ReplyLike): string {
  return [reply.code, reply.enhanced, reply.text].filter((p) => p !== null && p !== "").join(" ");
}

/**
 * The first rule that matches a remote reply from `provider` (null when the
 * destination is no provider): a rule with a provider applies only to it.
 * Only 4xx and 5xx replies are throttling replies.
 */
export function matchRule(
  reply: ReplyLike,
  provider: string | null,
  rules: ThrottleRule[],
): ThrottleRule | null {
  if (reply.code < 400) return null;
  const line = replyLine(reply);
  return rules.find((r) =>
    (r.provider === undefined || r.provider === provider) && new RegExp(r.match, "i").test(line)
  ) ?? null;
}
