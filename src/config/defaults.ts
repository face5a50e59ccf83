import type { Config, ProviderConfig, ThrottleRuleConfig } from "./types.ts";

/**
 * Production defaults, as documented in the README's configuration
 * reference. A config file only needs the keys it changes.
 */
export const DEFAULTS: Config = {
  server: {
    hostname: "localhost",
    listen_addr: "0.0.0.0:587",
    listen_tls_addr: "0.0.0.0:465",
    max_message_size: 10 * 1024 * 1024,
    max_recipients: 100,
    max_connections: 500,
    max_connections_per_ip: 50,
    trusted_networks: [],
    local_socket: "/run/minimta/submit.sock",
    bare_newline: "normalize",
    idle_timeout: 60_000,
    transaction_timeout: 300_000,
    bulk_lint: "warn",
    workers: "auto",
  },
  tls: { cert_file: "/etc/minimta/certs/server.crt", key_file: "/etc/minimta/certs/server.key" },
  auth: {
    users_file: "/etc/minimta/users.json",
    failure_delay: 1_000,
    max_failures_per_connection: 3,
    max_failures_per_ip: 10,
    failure_window: 600_000,
  },
  queue: { dir: "/var/spool/minimta", fsync: true },
  delivery: {
    concurrency: 50,
    per_domain_concurrency: 5,
    port: 25,
    helo_name: "",
    source_address: "",
    dns_servers: [],
    tls: "opportunistic",
    relay_host: "",
    relay_username: "",
    relay_password: "",
    retry_schedule: [300_000, 600_000, 1_800_000, 3_600_000, 7_200_000, 14_400_000],
    max_queue_lifetime: 5 * 86_400_000,
    allow_loopback: false,
    connect_timeout: 30_000,
    command_timeout: 300_000,
    data_timeout: 600_000,
    tls_ca_file: "",
    providers: [],
    throttle_rules: [],
    warmup: [],
    delay_warning: 0,
  },
  dkim: [],
  dkim_rotation_check: 600_000,
  log: { level: "info", format: "json", file: "", max_size: 100 * 1024 * 1024, max_files: 10 },
  http: { listen_addr: "", admin_token: "" },
  webhooks: [],
  suppression: { enabled: true, ttl: 30 * 86_400_000 },
};

/**
 * The configuration used when no file is found: everything on loopback high
 * ports and under a local data folder, so `deno task start` works with no
 * files and no root. The certificate and the first user are created on
 * first start (see `src/cli/first_start.ts`).
 */
export function embeddedDefault(dataDir: string): Record<string, unknown> {
  return {
    server: {
      listen_addr: "127.0.0.1:2587",
      listen_tls_addr: "127.0.0.1:2465",
      local_socket: `${dataDir}/submit.sock`,
    },
    tls: { cert_file: `${dataDir}/certs/server.crt`, key_file: `${dataDir}/certs/server.key` },
    auth: { users_file: `${dataDir}/users.json` },
    queue: { dir: `${dataDir}/spool` },
    log: { level: "info", format: "text" },
    http: { listen_addr: "127.0.0.1:2580" },
  };
}

/**
 * The mailbox providers minimta knows without configuration; an entry of
 * `delivery.providers` with the same name replaces one. Limits follow
 * published practice: KumoMTA's shipped shaping rules give Google 5
 * connections and 50 messages per connection, Yahoo 20 messages per
 * connection and Apple 5 (iCloud closes longer sessions with 4.7.x
 * replies). Microsoft publishes no per-sender figure for its inbound
 * (Exchange Online Protection) hosts; 5 connections and 100 messages a
 * connection stays well under the connection counts its 4.7.500 "server
 * busy" replies start at. No provider publishes a message rate for an IP,
 * so none is set: the throttle rules below slow down when one says so.
 */
export const BUILTIN_PROVIDERS: ProviderConfig[] = [
  {
    name: "google",
    mx: [".google.com", ".googlemail.com"],
    connections: 5,
    messages_per_connection: 50,
    rate: "",
  },
  {
    name: "microsoft",
    mx: [".protection.outlook.com", ".mx.microsoft"],
    connections: 5,
    messages_per_connection: 100,
    rate: "",
  },
  { name: "yahoo", mx: [".yahoodns.net"], connections: 5, messages_per_connection: 20, rate: "" },
  {
    name: "apple",
    mx: [".icloud.com", ".me.com"],
    connections: 5,
    messages_per_connection: 5,
    rate: "",
  },
];

/**
 * The throttling and reputation replies of the big providers, tried after
 * `delivery.throttle_rules`. Each defers the recipient (a 5xx too) and
 * suspends the whole provider, or lowers its rate for a while:
 * - Gmail `421 4.7.28 … unusual rate of unsolicited mail`: Google asks the
 *   sender to slow down; new mail at once only draws more of them.
 * - Yahoo `[TS01]`–`[TS04]` / `[TSS04]` "temporarily deferred due to
 *   unexpected volume or user complaints": Yahoo's sender help says to
 *   retry later; TS03 is their 554 "permanently deferred" reputation reply.
 * - Microsoft `4.7.500` "Server busy", `4.7.650`/`4.7.651` "temporarily rate
 *   limited due to IP reputation", and "exceeded the maximum number of
 *   connections" (slowed rather than stopped: fewer connections help).
 */
export const BUILTIN_THROTTLE_RULES: ThrottleRuleConfig[] = [
  { provider: "google", match: "\\b4\\.7\\.28\\b|unusual rate", suspend: 15 * 60_000 },
  { provider: "yahoo", match: "\\[?TSS?0[1-4]\\]?", suspend: 30 * 60_000 },
  { provider: "microsoft", match: "\\b4\\.7\\.65[01]\\b", suspend: 30 * 60_000 },
  { provider: "microsoft", match: "\\b4\\.7\\.500\\b", suspend: 5 * 60_000 },
  {
    provider: "microsoft",
    match: "maximum number of (concurrent )?connections|too many connections",
    rate: "60/m",
    for: 10 * 60_000,
  },
];
