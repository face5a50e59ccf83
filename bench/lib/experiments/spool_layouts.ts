// deno-lint-ignore-file no-console
/**
 * EXPERIMENT: what one new message costs the file system, for three equally
 * durable layouts, with 20 concurrent writers (the benchmarks' session
 * count): rate and this process's CPU (user + system, which includes the
 * kernel's file-system work) per message. Raw Deno calls, no SMTP.
 *
 *   deno run -A bench/lib/experiments/spool_layouts.ts [COUNT]
 *
 * two         the layout before issue 10: body straight into msg/, metadata
 *             into tmp/ (both: open, write, fdatasync, close, in parallel),
 *             msg/ fsynced, metadata renamed into meta/, meta/ fsynced
 * one_rename  today's layout: one file (envelope + message) into tmp/,
 *             fdatasync, renamed into msg/, msg/ fsynced
 * one_direct  one file straight into msg/ (needs a completion marker to be
 *             safe; not used): fdatasync, msg/ fsynced
 * Directory fsyncs are group-committed by src/spool/dir_sync.ts.
 * Measured here on 2026-12-02 (ext4 without a journal, 2 vCPUs), 3 rounds of
 * 4,000: two 347–423 µs CPU/msg, one_rename 231–264, one_direct 187–213.
 */
import { cpuUsage } from "node:process";
import { DirSync } from "../../../src/spool/dir_sync.ts";

const N = Number(Deno.args[0] ?? 4000);
const body = new Uint8Array(4600).fill(0x61);
const meta = new Uint8Array(400).fill(0x62);

async function write(path: string, parts: Uint8Array[]): Promise<void> {
  const file = await Deno.open(path, { write: true, createNew: true, mode: 0o600 });
  for (const part of parts) await file.write(part);
  await file.syncData();
  file.close();
}

type Layout = (dir: string, syncs: Record<"msg" | "meta", DirSync>, id: string) => Promise<void>;
const layouts: Record<string, Layout> = {
  two: async (d, s, id) => {
    await Promise.all([write(`${d}/msg/${id}`, [body]), write(`${d}/tmp/${id}`, [meta])]);
    await s.msg.sync();
    await Deno.rename(`${d}/tmp/${id}`, `${d}/meta/${id}`);
    await s.meta.sync();
  },
  one_rename: async (d, s, id) => {
    await write(`${d}/tmp/${id}`, [meta, body]);
    await Deno.rename(`${d}/tmp/${id}`, `${d}/msg/${id}`);
    await s.msg.sync();
  },
  one_direct: async (d, s, id) => {
    await write(`${d}/msg/${id}`, [meta, body]);
    await s.msg.sync();
  },
};

// Removed at the end: ext4 allocates inodes more slowly right after many deletions.
const dirs: string[] = [];
for (let round = 0; round < 3; round++) {
  for (const [name, layout] of Object.entries(layouts)) {
    const dir = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "spool-layouts-" });
    for (const sub of ["msg", "meta", "tmp"]) Deno.mkdirSync(`${dir}/${sub}`);
    const syncs = { msg: new DirSync(`${dir}/msg`), meta: new DirSync(`${dir}/meta`) };
    const c0 = cpuUsage();
    const t0 = performance.now();
    let next = 0;
    await Promise.all(Array.from({ length: 20 }, async () => {
      while (next < N) await layout(dir, syncs, `m${next++}`);
    }));
    const cpu = cpuUsage(c0);
    const ms = performance.now() - t0;
    console.log(
      `round ${round} ${name.padEnd(10)} ${(N / ms * 1000).toFixed(0).padStart(5)} msg/s, ` +
        `${((cpu.user + cpu.system) / N).toFixed(0)} µs CPU/msg`,
    );
    dirs.push(dir);
  }
}
for (const dir of dirs) await Deno.remove(dir, { recursive: true });
