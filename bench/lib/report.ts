// deno-lint-ignore-file no-console
/**
 * Reads bench/submission.sh's results (TSV on stdin: mode, server, run,
 * messages, seconds, msg/s, CPU ms/msg; or mode, server, "peak_rss_kb", KB)
 * and prints the table of medians with minimta/Postfix ratios.
 */
const text = new TextDecoder().decode(await new Response(Deno.stdin.readable).arrayBuffer());
const runs = new Map<string, { rate: number[]; cpu: number[] }>();
const rss = new Map<string, number>();
const modes: string[] = [];
for (const line of text.split("\n")) {
  const f = line.split("\t");
  if (f.length < 4) continue;
  const [mode, server] = f;
  if (!modes.includes(mode)) modes.push(mode);
  const key = `${mode}/${server}`;
  if (f[2] === "peak_rss_kb") {
    rss.set(key, Number(f[3]));
    continue;
  }
  const r = runs.get(key) ?? { rate: [], cpu: [] };
  r.rate.push(Number(f[5]));
  r.cpu.push(Number(f[6]));
  runs.set(key, r);
}
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const rows: string[][] = [["mode", "server", "msg/s", "CPU ms/msg", "peak RSS", "runs (msg/s)"]];
const ratios: string[] = [];
for (const mode of modes) {
  const got: Record<string, { rate: number; cpu: number }> = {};
  for (const server of ["minimta", "postfix"]) {
    const r = runs.get(`${mode}/${server}`);
    if (!r) continue;
    got[server] = { rate: median(r.rate), cpu: median(r.cpu) };
    const kb = rss.get(`${mode}/${server}`);
    rows.push([
      mode,
      server === "postfix" ? "Postfix" : server,
      got[server].rate.toFixed(0),
      got[server].cpu.toFixed(2),
      kb ? `${(kb / 1024).toFixed(0)} MiB` : "-",
      r.rate.map((x) => x.toFixed(0)).join(" "),
    ]);
  }
  if (got.minimta && got.postfix) {
    const rate = got.minimta.rate / got.postfix.rate;
    const cpu = got.minimta.cpu / got.postfix.cpu;
    rows.push([
      mode,
      "minimta/Postfix",
      `${rate.toFixed(2)}x`,
      `${cpu.toFixed(2)}x`,
      "",
      "",
    ]);
    ratios.push(
      `${mode}: minimta reaches ${(rate * 100).toFixed(0)}% of Postfix's rate ` +
        `(${rate >= 1 ? "goal met" : "goal NOT met"}) using ${cpu.toFixed(2)}x its CPU per message`,
    );
  }
}
const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
const out = rows.map((r) =>
  r.map((c, i) => (i >= 2 && i <= 4 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join("  ")
    .trimEnd()
);
out.splice(1, 0, widths.map((w) => "-".repeat(w)).join("  "));
console.log([...out, "", ...ratios].join("\n"));
