import type { IndexEntry, ProviderStatus } from "../delivery/mod.ts";
import type { MessageMeta } from "../spool/mod.ts";
import { type Html, html, pager, showing } from "./html.ts";
import type { MinuteCounts } from "./metrics.ts";

/** What the dashboard shows. */
export interface DashboardData {
  counts: Record<string, number>;
  oldest: IndexEntry | null;
  lastHour: MinuteCounts[];
  lastDay: MinuteCounts[];
  topDeferred: { domain: string; recipients: number; last_error: string | null }[];
  /** Users with sending limits; empty when none has any. */
  limits: SendingLimitRow[];
  now: number;
  /** @default [] */
  providers?: ProviderStatus[];
}

/** One user's use against their sending limits (recipients). */
export interface SendingLimitRow {
  username: string;
  hour: number;
  per_hour: number | null;
  day: number;
  per_day: number | null;
}

const KINDS = ["received", "delivered", "deferred", "bounced"] as const;

/** The dashboard: counts by state, traffic over the last hour and day, oldest message, top deferred domains. */
export function dashboardPage(d: DashboardData): Html {
  const total = (series: MinuteCounts[], k: (typeof KINDS)[number]) =>
    series.reduce((n, m) => n + m[k], 0);
  return html`
    <div class="cards">
      ${["queued", "deferred", "held"].map((s) =>
        html`<div class="card"><b>${d.counts[s] ?? 0}</b>${s}</div>`
      )}
      <div class="card"><b>${d.oldest
        ? age(d.now - Date.parse(d.oldest.created_at))
        : "-"}</b>oldest message</div>
    </div>
    <h2>Last hour</h2>
    <p class="legend">${KINDS.map((k) =>
      html`<span class="${k}">${k} ${total(d.lastHour, k)}</span>`
    )}</p>
    ${chart(d.lastHour, "per minute")}
    <h2>Last day</h2>
    <p class="legend">${KINDS.map((k) =>
      html`<span class="${k}">${k} ${total(d.lastDay, k)}</span>`
    )}</p>
    ${chart(hourly(d.lastDay), "per hour")}
    ${d.oldest
      ? html`<p>Oldest: <a href="/message/${d.oldest.id}" class="mono">${d.oldest.id}</a> from ${
        d.oldest.from || "<>"
      }, queued ${d.oldest.created_at}</p>`
      : html``}
    ${providersSection(d.providers ?? [])}
    <h2>Top deferred domains</h2>
    ${d.topDeferred.length === 0 ? html`<p>None.</p>` : html`
      <div class="scroll">
        <table><tr><th>domain</th><th>recipients</th><th>last error</th></tr>
          ${d.topDeferred.map((t) =>
            html`
              <tr>
                <td><a href="/queue?q=${encodeURIComponent("@" + t.domain)}">${t.domain}</a></td>
                <td>${t.recipients}</td>
                <td>${t.last_error ?? ""}</td>
              </tr>
            `
          )}
        </table>
      </div>
    `}
    ${d.limits.length === 0 ? html`` : html`
      <h2>Sending limits</h2>
      <div class="scroll">
        <table><tr><th>user</th><th>this hour</th><th>last 24 hours</th></tr>
          ${d.limits.map((l) =>
            html`
              <tr>
                <td>${l.username}</td>
                <td>${l.hour} / ${l.per_hour ?? "no limit"}</td>
                <td>${l.day} / ${l.per_day ?? "no limit"}</td>
              </tr>
            `
          )}
        </table>
      </div>
    `}
  `;
}

function hourly(minutes: MinuteCounts[]): MinuteCounts[] {
  const hours: MinuteCounts[] = [];
  for (let i = 0; i < minutes.length; i += 60) {
    const slice = minutes.slice(i, i + 60);
    hours.push(
      Object.fromEntries(KINDS.map((k) => [
        k,
        slice.reduce((n, m) => n + m[k], 0),
      ])) as unknown as MinuteCounts,
    );
  }
  return hours;
}

// A small grouped bar chart as inline SVG: no script, no external library.
function chart(series: MinuteCounts[], label: string): Html {
  const max = Math.max(1, ...series.flatMap((m) => KINDS.map((k) => m[k])));
  const slot = 100 / series.length;
  const bar = slot / KINDS.length;
  const rects = series.flatMap((m, i) =>
    KINDS.map((k, j) => {
      const h = (m[k] / max) * 95;
      return html`
        <rect class="${k}" x="${(i * slot + j * bar).toFixed(3)}" y="${(100 - h).toFixed(
          3,
        )}" width="${bar.toFixed(3)}"
          height="${h.toFixed(3)}"></rect>
      `;
    })
  );
  return html`
    <svg class="chart" viewBox="0 0 100 100" preserveAspectRatio="none" role="img"
      aria-label="messages ${label}">${rects}</svg>
  `;
}

/** The queue page: search by id, sender, recipient or domain; state filter; pagination. */
export function queuePage(
  q: string,
  state: string,
  offset: number,
  result: { total: number; items: IndexEntry[] },
  pageSize: number,
): Html {
  const link = (o: number) =>
    `/queue?q=${encodeURIComponent(q)}&state=${encodeURIComponent(state)}&offset=${o}`;
  const w = { offset, shown: result.items.length, pageSize, total: result.total };
  return html`
    <form method="get" action="/queue" class="actions">
      <input type="search" name="q" value="${q}" placeholder="id, sender, recipient or @domain"
        aria-label="search">
      <select name="state" aria-label="state">${["", "queued", "deferred", "held"].map((s) =>
        html`<option value="${s}" ${s === state ? html`selected` : html``}>${
          s || "any state"
        }</option>`
      )}</select>
      <button type="submit">Search</button>
    </form>
    <p>${result.total} message(s)${showing(w)}</p>
    <div class="scroll">
      <table><tr><th>id</th><th>state</th><th>from</th><th>to go</th><th class="optional">created</th><th class="optional">last error</th></tr>
    ${result.items.map((e) =>
      html`
        <tr>
          <td><a class="mono" href="/message/${e.id}">${e.id}</a></td>
          <td>${e.state}</td>
          <td>${e.from || "<>"}</td>
          <td>${e.open.slice(0, 3).join(", ")}${e.open.length > 3
            ? ` +${e.open.length - 3}`
            : ""}</td>
          <td class="optional">${e.created_at}</td>
          <td class="optional">${e.last_error ?? ""}</td>
        </tr>
      `
    )}
      </table>
    </div>
    ${pager(w, link)}
  `;
}

/** One message: envelope, per-recipient status with every recorded attempt, headers, actions. */
export function messagePage(
  meta: MessageMeta,
  headers: string,
  csrf: string,
  flash: string | null,
): Html {
  const action = (op: string, label: string, cls = "") =>
    html`
      <form method="post" action="/message/${meta.id}/${op}"
        class="inline"><input type="hidden" name="csrf" value="${csrf}"><button type="submit" class="${cls}">${label}</button></form>
    `;
  return html`
    ${flash ? html`<p class="flash">${flash}</p>` : html``}
    <div class="actions">
      ${action("retry", "Retry now")}
      ${meta.state === "held" ? action("release", "Release") : action("hold", "Hold")}
      <a class="button danger" href="/message/${meta.id}/delete">Delete…</a>
    </div>
    <div class="scroll">
      <table>
        <tr>
          <th>id</th>
          <td class="mono">${meta.id}</td>
        </tr>
        <tr>
          <th>state</th>
          <td>${meta.state}</td>
        </tr>
        <tr>
          <th>from</th>
          <td>${meta.from || "<> (bounce)"}</td>
        </tr>
        <tr>
          <th>message-id</th>
          <td>${meta.message_id ?? ""}</td>
        </tr>
        <tr>
          <th>queued</th>
          <td>${meta.created_at}</td>
        </tr>
        <tr>
          <th>next attempt</th>
          <td>${meta.next_attempt_at}</td>
        </tr>
        <tr>
          <th>size</th>
          <td>${meta.size} bytes</td>
        </tr>
        <tr>
          <th>submitted by</th>
          <td>${meta.auth_user ?? "-"} from ${meta.client_ip ?? "-"}</td>
        </tr>
      </table>
    </div>
    <h2>Recipients</h2>
    <div class="scroll">
      <table><tr><th>recipient</th><th>status</th><th>attempts</th><th>history</th></tr>
    ${meta.recipients.map((r) =>
      html`
        <tr>
          <td>${r.address}</td>
          <td class="nowrap">${r.status}</td>
          <td class="nowrap">${r.attempts}</td>
          <td>
            ${(r.history ?? []).map((h) =>
              html`<div><span class="mono">${h.at}</span> ${h.outcome} ${h.status}${
                h.remote ? ` ${h.remote}` : ""
              }: ${h.text}</div>`
            )}
            ${!r.history?.length && r.last_error ? r.last_error : ""}</td>
        </tr>
      `
    )}
      </table>
    </div>
    <h2>Headers</h2><pre>${headers}</pre>
  `;
}

/** The delete confirmation. */
export function confirmDeletePage(id: string, csrf: string): Html {
  return html`
    <p>Delete message <span class="mono">${id}</span>? Its recipients not yet delivered will never get it, and no bounce is sent.</p>
    <form method="post"
      action="/message/${id}/delete"><input type="hidden" name="csrf" value="${csrf}">
      <input type="hidden" name="confirm" value="yes"><button type="submit" class="danger">Delete</button> <a href="/message/${id}">Cancel</a></form>
  `;
}

/** The login form. */
export function loginPage(error: string | null): Html {
  return html`
    ${error ? html`<p class="flash error">${error}</p>` : html``}
      <form method="post" action="/login">
      <p><label>User<br><input type="text" name="username" autocomplete="username"></label></p>
      <p><label>Password or admin token<br><input type="password" name="password" autocomplete="current-password"></label></p>
      <p><button type="submit">Log in</button></p>
    </form>
  `;
}

function age(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172_800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86_400)}d`;
}

/** Mailbox providers: connections, rate, suspensions and warm-up counts. */
function providersSection(providers: ProviderStatus[]): Html {
  if (!providers.length) return html``;
  return html`
    <h2>Providers</h2>
    <div class="scroll">
      <table><tr><th>provider</th><th>connections</th><th>rate</th><th>suspended until</th><th>why</th><th>throttle replies</th><th>warm-up</th></tr>
        ${providers.map((p) =>
          html`
            <tr>
              <td>${p.name}</td>
              <td>${p.connections}${p.connections_limit === null
                ? ""
                : ` / ${p.connections_limit}`}</td>
              <td>${p.reduced_rate
                ? `${p.reduced_rate} until ${p.reduced_until}`
                : p.rate || "-"}</td>
              <td>${p.suspended_until ?? "-"}</td>
              <td>${p.suspended_reason ?? ""}</td>
              <td>${p.throttle_replies}</td>
              <td>${p.warmup.map((w) => `${w.domain} ${w.sent}/${w.cap}`).join(", ")}</td>
            </tr>
          `
        )}
      </table>
    </div>
  `;
}
