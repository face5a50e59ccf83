import { isIP, isIPv4, isIPv6 } from "node:net";
import { parseDuration } from "./duration.ts";

/** What a leaf key may hold. */
type Leaf =
  | { t: "string"; nonEmpty?: boolean }
  | { t: "int"; min: number; max?: number; auto?: boolean }
  | { t: "bool" }
  | { t: "duration"; min?: number; optional?: boolean }
  | { t: "size"; min: number }
  | { t: "durations"; min?: number }
  | { t: "enum"; values: readonly string[] }
  | { t: "strings" }
  | { t: "addr"; optional: boolean }
  | { t: "ip"; optional: boolean }
  | { t: "nameservers" }
  | { t: "cidrs" }
  | { t: "dkim" }
  | { t: "webhooks" }
  | { t: "providers" }
  | { t: "throttle_rules" }
  | { t: "warmup" };

type Schema = { [key: string]: Leaf | Schema };

/** Every key minimta knows; anything else in a config file is an error. */
export const SCHEMA: Schema = {
  server: {
    hostname: { t: "string", nonEmpty: true },
    listen_addr: { t: "addr", optional: true },
    listen_tls_addr: { t: "addr", optional: true },
    max_message_size: { t: "int", min: 1024 },
    max_recipients: { t: "int", min: 1 },
    max_connections: { t: "int", min: 1 },
    max_connections_per_ip: { t: "int", min: 1 },
    trusted_networks: { t: "cidrs" },
    local_socket: { t: "string" },
    bare_newline: { t: "enum", values: ["normalize", "reject"] },
    idle_timeout: { t: "duration", min: 1_000 },
    transaction_timeout: { t: "duration", min: 1_000 },
    bulk_lint: { t: "enum", values: ["off", "warn", "reject"] },
    workers: { t: "int", min: 0, max: 256, auto: true },
  },
  tls: { cert_file: { t: "string" }, key_file: { t: "string" } },
  auth: {
    users_file: { t: "string", nonEmpty: true },
    failure_delay: { t: "duration" },
    max_failures_per_connection: { t: "int", min: 1 },
    max_failures_per_ip: { t: "int", min: 1 },
    failure_window: { t: "duration" },
  },
  queue: { dir: { t: "string", nonEmpty: true }, fsync: { t: "bool" } },
  delivery: {
    concurrency: { t: "int", min: 1 },
    per_domain_concurrency: { t: "int", min: 1 },
    port: { t: "int", min: 1, max: 65535 },
    helo_name: { t: "string" },
    source_address: { t: "ip", optional: true },
    dns_servers: { t: "nameservers" },
    tls: { t: "enum", values: ["opportunistic", "required", "verify"] },
    relay_host: { t: "addr", optional: true },
    relay_username: { t: "string" },
    relay_password: { t: "string" },
    // Under a second a retry is due before the attempt's metadata is on disk.
    retry_schedule: { t: "durations", min: 1_000 },
    max_queue_lifetime: { t: "duration" },
    allow_loopback: { t: "bool" },
    connect_timeout: { t: "duration", min: 1_000 },
    command_timeout: { t: "duration", min: 1_000 },
    data_timeout: { t: "duration", min: 1_000 },
    tls_ca_file: { t: "string" },
    providers: { t: "providers" },
    throttle_rules: { t: "throttle_rules" },
    warmup: { t: "warmup" },
    // Off when empty; a warning due before the first retry only waits for it.
    delay_warning: { t: "duration", min: 1_000, optional: true },
  },
  dkim: { t: "dkim" },
  dkim_rotation_check: { t: "duration", min: 1_000 },
  log: {
    level: { t: "enum", values: ["debug", "info", "warning", "error"] },
    format: { t: "enum", values: ["json", "text"] },
    file: { t: "string" },
    max_size: { t: "size", min: 1024 },
    max_files: { t: "int", min: 1, max: 1000 },
  },
  http: { listen_addr: { t: "addr", optional: true }, admin_token: { t: "string" } },
  webhooks: { t: "webhooks" },
  suppression: { enabled: { t: "bool" }, ttl: { t: "duration", min: 1_000 } },
};

/** A config value that does not fit; `key` is the dotted path. */
export class ConfigKeyError extends Error {
  constructor(readonly key: string, message: string) {
    super(message);
    this.name = "ConfigKeyError";
  }
}

function isLeaf(node: Leaf | Schema): node is Leaf {
  return typeof (node as Leaf).t === "string";
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  return `${typeof value} ${JSON.stringify(value)}`;
}

/**
 * Checks `raw` (parsed YAML) against the schema and returns the same shape
 * with durations turned into milliseconds. Throws {@linkcode ConfigKeyError}
 * naming the first bad key.
 */
export function validate(
  raw: unknown,
  schema: Schema = SCHEMA,
  path = "",
): Record<string, unknown> {
  if (raw === null || raw === undefined) return {};
  if (typeof raw !== "object" || Array.isArray(raw)) {
    throw new ConfigKeyError(path || "(top level)", `expected a mapping, got ${describe(raw)}`);
  }
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    const keyPath = path ? `${path}.${key}` : key;
    // Own keys only: "constructor" or "__proto__" must not find Object.prototype.
    const node = Object.hasOwn(schema, key) ? schema[key] : undefined;
    if (!node) throw new ConfigKeyError(keyPath, "unknown key");
    out[key] = isLeaf(node) ? checkLeaf(node, value, keyPath) : validate(value, node, keyPath);
  }
  return out;
}

function fail(key: string, expected: string, value: unknown): never {
  throw new ConfigKeyError(key, `expected ${expected}, got ${describe(value)}`);
}

function checkLeaf(leaf: Leaf, value: unknown, key: string): unknown {
  switch (leaf.t) {
    case "string":
      if (typeof value !== "string") fail(key, "a string", value);
      if (leaf.nonEmpty && value.trim() === "") fail(key, "a non-empty string", value);
      return value;
    case "int": {
      if (leaf.auto && value === "auto") return value;
      const or = leaf.auto ? ' or "auto"' : "";
      if (typeof value !== "number" || !Number.isInteger(value) || value < leaf.min) {
        fail(key, `an integer >= ${leaf.min}${or}`, value);
      }
      if (leaf.max !== undefined && value > leaf.max) {
        fail(key, `an integer <= ${leaf.max}${or}`, value);
      }
      return value;
    }
    case "bool":
      if (typeof value !== "boolean") fail(key, "true or false", value);
      return value;
    case "duration":
      // An optional duration is off when empty: 0 ms.
      if (leaf.optional && value === "") return 0;
      return checkDuration(value, key, leaf.min);
    case "size":
      return checkSize(value, key, leaf.min);
    case "durations":
      if (!Array.isArray(value) || value.length === 0) {
        fail(key, "a non-empty list of durations", value);
      }
      return value.map((v, i) => checkDuration(v, `${key}[${i}]`, leaf.min));
    case "enum":
      if (typeof value !== "string" || !leaf.values.includes(value)) {
        fail(key, `one of ${leaf.values.join(" | ")}`, value);
      }
      return value;
    case "strings":
      return checkStrings(value, key);
    case "addr":
      return checkAddr(value, key, leaf.optional);
    case "ip":
      if (typeof value !== "string" || !(isIP(value) || (leaf.optional && value === ""))) {
        fail(key, "an IP address", value);
      }
      return value;
    case "nameservers":
      return checkStrings(value, key).map((s, i) => checkNameServer(s, `${key}[${i}]`));
    case "cidrs":
      return checkStrings(value, key).map((c, i) => checkCidr(c, `${key}[${i}]`));
    case "dkim":
      return checkDkim(value, key);
    case "webhooks":
      return checkWebhooks(value, key);
    case "providers":
      return checkList(value, key, "{name, mx, connections, messages_per_connection, rate}")
        .map((e, i) => checkProvider(e, `${key}[${i}]`));
    case "throttle_rules":
      return checkList(value, key, "{match, suspend} or {match, rate, for}")
        .map((e, i) => checkThrottleRule(e, `${key}[${i}]`));
    case "warmup":
      return checkList(value, key, "{domain, start, growth, per}")
        .map((e, i) => checkWarmup(e, `${key}[${i}]`));
  }
}

function checkDuration(value: unknown, key: string, min = 0): number {
  const ms = typeof value === "string" ? parseDuration(value) : null;
  if (ms === null) fail(key, 'a duration like "30s", "5m", "4h" or "5d"', value);
  if (ms < min) fail(key, `a duration of at least ${min / 1000}s`, value);
  return ms;
}

const SIZE_UNITS: Record<string, number> = { "": 1, b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };

/** A size in bytes: a number, or a string like "10KB", "100MB", "1GB" (units of 1024). */
function checkSize(value: unknown, key: string, min: number): number {
  const match = typeof value === "string" ? /^\s*(\d+)\s*([kmg]?b)?\s*$/i.exec(value) : null;
  const bytes = typeof value === "number"
    ? value
    : match
    ? Number(match[1]) * SIZE_UNITS[(match[2] ?? "").toLowerCase()]
    : NaN;
  if (!Number.isSafeInteger(bytes)) fail(key, 'a size like "10KB", "100MB" or bytes', value);
  if (bytes < min) fail(key, `a size of at least ${min} bytes`, value);
  return bytes;
}

function checkStrings(value: unknown, key: string): string[] {
  if (!Array.isArray(value)) fail(key, "a list of strings", value);
  value.forEach((v, i) => {
    if (typeof v !== "string") fail(`${key}[${i}]`, "a string", v);
  });
  return value as string[];
}

function checkAddr(value: unknown, key: string, optional: boolean): string {
  if (typeof value !== "string") fail(key, '"host:port"', value);
  if (value === "" && optional) return value;
  const split = splitHostPort(value);
  if (!split) fail(key, '"host:port" with a port from 1 to 65535', value);
  const bracketed = value.startsWith("[");
  if (bracketed ? !isIPv6(split.host) : !(isIPv4(split.host) || isHostName(split.host))) {
    fail(key, '"host:port" with an IP address or host name', value);
  }
  return value;
}

/**
 * A DNS name of letters, digits and hyphens (RFC 1123 §2.1). A name whose
 * last label is all digits would be an IPv4 address: "999.1.1.1" is neither.
 */
function isHostName(host: string): boolean {
  const labels = host.replace(/\.$/, "").split(".");
  return host.length <= 253 && !/^\d+$/.test(labels[labels.length - 1]) &&
    labels.every((l) => /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i.test(l));
}

/** `"IP"`, `"IPv4:PORT"` or `"[IPv6]:PORT"`, as the resolver takes them. */
function checkNameServer(value: string, key: string): string {
  const bracketed = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(value);
  const v4 = /^([0-9.]+):(\d{1,5})$/.exec(value);
  const [ok, port] = bracketed
    ? [isIPv6(bracketed[1]), bracketed[2]]
    : v4
    ? [isIPv4(v4[1]), v4[2]]
    : [isIP(value) !== 0, undefined];
  if (!ok || (port !== undefined && (Number(port) < 1 || Number(port) > 65535))) {
    fail(key, 'a name server "IP", "IP:PORT" or "[IPv6]:PORT"', value);
  }
  return value;
}

/** Splits `host:port` or `[v6]:port`; null when malformed. */
export function splitHostPort(text: string): { host: string; port: number } | null {
  const match = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(text);
  if (!match) return null;
  const port = Number(match[3]);
  if (port < 1 || port > 65535) return null;
  return { host: match[1] ?? match[2], port };
}

function checkCidr(value: string, key: string): string {
  const [ip, bits, extra] = value.split("/");
  const v4 = isIPv4(ip);
  const v6 = isIPv6(ip);
  const max = v4 ? 32 : 128;
  const okBits = bits === undefined || (/^\d+$/.test(bits) && Number(bits) <= max);
  if (extra !== undefined || (!v4 && !v6) || !okBits) {
    fail(key, 'a CIDR like "127.0.0.1/32"', value);
  }
  return value;
}

const WEBHOOK_EVENTS = ["delivered", "deferred", "bounced", "expired", "suppressed", "delayed"];
// `suppressed` and `delayed` came later: receivers written for the first four get them only when they ask.
const DEFAULT_WEBHOOK_EVENTS = ["delivered", "deferred", "bounced", "expired"];
// listmonk's bounce API records every POST as a bounce: nothing else may go there.
const LISTMONK_EVENTS = ["bounced", "expired"];
const WEBHOOK_FORMATS = ["minimta", "listmonk", "postal"];
const WEBHOOK_KEYS = [
  "url",
  "events",
  "secret",
  "format",
  "username",
  "password",
  "signing_key_file",
];

function checkWebhooks(value: unknown, key: string): unknown[] {
  if (!Array.isArray(value)) fail(key, "a list of {url, events, secret}", value);
  return value.map((entry, i) => {
    const at = `${key}[${i}]`;
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      fail(at, "a mapping with url, events, secret", entry);
    }
    const e = entry as Record<string, unknown>;
    for (const k of Object.keys(e)) {
      if (!WEBHOOK_KEYS.includes(k)) throw new ConfigKeyError(`${at}.${k}`, "unknown key");
    }
    if (typeof e.url !== "string" || !/^https?:\/\/[^\s]+$/.test(e.url)) {
      fail(`${at}.url`, "an http:// or https:// URL", e.url);
    }
    const format = e.format ?? "minimta";
    if (typeof format !== "string" || !WEBHOOK_FORMATS.includes(format)) {
      fail(`${at}.format`, `one of ${WEBHOOK_FORMATS.join(" | ")}`, format);
    }
    const allowed = format === "listmonk" ? LISTMONK_EVENTS : WEBHOOK_EVENTS;
    const defaults = format === "listmonk" ? LISTMONK_EVENTS : DEFAULT_WEBHOOK_EVENTS;
    const events = e.events === undefined ? defaults : checkStrings(e.events, `${at}.events`);
    events.forEach((ev, j) => {
      if (!allowed.includes(ev)) {
        fail(`${at}.events[${j}]`, `one of ${allowed.join(" | ")} (format ${format})`, ev);
      }
    });
    // The HMAC secret signs minimta's own format; the others may go without it.
    const secret = e.secret ?? (format === "minimta" ? undefined : "");
    if (
      typeof secret !== "string" || (secret !== "" && secret.length < 16) ||
      (format === "minimta" && secret === "")
    ) {
      fail(`${at}.secret`, "a string of at least 16 characters", e.secret);
    }
    const str = (k: string) => {
      if (e[k] !== undefined && typeof e[k] !== "string") fail(`${at}.${k}`, "a string", e[k]);
      return (e[k] as string | undefined) ?? "";
    };
    const username = str("username");
    const password = str("password");
    const signingKeyFile = str("signing_key_file");
    if (format === "listmonk" && (username === "" || password === "")) {
      throw new ConfigKeyError(
        `${at}.${username === "" ? "username" : "password"}`,
        "missing: listmonk's bounce API needs the API user and its token",
      );
    }
    if (signingKeyFile !== "" && format !== "postal") {
      throw new ConfigKeyError(`${at}.signing_key_file`, "only for format postal");
    }
    return {
      url: e.url,
      events,
      secret,
      format,
      username,
      password,
      signing_key_file: signingKeyFile,
    };
  });
}

const DKIM_FIELDS = ["domain", "selector", "private_key_file"];
const DKIM_NEXT = ["next_selector", "next_private_key_file"];

function checkDkim(value: unknown, key: string): unknown[] {
  if (!Array.isArray(value)) fail(key, "a list of {domain, selector, private_key_file}", value);
  return value.map((entry, i) => {
    const at = `${key}[${i}]`;
    const fields: Record<string, unknown> = {
      domain: "",
      selector: "",
      private_key_file: "",
      next_selector: "",
      next_private_key_file: "",
      retired: [],
    };
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      fail(at, "a mapping with domain, selector, private_key_file", entry);
    }
    for (const [k, v] of Object.entries(entry)) {
      if (!Object.hasOwn(fields, k)) throw new ConfigKeyError(`${at}.${k}`, "unknown key");
      if (k === "retired") {
        fields.retired = checkRetired(v, `${at}.retired`);
        continue;
      }
      if (typeof v !== "string" || v.trim() === "") fail(`${at}.${k}`, "a non-empty string", v);
      fields[k] = v;
    }
    for (const k of DKIM_FIELDS) {
      if (fields[k] === "") throw new ConfigKeyError(`${at}.${k}`, "missing");
    }
    // A pending key (minimta dkim rotate) needs both its selector and its file.
    const [missing] = DKIM_NEXT.filter((k) => fields[k] === "");
    if (missing && DKIM_NEXT.some((k) => fields[k] !== "")) {
      throw new ConfigKeyError(`${at}.${missing}`, "missing");
    }
    return fields;
  });
}

function checkRetired(value: unknown, key: string): { selector: string; until: string }[] {
  if (!Array.isArray(value)) fail(key, "a list of {selector, until}", value);
  return value.map((entry, i) => {
    const at = `${key}[${i}]`;
    const e = entry as Record<string, unknown>;
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      fail(at, "a mapping with selector, until", entry);
    }
    for (const k of Object.keys(e)) {
      if (k !== "selector" && k !== "until") throw new ConfigKeyError(`${at}.${k}`, "unknown key");
    }
    if (typeof e.selector !== "string" || e.selector === "") {
      fail(`${at}.selector`, "a non-empty string", e.selector);
    }
    // YAML reads an unquoted timestamp as a Date.
    const until = e.until instanceof Date ? e.until.toISOString() : e.until;
    if (typeof until !== "string" || Number.isNaN(Date.parse(until))) {
      fail(`${at}.until`, 'a date and time like "2026-05-01T12:00:00Z"', e.until);
    }
    return { selector: e.selector, until };
  });
}

/** A list of mappings with only the `allowed` keys, each entry checked by the caller. */
function checkList(value: unknown, key: string, shape: string): Record<string, unknown>[] {
  if (!Array.isArray(value)) fail(key, `a list of ${shape}`, value);
  return value.map((entry, i) => {
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      fail(`${key}[${i}]`, `a mapping ${shape}`, entry);
    }
    return entry as Record<string, unknown>;
  });
}

function onlyKeys(e: Record<string, unknown>, at: string, allowed: string[]): void {
  for (const k of Object.keys(e)) {
    if (!allowed.includes(k)) throw new ConfigKeyError(`${at}.${k}`, "unknown key");
  }
}

const RATE = /^\d+(?:\.\d+)?\/(?:s|m|h)$/;

function checkRate(value: unknown, key: string): string {
  if (typeof value !== "string" || !RATE.test(value) || parseFloat(value) <= 0) {
    fail(key, 'a rate like "600/m" ("N/s", "N/m" or "N/h")', value);
  }
  return value;
}

function checkProvider(e: Record<string, unknown>, at: string): unknown {
  onlyKeys(e, at, ["name", "mx", "connections", "messages_per_connection", "rate"]);
  if (typeof e.name !== "string" || !/^[a-z0-9][a-z0-9_.-]*$/i.test(e.name)) {
    fail(`${at}.name`, "a name of letters, digits, '.', '_' or '-'", e.name);
  }
  const mx = checkStrings(e.mx ?? [], `${at}.mx`);
  mx.forEach((m, j) => {
    if (!isHostName(m.replace(/^\./, ""))) {
      fail(`${at}.mx[${j}]`, 'a host name suffix like ".mx.example"', m);
    }
  });
  const int = (k: string, d: number) =>
    e[k] === undefined ? d : checkLeaf({ t: "int", min: 1 }, e[k], `${at}.${k}`) as number;
  return {
    name: e.name,
    mx,
    connections: int("connections", 5),
    messages_per_connection: int("messages_per_connection", 100),
    rate: e.rate === undefined || e.rate === "" ? "" : checkRate(e.rate, `${at}.rate`),
  };
}

function checkThrottleRule(e: Record<string, unknown>, at: string): unknown {
  onlyKeys(e, at, ["match", "suspend", "rate", "for", "provider"]);
  if (typeof e.match !== "string" || e.match === "") {
    fail(`${at}.match`, "a regular expression", e.match);
  }
  try {
    new RegExp(e.match, "i");
  } catch (error) {
    throw new ConfigKeyError(
      `${at}.match`,
      `not a regular expression: ${(error as Error).message}`,
    );
  }
  if (e.provider !== undefined && typeof e.provider !== "string") {
    fail(`${at}.provider`, "a provider name", e.provider);
  }
  const rule: Record<string, unknown> = { match: e.match };
  if (e.provider !== undefined) rule.provider = e.provider;
  if (e.suspend !== undefined) {
    if (e.rate !== undefined || e.for !== undefined) {
      throw new ConfigKeyError(at, "either suspend, or rate with for, not both");
    }
    rule.suspend = checkDuration(e.suspend, `${at}.suspend`, 1_000);
  } else if (e.rate !== undefined) {
    rule.rate = checkRate(e.rate, `${at}.rate`);
    if (e.for === undefined) {
      throw new ConfigKeyError(`${at}.for`, "missing (how long the rate lasts)");
    }
    rule.for = checkDuration(e.for, `${at}.for`, 1_000);
  } else {
    throw new ConfigKeyError(at, "needs suspend, or rate with for");
  }
  return rule;
}

function checkWarmup(e: Record<string, unknown>, at: string): unknown {
  onlyKeys(e, at, ["domain", "start", "growth", "per"]);
  if (typeof e.domain !== "string" || !isHostName(e.domain)) {
    fail(`${at}.domain`, "a domain", e.domain);
  }
  const start = checkLeaf({ t: "int", min: 1 }, e.start, `${at}.start`);
  const growth = e.growth ?? 1.5;
  if (typeof growth !== "number" || !(growth >= 1) || growth > 100) {
    fail(`${at}.growth`, "a number from 1 to 100", growth);
  }
  const per = checkDuration(e.per ?? "1d", `${at}.per`, 1_000);
  return { domain: e.domain.toLowerCase(), start, growth, per };
}
