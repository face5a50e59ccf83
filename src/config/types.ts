/** `delivery.providers[]`: a mailbox provider by the suffixes of its MX host names. */
export interface ProviderConfig {
  name: string;
  mx: string[];
  connections: number;
  messages_per_connection: number;
  /** `"N/s"`, `"N/m"`, `"N/h"`, or `""` for no limit. */
  rate: string;
}

/** `delivery.throttle_rules[]`; durations in ms. */
export interface ThrottleRuleConfig {
  match: string;
  provider?: string;
  suspend?: number;
  rate?: string;
  for?: number;
}

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
    /** Bulk mail without RFC 8058 one-click unsubscribe: let through, warn and count, or refuse. */
    bulk_lint: "off" | "warn" | "reject";
    /**
     * Event loops (threads) running the SMTP intake; 0 = one per CPU, 1 = no
     * worker thread, "auto" = one per CPU (at most 4) when a DKIM key is configured, else 1.
     */
    workers: number | "auto";
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
    /** Mailbox providers laid over the built-ins by name (see `BUILTIN_PROVIDERS`). */
    providers: ProviderConfig[];
    /** Throttling replies, tried before the built-ins (see `BUILTIN_THROTTLE_RULES`). */
    throttle_rules: ThrottleRuleConfig[];
    warmup: { domain: string; start: number; growth: number; per: number }[];
    /** One `Action: delayed` DSN once a recipient is deferred this long; 0 for none. */
    delay_warning: number;
  };
  dkim: {
    domain: string;
    selector: string;
    private_key_file: string;
    /** The rotated key waiting for its DNS record (`minimta dkim rotate`); "" for none. */
    next_selector: string;
    next_private_key_file: string;
    /** Replaced selectors whose records must stay published until `until` (ISO 8601). */
    retired: { selector: string; until: string }[];
  }[];
  /** How often the daemon looks for a pending DKIM key's record in DNS. */
  dkim_rotation_check: number;
  log: {
    level: "debug" | "info" | "warning" | "error";
    format: "json" | "text";
    /** Log file, rotated by size; "" for stdout (the journal under systemd). */
    file: string;
    /** Bytes at which `file` is rotated. */
    max_size: number;
    /** Rotated files kept beside `file`. */
    max_files: number;
  };
  http: { listen_addr: string; admin_token: string };
  webhooks: {
    url: string;
    events: ("delivered" | "deferred" | "bounced" | "expired" | "suppressed" | "delayed")[];
    /** HMAC key of `X-Minimta-Signature`; "" for none (listmonk and postal formats only). */
    secret: string;
    format: "minimta" | "listmonk" | "postal";
    /** HTTP basic auth (listmonk's API user and token). */
    username: string;
    password: string;
    /** RSA private key (PEM) for Postal's `X-Postal-Signature`; "" for none. */
    signing_key_file: string;
  }[];
  /** Addresses that hard-bounced (5.1.x), refused at RCPT until `ttl` has passed. */
  suppression: { enabled: boolean; ttl: number };
}

/** A loaded configuration and where it came from. */
export interface LoadedConfig {
  config: Readonly<Config>;
  /** The file read, or `"(embedded default)"`. */
  source: string;
  /** True when no file was found and the embedded default is in use. */
  embedded: boolean;
}
