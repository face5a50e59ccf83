import type { Suppression } from "../spool/mod.ts";
import { type Html, html, pager, showing } from "./html.ts";

/** Entries whose address, sender domain or reply contains `q` (case-insensitive); all for "". */
export function searchSuppressions(entries: Suppression[], q: string): Suppression[] {
  const needle = q.trim().toLowerCase();
  if (!needle) return entries;
  return entries.filter((e) =>
    [e.address, e.sender_domain ?? "", e.reply].some((v) => v.toLowerCase().includes(needle))
  );
}

/** The suppression list: a search box, one row per address, pagination (like the queue page). */
export function suppressionsPage(
  q: string,
  offset: number,
  result: { total: number; items: Suppression[] },
  pageSize: number,
): Html {
  const link = (o: number) => `/suppressions?q=${encodeURIComponent(q)}&offset=${o}`;
  const w = { offset, shown: result.items.length, pageSize, total: result.total };
  return html`
    <form method="get" action="/suppressions" class="actions">
      <input type="search" name="q" value="${q}" placeholder="address, @domain or reply text"
        aria-label="search">
      <button type="submit">Search</button>
    </form>
    <p>${result.total} suppressed address(es)${showing(
      w,
    )}. Remove one with <code>minimta suppress remove ADDR</code>.</p>
    <div class="scroll">
      <table><tr><th>address</th><th>added</th><th class="optional">expires</th><th>source</th><th class="optional">sender domain</th><th>reply</th></tr>
    ${result.items.map((e) =>
      html`
        <tr>
          <td>${e.address}</td>
          <td class="nowrap mono">${e.added_at}</td>
          <td class="optional nowrap mono">${e.expires_at}</td>
          <td>${e.source}</td>
          <td class="optional">${e.sender_domain ?? "-"}</td>
          <td>${e.reply}</td>
        </tr>
      `
    )}
      </table>
    </div>
    ${pager(w, link)}
  `;
}
