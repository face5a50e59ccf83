import type { Config } from "./types.ts";

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
    workers: 0,
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
  },
  dkim: [],
  log: { level: "info", format: "json" },
  http: { listen_addr: "", admin_token: "" },
  webhooks: [],
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
