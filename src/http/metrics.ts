import type { MailEvent, RecipientEvent } from "../events/mod.ts";
import type { ProviderStatus } from "../delivery/mod.ts";

/** Values read at scrape time from the running parts. */
export interface Gauges {
  queue: Record<string, number>;
  oldestAgeSeconds: number;
  connectionsIn: number;
  connectionsOut: number;
  /** Mailbox providers and suspended destinations (see `ProviderShaper.status`). @default [] */
  providers?: ProviderStatus[];
}

/** One minute of traffic, for the dashboard's chart. */
export interface MinuteCounts {
  received: number;
  delivered: number;
  deferred: number;
  bounced: number;
}

const BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const DAY_MINUTES = 24 * 60;

/**
 * minimta's metrics, counted from the mail events (the same events the
 * mail log writes, so a metric and its log line can never disagree) and rendered in the
 * Prometheus text format (version 0.0.4).
 */
export class Metrics {
  #counters = new Map<string, number>();
  #histogram = { buckets: BUCKETS.map(() => 0), sum: 0, count: 0 };
  #minutes = new Map<number, MinuteCounts>();
  #now: () => number;
  readonly startTime: number;

  constructor(options: { now?: () => number } = {}) {
    this.#now = options.now ?? Date.now;
    this.startTime = this.#now();
  }

  /** Counts one mail event. Bound, so it can be subscribed as it is. */
  readonly record = (event: MailEvent): void => {
    switch (event.type) {
      case "queued":
        this.#inc("minimta_messages_received_total", {});
        this.#minute().received++;
        break;
      case "rejected":
        this.#inc("minimta_messages_rejected_total", { stage: event.stage });
        break;
      case "auth_failure":
        this.#inc("minimta_auth_failures_total", {});
        break;
      case "signed":
        this.#inc("minimta_dkim_signatures_total", {}, event.domains.length);
        break;
      case "bounced":
        this.#inc("minimta_bounces_total", {});
        break;
      case "suppressed":
        this.#inc("minimta_suppressions_total", { source: event.source });
        break;
      case "bulk_lint":
        this.#inc("minimta_bulk_lint_total", { result: event.result });
        break;
      case "delayed":
        this.#inc("minimta_delay_warnings_total", {});
        break;
      case "delivered":
      case "deferred":
      case "failed":
      case "expired":
        this.#attempt(event);
        break;
    }
  };

  #attempt(event: RecipientEvent): void {
    // The metric's outcome label keeps its names: a permanent failure is "bounced".
    const outcome = event.type === "failed" ? "bounced" : event.type;
    const statusClass = event.status.charAt(0) || "unknown";
    this.#inc("minimta_deliveries_total", { outcome, status_class: statusClass });
    this.#minute()[outcome === "expired" ? "bounced" : outcome]++;
    if (event.duration_ms !== null) {
      const seconds = event.duration_ms / 1000;
      this.#histogram.count++;
      this.#histogram.sum += seconds;
      BUCKETS.forEach((le, i) => {
        if (seconds <= le) this.#histogram.buckets[i]++;
      });
    }
  }

  /** A counter's current value (tests and the dashboard). */
  counter(name: string, labels: Record<string, string> = {}): number {
    return this.#counters.get(seriesKey(name, labels)) ?? 0;
  }

  /** Per-minute counts for the last `minutes` minutes, oldest first. */
  series(minutes: number): MinuteCounts[] {
    const current = Math.floor(this.#now() / 60_000);
    return Array.from(
      { length: minutes },
      (_, i) => this.#minutes.get(current - minutes + 1 + i) ?? empty(),
    );
  }

  /** The Prometheus exposition text. */
  render(gauges: Gauges): string {
    const out: string[] = [];
    const family = (name: string, type: string, help: string) =>
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    const counters: [string, string][] = [
      ["minimta_messages_received_total", "Messages accepted and queued."],
      ["minimta_messages_rejected_total", "Submissions refused, by SMTP stage."],
      [
        "minimta_deliveries_total",
        "Recipient delivery attempts, by outcome and RFC 3463 status class.",
      ],
      ["minimta_bounces_total", "Delivery status notifications (DSNs) generated."],
      ["minimta_auth_failures_total", "Failed submission logins."],
      ["minimta_dkim_signatures_total", "DKIM signatures made."],
      ["minimta_suppressions_total", "Addresses put on the suppression list, by source."],
      [
        "minimta_bulk_lint_total",
        "Bulk mail without RFC 8058 one-click unsubscribe, by result (warned, rejected).",
      ],
      ["minimta_delay_warnings_total", "Recipients whose sender got a delay warning DSN."],
    ];
    for (const [name, help] of counters) {
      family(name, "counter", help);
      const series = [...this.#counters].filter(([key]) =>
        key === name || key.startsWith(`${name}{`)
      );
      const labelled = ["rejected", "deliveries", "suppressions", "bulk_lint"].some((n) =>
        name.includes(n)
      );
      if (!series.length && !labelled) {
        out.push(`${name} 0`);
      }
      for (const [key, value] of series) out.push(`${key} ${value}`);
    }
    family("minimta_queue_messages", "gauge", "Messages in the queue, by state.");
    for (const [state, n] of Object.entries(gauges.queue)) {
      out.push(`minimta_queue_messages{state="${state}"} ${n}`);
    }
    family(
      "minimta_queue_oldest_message_age_seconds",
      "gauge",
      "Age of the oldest queued message.",
    );
    out.push(`minimta_queue_oldest_message_age_seconds ${gauges.oldestAgeSeconds}`);
    family("minimta_smtp_connections_in", "gauge", "Open submission connections.");
    out.push(`minimta_smtp_connections_in ${gauges.connectionsIn}`);
    family("minimta_smtp_connections_out", "gauge", "Outbound delivery transactions in progress.");
    out.push(`minimta_smtp_connections_out ${gauges.connectionsOut}`);
    const providers = gauges.providers ?? [];
    family("minimta_provider_suspended", "gauge", "1 while delivery to a provider is suspended.");
    for (const p of providers) {
      out.push(
        `minimta_provider_suspended{provider="${label(p.name)}"} ${p.suspended_until ? 1 : 0}`,
      );
    }
    family(
      "minimta_throttle_replies_total",
      "counter",
      "Replies a throttle rule matched, by provider (or destination).",
    );
    for (const p of providers) {
      out.push(`minimta_throttle_replies_total{provider="${label(p.name)}"} ${p.throttle_replies}`);
    }
    family(
      "minimta_delivery_attempt_duration_seconds",
      "histogram",
      "Time one delivery attempt (DNS, connect, transaction) took.",
    );
    BUCKETS.forEach((le, i) =>
      out.push(
        `minimta_delivery_attempt_duration_seconds_bucket{le="${le}"} ${
          this.#histogram.buckets[i]
        }`,
      )
    );
    out.push(
      `minimta_delivery_attempt_duration_seconds_bucket{le="+Inf"} ${this.#histogram.count}`,
    );
    out.push(`minimta_delivery_attempt_duration_seconds_sum ${this.#histogram.sum}`);
    out.push(`minimta_delivery_attempt_duration_seconds_count ${this.#histogram.count}`);
    family(
      "minimta_start_time_seconds",
      "gauge",
      "Start time of the process since the Unix epoch.",
    );
    out.push(`minimta_start_time_seconds ${Math.floor(this.startTime / 1000)}`);
    return out.join("\n") + "\n";
  }

  #inc(name: string, labels: Record<string, string>, by = 1): void {
    const key = seriesKey(name, labels);
    this.#counters.set(key, (this.#counters.get(key) ?? 0) + by);
  }

  #minute(): MinuteCounts {
    const minute = Math.floor(this.#now() / 60_000);
    let counts = this.#minutes.get(minute);
    if (!counts) {
      counts = empty();
      this.#minutes.set(minute, counts);
      for (const key of this.#minutes.keys()) {
        if (key <= minute - DAY_MINUTES) this.#minutes.delete(key);
      }
    }
    return counts;
  }
}

function empty(): MinuteCounts {
  return { received: 0, delivered: 0, deferred: 0, bounced: 0 };
}

function seriesKey(name: string, labels: Record<string, string>): string {
  const entries = Object.entries(labels);
  if (!entries.length) return name;
  const escaped = entries.map(([k, v]) =>
    `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`
  );
  return `${name}{${escaped.join(",")}}`;
}

/** A label value escaped for the exposition format. */
function label(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}
