// deno-lint-ignore-file no-console
/**
 * Samples a running `deno run --inspect=HOST:PORT` process with the V8 CPU
 * profiler (Chrome DevTools protocol) for a while, saves the .cpuprofile
 * (open it in Chrome DevTools) and prints where the time went: self time per
 * function and per package/module.
 *
 *   deno run -A bench/lib/cpu_profile.ts --inspect 127.0.0.1:9229 --seconds 8 --out prof.cpuprofile
 *
 * With --start, the target was started with `--inspect-wait` and is let run
 * once sampling is on, so the profile covers its start-up from the first line.
 */
import { parseArgs } from "node:util";

const { values: o } = parseArgs({
  options: {
    inspect: { type: "string", default: "127.0.0.1:9229" },
    seconds: { type: "string", default: "8" },
    out: { type: "string", default: "minimta.cpuprofile" },
    top: { type: "string", default: "40" },
    interval: { type: "string", default: "250" },
    start: { type: "boolean", default: false },
  },
});

const targets = await (await fetch(`http://${o.inspect}/json/list`)).json();
const ws = new WebSocket(targets[0].webSocketDebuggerUrl);
await new Promise((r, j) => {
  ws.onopen = r;
  ws.onerror = j;
});
let nextId = 1;
const waiting = new Map<number, (v: unknown) => void>();
ws.onmessage = (e) => {
  const msg = JSON.parse(e.data);
  if (msg.id && waiting.has(msg.id)) {
    waiting.get(msg.id)!(msg.result);
    waiting.delete(msg.id);
  }
};
// deno-lint-ignore no-explicit-any
function call(method: string, params: Record<string, unknown> = {}): Promise<any> {
  const id = nextId++;
  ws.send(JSON.stringify({ id, method, params }));
  return new Promise((r) => waiting.set(id, r));
}

await call("Profiler.enable");
await call("Profiler.setSamplingInterval", { interval: Number(o.interval) });
await call("Profiler.start");
if (o.start) await call("Runtime.runIfWaitingForDebugger");
await new Promise((r) => setTimeout(r, Number(o.seconds) * 1000));
const { profile } = await call("Profiler.stop");
ws.close();
await Deno.writeTextFile(o.out, JSON.stringify(profile));

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount: number;
  children?: number[];
}
const nodes = new Map<number, Node>(profile.nodes.map((n: Node) => [n.id, n]));
// Time per sample from the timeDeltas.
const deltas: number[] = profile.timeDeltas;
const samples: number[] = profile.samples;
const selfUs = new Map<number, number>();
for (let i = 0; i < samples.length; i++) {
  selfUs.set(samples[i], (selfUs.get(samples[i]) ?? 0) + (deltas[i + 1] ?? deltas[i] ?? 0));
}
const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
const short = (url: string) =>
  url.replace(
    /^.*registry\.npmjs\.org\/([^/]+(?:\/[^/]+)?)\/[^/]+\/(?:dist\/esm\/|lib\/)?/,
    "npm:$1/",
  )
    .replace(/^file:\/\/\/work\/main\//, "")
    .replace(/^ext:/, "ext:");
const group = (url: string) => {
  if (!url) return "(native/idle/gc)";
  const s = short(url);
  if (s.startsWith("npm:")) return s.split("/")[0];
  if (s.startsWith("ext:")) return s.split("/").slice(0, 2).join("/");
  return s.split("/").slice(0, 2).join("/");
};
const byFn = new Map<string, number>();
const byGroup = new Map<string, number>();
for (const [id, us] of selfUs) {
  const n = nodes.get(id)!;
  const f = n.callFrame;
  const key = `${f.functionName || "(anonymous)"}  ${short(f.url)}:${f.lineNumber + 1}`;
  byFn.set(key, (byFn.get(key) ?? 0) + us);
  byGroup.set(group(f.url), (byGroup.get(group(f.url)) ?? 0) + us);
}
const pct = (us: number) => `${(100 * us / total).toFixed(1).padStart(5)}%`;
console.log(`sampled ${(total / 1e6).toFixed(2)} s of the main thread; saved ${o.out}`);
console.log("\nself time by module:");
for (const [k, v] of [...byGroup].sort((a, b) => b[1] - a[1]).slice(0, 25)) {
  console.log(`${pct(v)}  ${k}`);
}
console.log("\nself time by function:");
for (const [k, v] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, Number(o.top))) {
  console.log(`${pct(v)}  ${k}`);
}

// Inclusive ("total") time per function, each sample counted once per key
// even under recursion.
const parent = new Map<number, number>();
for (const n of nodes.values()) for (const c of n.children ?? []) parent.set(c, n.id);
const keyOf = (n: Node) =>
  `${n.callFrame.functionName || "(anonymous)"}  ${short(n.callFrame.url)}:${
    n.callFrame.lineNumber + 1
  }`;
const incl = new Map<string, number>();
for (const [id, us] of selfUs) {
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const n = nodes.get(cur)!;
    if (!n.callFrame.url) continue;
    const k = keyOf(n);
    if (seen.has(k)) continue;
    seen.add(k);
    incl.set(k, (incl.get(k) ?? 0) + us);
  }
}
console.log("\ntotal (inclusive) time by function, minimta's own code:");
for (
  const [k, v] of [...incl].filter(([k]) => k.includes(" src/")).sort((a, b) => b[1] - a[1])
    .slice(0, Number(o.top))
) {
  console.log(`${pct(v)}  ${k}`);
}
