/** HTML text that is already safe to insert. */
export class Html {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"'`]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * A tagged template that escapes every interpolated value unless it is
 * {@linkcode Html} (or an array of them): output is escaped by default.
 */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0];
  values.forEach((value, i) => {
    out += render(value) + strings[i + 1];
  });
  return new Html(out);
}

function render(value: unknown): string {
  if (value instanceof Html) return value.value;
  if (Array.isArray(value)) return value.map(render).join("");
  if (value === null || value === undefined || value === false) return "";
  return escapeHtml(String(value));
}

/** Where one page of a long list stands: the offset, the page's length and the total. */
export interface PageWindow {
  offset: number;
  shown: number;
  pageSize: number;
  total: number;
}

/** ", showing 11–20" after a list's count, nothing for an empty list. */
export function showing(w: PageWindow): Html {
  return w.total ? html`, showing ${w.offset + 1}–${w.offset + w.shown}` : html``;
}

/** The newer/older links of a paginated list; `link` gives the address of an offset. */
export function pager(w: PageWindow, link: (offset: number) => string): Html {
  return html`<div class="pager">${
    w.offset > 0 ? html`<a href="${link(Math.max(0, w.offset - w.pageSize))}">← newer</a>` : html``
  }
    ${
    w.offset + w.pageSize < w.total
      ? html`<a href="${link(w.offset + w.pageSize)}">older →</a>`
      : html``
  }</div>`;
}

/** The page frame: navigation and the stylesheet, no inline script. */
export function layout(
  title: string,
  body: Html,
  options: { user?: string | null; csrf?: string } = {},
): string {
  const nav = options.user
    ? html`<nav><a href="/">Dashboard</a><a href="/queue">Queue</a><a href="/suppressions">Suppressions</a><a href="/doctor">DNS doctor</a>
      <form method="post" action="/logout" class="inline"><input type="hidden" name="csrf" value="${
      options.csrf ?? ""
    }">
      <button type="submit" class="link">Log out ${options.user}</button></form></nav>`
    : html``;
  return `<!doctype html>${html`
    <html lang="en">
      <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>${title} · minimta</title>
        <link rel="stylesheet" href="/static/style.css">
      </head>
      <body>
        <header><strong>minimta</strong>${nav}</header>
        <main><h1>${title}</h1>${body}</main>
      </body>
    </html>
  `}`;
}

/** The whole stylesheet, served from /static/style.css (no inline styles, so the CSP can forbid them). */
export const STYLE = `
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,sans-serif;color:#1d2330;background:#f6f7f9}
header{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;padding:.6rem 1rem;background:#1d2330;color:#fff}
header a,header .link{color:#cfe0ff;text-decoration:none;margin-right:1rem;font:inherit}nav{display:flex;flex-wrap:wrap;align-items:center}
main{max-width:1100px;margin:0 auto;padding:1rem}h1{font-size:1.35rem}h2{font-size:1.1rem;margin-top:1.6rem}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:.7rem}
.card{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:.7rem}.card b{display:block;font-size:1.5rem}
.scroll{overflow-x:auto}table{width:100%;border-collapse:collapse;background:#fff}
th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid #e6e9ef;vertical-align:top;word-break:break-word}
th{background:#eef1f6;font-weight:600;word-break:normal}.nowrap{white-space:nowrap}code,.mono{font-family:ui-monospace,monospace;font-size:.9em}
form.inline{display:inline}button,.button{font:inherit;padding:.35rem .8rem;border-radius:6px;border:1px solid #8a94a6;background:#fff;cursor:pointer}
button.danger{border-color:#b42318;color:#b42318}.link{background:none;border:none;padding:0;cursor:pointer}
input[type=text],input[type=password],input[type=search],select{font:inherit;padding:.35rem;border:1px solid #b8c0cc;border-radius:6px;max-width:100%}
.flash{background:#e7f6ec;border:1px solid #9bd3ae;padding:.5rem .8rem;border-radius:6px}.error{background:#fdecea;border-color:#f1a29b}
.chart{width:100%;height:120px;background:#fff;border:1px solid #dde1e8;border-radius:8px}
.legend span{margin-right:1rem}.delivered{fill:#2e7d32;color:#2e7d32}.deferred{fill:#ed8c00;color:#b56b00}
.bounced{fill:#c62828;color:#c62828}.received{fill:#1565c0;color:#1565c0}
pre{background:#fff;border:1px solid #dde1e8;padding:.6rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
.status-pass{color:#2e7d32}.status-fail{color:#c62828;font-weight:600}.status-info{color:#5b6577}
.pager{display:flex;gap:1rem;margin:.8rem 0}.actions{display:flex;flex-wrap:wrap;gap:.5rem;margin:.8rem 0}
@media (max-width:600px){th.optional,td.optional{display:none}main{padding:.6rem}}
`;
