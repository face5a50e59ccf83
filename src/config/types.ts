/** The effective configuration, after defaults and validation. Durations are milliseconds. */
export interface Config {
  server: {
    hostname: string;
    listen_addr: string;
    listen_tls_addr: string;
    max_message_size: number;
    max_recipients: number;
    max_connections: number;
    max_connections_per_ip: number;
    trusted_networks: string[];
    /** Unix socket where any local user's `minimta sendmail` hands over mail; "" for none. */
    local_socket: string;
    bare_newline: "normalize" | "reject";
    idle_timeout: number;
    transaction_timeout: number;
    /** Event loops (threads) running the SMTP intake; 0 = one per CPU, 1 = no worker thread. */
    workers: number;
  };
  tls: { cert_file: string; key_file: string };
  auth: {
    users_file: string;
    failure_delay: number;
    max_failures_per_connection: number;
    max_failures_per_ip: number;
    failure_window: number;
  };
  queue: { dir: string; fsync: boolean };
  delivery: {
    concurrency: number;
    per_domain_concurrency: number;
    port: number;
    helo_name: string;
    source_address: string;
    dns_servers: string[];
    tls: "opportunistic" | "required" | "verify";
    relay_host: string;
    relay_username: string;
    relay_password: string;
    retry_schedule: number[];
    max_queue_lifetime: number;
    allow_loopback: boolean;
    connect_timeout: number;
    command_timeout: number;
    data_timeout: number;
    tls_ca_file: string;
  };
  dkim: { domain: string; selector: string; private_key_file: string }[];
  log: { level: "debug" | "info" | "warning" | "error"; format: "json" | "text" };
  http: { listen_addr: string; admin_token: string };
  webhooks: {
    url: string;
    events: ("delivered" | "deferred" | "bounced" | "expired")[];
    secret: string;
  }[];
}

/** A loaded configuration and where it came from. */
export interface LoadedConfig {
  config: Readonly<Config>;
  /** The file read, or `"(embedded default)"`. */
  source: string;
  /** True when no file was found and the embedded default is in use. */
  embedded: boolean;
}
