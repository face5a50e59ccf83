// deno-lint-ignore-file no-console
/**
 * Reads bench/delivery.sh's results (TSV on stdin: domains, server, run,
 * messages, seconds, msg/s, CPU ms/msg, loadavg, submission-phase msg/s; or
 * domains, server, "peak_rss_kb", KB) and prints the table of medians with
 * minimta/Postfix ratios for each minimta variant.
 */
const text = new TextDecoder().decode(await new Response(Deno.stdin.readable).arrayBuffer());
const runs = new Map<string, { rate: number[]; cpu: number[]; sub: number[] }>();
const rss = new Map<string, number>();
const groups: string[] = [];
const servers: string[] = [];
for (const line of text.split("\n")) {
  const f = line.split("\t");
  if (f.length < 4) continue;
  const [domains, server] = f;
  if (!groups.includes(domains)) groups.push(domains);
  if (!servers.includes(server)) servers.push(server);
  const key = `${domains}/${server}`;
  if (f[2] === "peak_rss_kb") {
    rss.set(key, Number(f[3]));
    continue;
  }
  const r = runs.get(key) ?? { rate: [], cpu: [], sub: [] };
  r.rate.push(Number(f[5]));
  r.cpu.push(Number(f[6]));
  r.sub.push(Number(f[8]));
  runs.set(key, r);
}
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const rows: string[][] = [[
  "domains",
  "server",
  "msg/s",
  "CPU ms/msg",
  "peak RSS",
  "sub msg/s",
  "runs (msg/s)",
]];
const summary: string[] = [];
for (const g of groups) {
  const got: Record<string, { rate: number; cpu: number }> = {};
  for (const server of servers) {
    const r = runs.get(`${g}/${server}`);
    if (!r) continue;
    got[server] = { rate: median(r.rate), cpu: median(r.cpu) };
    const kb = rss.get(`${g}/${server}`);
    rows.push([
      g,
      server === "postfix" ? "Postfix" : server,
      got[server].rate.toFixed(0),
      got[server].cpu.toFixed(2),
      kb ? `${(kb / 1024).toFixed(0)} MiB` : "-",
      median(r.sub).toFixed(0),
      r.rate.map((x) => x.toFixed(0)).join(" "),
    ]);
  }
  for (const server of servers) {
    if (server === "postfix" || !got[server] || !got.postfix) continue;
    const rate = got[server].rate / got.postfix.rate;
    const cpu = got[server].cpu / got.postfix.cpu;
    rows.push([g, `${server}/Postfix`, `${rate.toFixed(2)}x`, `${cpu.toFixed(2)}x`, "", "", ""]);
    summary.push(
      `${g} domain(s), ${server}: ${(rate * 100).toFixed(0)}% of Postfix's end-to-end rate, ` +
        `${cpu.toFixed(2)}x its CPU per message`,
    );
  }
}
const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
const out = rows.map((r) =>
  r.map((c, i) => (i >= 2 && i <= 5 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join("  ")
    .trimEnd()
);
out.splice(1, 0, widths.map((w) => "-".repeat(w)).join("  "));
console.log([...out, "", ...summary].join("\n"));
