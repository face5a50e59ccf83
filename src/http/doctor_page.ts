import { type Html, html } from "./html.ts";

/** One check of the report (the shape `minimta doctor --json` prints). */
export interface DoctorRow {
  check: string;
  subject: string;
  status: "pass" | "fail" | "info";
  message: string;
  /** The DNS record to publish, in zone-file form. */
  publish?: string;
}

/** The `minimta doctor` report and when it was made. */
export interface DoctorPageReport {
  ok: boolean;
  hostname: string;
  sending_ip: string | null;
  domains: string[];
  checks: DoctorRow[];
  /** ISO 8601. */
  checked_at: string;
}

/**
 * The DNS doctor: one row per check of `minimta doctor` (status, check,
 * subject, message, record to publish), and a button to check again.
 */
export function doctorPage(report: DoctorPageReport, csrf: string): Html {
  const failed = report.checks.filter((c) => c.status === "fail").length;
  const counted = report.checks.filter((c) => c.status !== "info").length;
  return html`
    <p class="flash${failed ? " error" : ""}">${failed
      ? `${failed} of ${counted} checks failed`
      : `All ${counted} checks pass`}.</p>
    <p>Host <span class="mono">${report
      .hostname}</span>, sending IP <span class="mono">${report.sending_ip ??
      "unknown"}</span>, domains ${report.domains.join(", ") ||
      "none"}. Checked at <span class="mono">${report
      .checked_at}</span>; reloading shows this result for a minute. The same report as <code>minimta doctor</code>.</p>
    <form method="post" action="/doctor"
      class="actions"><input type="hidden" name="csrf" value="${csrf}"><button type="submit">Check again</button></form>
    <div class="scroll">
      <table><tr><th>status</th><th>check</th><th>subject</th><th>message</th><th>publish</th></tr>
        ${report.checks.map((c) =>
          html`
            <tr>
              <td class="nowrap status-${c.status}">${c.status.toUpperCase()}</td>
              <td class="nowrap">${c.check}</td>
              <td class="mono">${c.subject}</td>
              <td>${c.message}</td>
              <td>${c.publish ? html`<code>${c.publish}</code>` : ""}</td>
            </tr>
          `
        )}
      </table>
    </div>
  `;
}
