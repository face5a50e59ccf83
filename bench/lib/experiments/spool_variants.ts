// deno-lint-ignore-file no-console
/**
 * EXPERIMENT: what the spool's create() costs, and what cheaper but equally
 * durable write sequences would cost, in isolation (no SMTP). For each
 * variant: sequential latency, and rate + process CPU per message with 20
 * concurrent writers (the benchmark's session count).
 *
 *   deno run -A bench/lib/experiments/spool_variants.ts [DIR] [COUNT]
 *
 * current   src/spool Spool.create: tmp body + tmp meta (each open, write,
 *           fdatasync, close), 2 renames, group-committed fsync of msg/ and
 *           meta/ (DirSync opens and closes the directory each time)
 * direct    body written straight to msg/ID.eml (no tmp, no rename: a body
 *           without metadata is an orphan that recover() already deletes),
 *           body and meta written in parallel, meta via tmp + rename, the
 *           two directory fsyncs group-committed on directory fds kept open
 * direct1   as direct, with both files in one directory (one dir fsync)
 */
import { cpuUsage } from "node:process";
import { Spool } from "../../../src/spool/mod.ts";

const base = Deno.args[0] ?? (await Deno.makeTempDir({ dir: "/var/tmp", prefix: "spoolvar" }));
const COUNT = Number(Deno.args[1] ?? 4000);
const body = new Uint8Array(4600).fill(0x61);
const newMessage = {
  from: "a@ours.test",
  recipients: ["b@example.test"],
  message_id: "<x@y>",
  auth_user: null,
  client_ip: "127.0.0.1",
  is_bounce: false,
  smtputf8: false,
  eight_bit: false,
};
const metaBytes = new TextEncoder().encode(
  JSON.stringify({ ...newMessage, version: 1 }).padEnd(600),
);

/** Group commit on a directory fd kept open. */
class KeptDirSync {
  #fd: Deno.FsFile;
  #running: Promise<void> | null = null;
  #next: Promise<void> | null = null;
  constructor(fd: Deno.FsFile) {
    this.#fd = fd;
  }
  sync(): Promise<void> {
    if (!this.#running) {
      this.#running = this.#fd.sync().finally(() => (this.#running = null));
      return this.#running;
    }
    this.#next ??= this.#running.catch(() => {}).then(() => {
      this.#next = null;
      return this.sync();
    });
    return this.#next;
  }
}

async function writeFile(path: string, data: Uint8Array): Promise<void> {
  const f = await Deno.open(path, { write: true, createNew: true, mode: 0o600 });
  try {
    let off = 0;
    while (off < data.length) off += await f.write(data.subarray(off));
    await f.syncData();
  } finally {
    f.close();
  }
}

let seq = 0;
async function makeDirect(dir: string, oneDir: boolean) {
  const msgDir = `${dir}/msg`;
  const metaDir = oneDir ? msgDir : `${dir}/meta`;
  for (const d of [`${dir}/tmp`, msgDir, metaDir]) await Deno.mkdir(d, { recursive: true });
  const msgSync = new KeptDirSync(await Deno.open(msgDir, { read: true }));
  const metaSync = oneDir ? msgSync : new KeptDirSync(await Deno.open(metaDir, { read: true }));
  return async () => {
    const id = `M${(seq++).toString(36)}`;
    await Promise.all([
      writeFile(`${msgDir}/${id}.eml`, body),
      writeFile(`${dir}/tmp/${id}.json`, metaBytes),
    ]);
    await Deno.rename(`${dir}/tmp/${id}.json`, `${metaDir}/${id}.json`);
    await (oneDir ? msgSync.sync() : Promise.all([msgSync.sync(), metaSync.sync()]));
  };
}

async function run(name: string, create: () => Promise<unknown>) {
  for (let i = 0; i < 200; i++) await create(); // warm-up
  let t = performance.now();
  for (let i = 0; i < 300; i++) await create();
  const seqMs = (performance.now() - t) / 300;
  const c0 = cpuUsage();
  t = performance.now();
  let left = COUNT;
  await Promise.all(Array.from({ length: 20 }, async () => {
    while (left-- > 0) await create();
  }));
  const s = (performance.now() - t) / 1000;
  const c = cpuUsage(c0);
  console.log(
    `${name.padEnd(8)} sequential ${seqMs.toFixed(3)} ms/msg | 20 concurrent: ${
      (COUNT / s).toFixed(0)
    } msg/s, CPU ${((c.user + c.system) / 1000 / COUNT).toFixed(3)} ms/msg`,
  );
}

const spool = await Spool.open(`${base}/current`, { fsync: true });
await run("current", () => spool.create([body], newMessage));
await run("direct", await makeDirect(`${base}/direct`, false));
await run("direct1", await makeDirect(`${base}/direct1`, true));
const spoolNoSync = await Spool.open(`${base}/nofsync`, { fsync: false });
await run("nofsync", () => spoolNoSync.create([body], newMessage));
if (!Deno.args[0]) await Deno.remove(base, { recursive: true });
