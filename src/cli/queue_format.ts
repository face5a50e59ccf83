import type { QueueSummary } from "../delivery/mod.ts";
import type { MessageMeta } from "../spool/mod.ts";
import type { ProviderStatus } from "../delivery/mod.ts";

/** The fields of the `queue list --json` contract, in a stable order. */
export function summary(meta: QueueSummary): QueueSummary {
  return {
    id: meta.id,
    from: meta.from,
    state: meta.state,
    created_at: meta.created_at,
    next_attempt_at: meta.next_attempt_at,
    size: meta.size,
    message_id: meta.message_id,
    recipients: meta.recipients.map((r) => ({
      address: r.address,
      status: r.status,
      attempts: r.attempts,
      last_error: r.last_error,
    })),
  };
}

/**
 * `queue list --json`'s text, made one entry at a time: the same text as
 * `JSON.stringify(messages.map(summary), null, 2)` and a newline, written
 * field by field, so the daemon can stream 100,000 entries without building
 * them as objects first.
 */
export function* jsonListText(messages: Iterable<QueueSummary>): Generator<string> {
  let first = true;
  for (const m of messages) {
    yield `${first ? "[\n" : ",\n"}${entryText(m)}`;
    first = false;
  }
  yield first ? "[]\n" : "\n]\n";
}

const j = JSON.stringify;

function entryText(m: QueueSummary): string {
  const recipients = m.recipients.map((r) =>
    `      {\n        "address": ${j(r.address)},\n        "status": ${j(r.status)},\n` +
    `        "attempts": ${j(r.attempts)},\n        "last_error": ${j(r.last_error)}\n      }`
  );
  return `  {\n    "id": ${j(m.id)},\n    "from": ${j(m.from)},\n    "state": ${j(m.state)},\n` +
    `    "created_at": ${j(m.created_at)},\n    "next_attempt_at": ${j(m.next_attempt_at)},\n` +
    `    "size": ${j(m.size)},\n    "message_id": ${j(m.message_id)},\n    "recipients": ${
      recipients.length ? `[\n${recipients.join(",\n")}\n    ]` : "[]"
    }\n  }`;
}

/** A readable table of messages for `queue list`. */
export function formatTable(messages: QueueSummary[]): string {
  if (messages.length === 0) return "Queue is empty";
  const rows = [["ID", "STATE", "SIZE", "CREATED", "FROM", "RECIPIENTS"]];
  for (const m of messages) {
    const open = m.recipients.filter((r) =>
      r.status === "pending" || r.status === "deferred"
    ).length;
    rows.push([
      m.id,
      m.state,
      String(m.size),
      m.created_at.slice(0, 19).replace("T", " "),
      m.from || "<>",
      `${open}/${m.recipients.length} to go`,
    ]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const lines = rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd());
  return `${lines.join("\n")}\n${messages.length} message(s)`;
}

/** `queue show` as text: envelope, per-recipient status and attempts, headers. */
export function formatShow(meta: MessageMeta, headers: string): string {
  return [
    `id:              ${meta.id}`,
    `state:           ${meta.state}`,
    `from:            ${meta.from || "<>"}`,
    `created:         ${meta.created_at}`,
    `next attempt:    ${meta.next_attempt_at}`,
    `size:            ${meta.size}`,
    `message-id:      ${meta.message_id ?? "-"}`,
    `submitted by:    ${meta.auth_user ?? "-"} from ${meta.client_ip ?? "-"}`,
    "recipients:",
    ...meta.recipients.map((r) =>
      `  ${r.address}  ${r.status}  attempts=${r.attempts}${r.remote ? `  via ${r.remote}` : ""}${
        r.last_error ? `\n      last: ${r.last_error}` : ""
      }`
    ),
    "headers:",
    ...headers.split("\r\n").filter((l) => l !== "").map((l) => `  ${l}`),
  ].join("\n");
}

/** Counts for `queue stats`. */
export interface QueueStats {
  messages: number;
  by_state: Record<string, number>;
  recipients_by_domain: Record<string, number>;
  oldest: { id: string; created_at: string; age_seconds: number } | null;
  /** Mailbox providers: connections in use, rate, suspended until and why. */
  providers: ProviderStatus[];
}

/** Counts by state and by recipient domain (recipients still to deliver), and the oldest message. */
export function queueStats(
  messages: QueueSummary[],
  now: Date,
  providers: ProviderStatus[] = [],
): QueueStats {
  const byState: Record<string, number> = { queued: 0, deferred: 0, held: 0 };
  const byDomain: Record<string, number> = {};
  for (const m of messages) {
    byState[m.state] = (byState[m.state] ?? 0) + 1;
    for (const r of m.recipients) {
      if (r.status !== "pending" && r.status !== "deferred") continue;
      const domain = r.address.slice(r.address.lastIndexOf("@") + 1).toLowerCase();
      byDomain[domain] = (byDomain[domain] ?? 0) + 1;
    }
  }
  const oldest = messages.reduce<QueueSummary | null>(
    (o, m) => (!o || m.created_at < o.created_at ? m : o),
    null,
  );
  const sorted = Object.fromEntries(Object.entries(byDomain).sort((a, b) => b[1] - a[1]));
  return {
    messages: messages.length,
    by_state: byState,
    recipients_by_domain: sorted,
    oldest: oldest && {
      id: oldest.id,
      created_at: oldest.created_at,
      age_seconds: Math.round((now.getTime() - Date.parse(oldest.created_at)) / 1000),
    },
    providers,
  };
}

/** `queue stats` as text. */
export function formatStats(stats: QueueStats): string {
  const lines = [
    `messages: ${stats.messages} (queued ${stats.by_state.queued}, deferred ${stats.by_state.deferred}, held ${stats.by_state.held})`,
    `oldest:   ${
      stats.oldest
        ? `${stats.oldest.id}, ${stats.oldest.created_at} (${stats.oldest.age_seconds}s ago)`
        : "-"
    }`,
    "recipients to deliver by domain:",
    ...Object.entries(stats.recipients_by_domain).slice(0, 50).map(([d, n]) =>
      `  ${String(n).padStart(7)}  ${d}`
    ),
    "providers:",
    ...stats.providers.map((p) =>
      `  ${p.name.padEnd(12)} connections ${p.connections}${
        p.connections_limit === null ? "" : `/${p.connections_limit}`
      }  rate ${p.reduced_rate ?? (p.rate || "-")}${
        p.suspended_until ? `  suspended until ${p.suspended_until}: ${p.suspended_reason}` : ""
      }`
    ),
  ];
  return lines.join("\n");
}
