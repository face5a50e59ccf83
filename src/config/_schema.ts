import { parseDuration } from "./duration.ts";

/** What a leaf key may hold. */
type Leaf =
  | { t: "string"; nonEmpty?: boolean }
  | { t: "int"; min: number; max?: number }
  | { t: "bool" }
  | { t: "duration" }
  | { t: "durations" }
  | { t: "enum"; values: readonly string[] }
  | { t: "strings" }
  | { t: "addr"; optional: boolean }
  | { t: "cidrs" }
  | { t: "dkim" }
  | { t: "webhooks" };

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
    idle_timeout: { t: "duration" },
    transaction_timeout: { t: "duration" },
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
    source_address: { t: "string" },
    dns_servers: { t: "strings" },
    tls: { t: "enum", values: ["opportunistic", "required", "verify"] },
    relay_host: { t: "addr", optional: true },
    relay_username: { t: "string" },
    relay_password: { t: "string" },
    retry_schedule: { t: "durations" },
    max_queue_lifetime: { t: "duration" },
    allow_loopback: { t: "bool" },
    connect_timeout: { t: "duration" },
    command_timeout: { t: "duration" },
    data_timeout: { t: "duration" },
    tls_ca_file: { t: "string" },
  },
  dkim: { t: "dkim" },
  log: {
    level: { t: "enum", values: ["debug", "info", "warning", "error"] },
    format: { t: "enum", values: ["json", "text"] },
  },
  http: { listen_addr: { t: "addr", optional: true }, admin_token: { t: "string" } },
  webhooks: { t: "webhooks" },
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
    const node = schema[key];
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
    case "int":
      if (typeof value !== "number" || !Number.isInteger(value) || value < leaf.min) {
        fail(key, `an integer >= ${leaf.min}`, value);
      }
      if (leaf.max !== undefined && value > leaf.max) fail(key, `an integer <= ${leaf.max}`, value);
      return value;
    case "bool":
      if (typeof value !== "boolean") fail(key, "true or false", value);
      return value;
    case "duration":
      return checkDuration(value, key);
    case "durations":
      if (!Array.isArray(value) || value.length === 0) {
        fail(key, "a non-empty list of durations", value);
      }
      return value.map((v, i) => checkDuration(v, `${key}[${i}]`));
    case "enum":
      if (typeof value !== "string" || !leaf.values.includes(value)) {
        fail(key, `one of ${leaf.values.join(" | ")}`, value);
      }
      return value;
    case "strings":
      return checkStrings(value, key);
    case "addr":
      return checkAddr(value, key, leaf.optional);
    case "cidrs":
      return checkStrings(value, key).map((c, i) => checkCidr(c, `${key}[${i}]`));
    case "dkim":
      return checkDkim(value, key);
    case "webhooks":
      return checkWebhooks(value, key);
  }
}

function checkDuration(value: unknown, key: string): number {
  const ms = typeof value === "string" ? parseDuration(value) : null;
  if (ms === null) fail(key, 'a duration like "30s", "5m", "4h" or "5d"', value);
  return ms;
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
  if (!splitHostPort(value)) fail(key, '"host:port" with a port from 1 to 65535', value);
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
  const v4 = /^\d{1,3}(\.\d{1,3}){3}$/.test(ip);
  const v6 = !v4 && ip.includes(":");
  const max = v4 ? 32 : 128;
  const okBits = bits === undefined || (/^\d+$/.test(bits) && Number(bits) <= max);
  if (extra !== undefined || (!v4 && !v6) || !okBits) {
    fail(key, 'a CIDR like "127.0.0.1/32"', value);
  }
  return value;
}

const WEBHOOK_EVENTS = ["delivered", "deferred", "bounced", "expired"];

function checkWebhooks(value: unknown, key: string): unknown[] {
  if (!Array.isArray(value)) fail(key, "a list of {url, events, secret}", value);
  return value.map((entry, i) => {
    const at = `${key}[${i}]`;
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      fail(at, "a mapping with url, events, secret", entry);
    }
    const e = entry as Record<string, unknown>;
    for (const k of Object.keys(e)) {
      if (!["url", "events", "secret"].includes(k)) {
        throw new ConfigKeyError(`${at}.${k}`, "unknown key");
      }
    }
    if (typeof e.url !== "string" || !/^https?:\/\/[^\s]+$/.test(e.url)) {
      fail(`${at}.url`, "an http:// or https:// URL", e.url);
    }
    const events = e.events === undefined ? WEBHOOK_EVENTS : checkStrings(e.events, `${at}.events`);
    events.forEach((ev, j) => {
      if (!WEBHOOK_EVENTS.includes(ev)) {
        fail(`${at}.events[${j}]`, `one of ${WEBHOOK_EVENTS.join(" | ")}`, ev);
      }
    });
    if (typeof e.secret !== "string" || e.secret.length < 16) {
      fail(`${at}.secret`, "a string of at least 16 characters", e.secret);
    }
    return { url: e.url, events, secret: e.secret };
  });
}

function checkDkim(value: unknown, key: string): unknown[] {
  if (!Array.isArray(value)) fail(key, "a list of {domain, selector, private_key_file}", value);
  return value.map((entry, i) => {
    const at = `${key}[${i}]`;
    const fields = { domain: "", selector: "", private_key_file: "" };
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      fail(at, "a mapping with domain, selector, private_key_file", entry);
    }
    for (const [k, v] of Object.entries(entry)) {
      if (!(k in fields)) throw new ConfigKeyError(`${at}.${k}`, "unknown key");
      if (typeof v !== "string" || v.trim() === "") fail(`${at}.${k}`, "a non-empty string", v);
      fields[k as keyof typeof fields] = v;
    }
    for (const [k, v] of Object.entries(fields)) {
      if (v === "") throw new ConfigKeyError(`${at}.${k}`, "missing");
    }
    return fields;
  });
}
