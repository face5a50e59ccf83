import assert from "node:assert/strict";
import { SYNC_WRITE_LIMIT } from "./durable_write.ts";
import { MessageNotFoundError, Spool } from "./mod.ts";

const msg = {
  from: "a@ours.test",
  recipients: ["b@dest.test", '"odd \\" name"@dest.test'],
  message_id: null,
  auth_user: "a",
  client_ip: "127.0.0.1",
  is_bounce: false,
  smtputf8: false,
  eight_bit: true,
};

async function temp(): Promise<
  { dir: string; spool: Spool; [Symbol.asyncDispose](): Promise<void> }
> {
  const dir = await Deno.makeTempDir();
  const spool = await Spool.open(dir);
  return { dir, spool, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

Deno.test("spool stores bytes exactly, with 0600 files in 0700 folders", async () => {
  await using t = await temp();
  const body = new Uint8Array([0x41, 0xff, 0xfe, 0x0d, 0x0a]);
  const meta = await t.spool.create([body.subarray(0, 2), body.subarray(2)], msg);
  assert.deepEqual(await t.spool.readBody(meta.id), body);
  const again = await t.spool.get(meta.id);
  assert.deepEqual(again.recipients.map((r) => r.address), msg.recipients);
  assert.equal(again.size, 5);
  assert.equal((await Deno.stat(`${t.dir}/msg/${meta.id}.eml`)).mode! & 0o777, 0o600);
  // One file per new message: the metadata file appears when the metadata changes.
  assert.deepEqual([...Deno.readDirSync(`${t.dir}/meta`)], []);
  await t.spool.writeMeta({ ...again, state: "held" });
  assert.equal((await Deno.stat(`${t.dir}/meta/${meta.id}.json`)).mode! & 0o777, 0o600);
  assert.deepEqual(await t.spool.readBody(meta.id), body);
  for (const sub of ["", "/msg", "/meta", "/tmp"]) {
    assert.equal((await Deno.stat(`${t.dir}${sub}`)).mode! & 0o777, 0o700);
  }
  assert.deepEqual([...Deno.readDirSync(`${t.dir}/tmp`)], []);
});

Deno.test("spool stores messages on both sides of the synchronous-write limit byte for byte, in one 0600 file", async () => {
  await using t = await temp();
  for (const size of [SYNC_WRITE_LIMIT - 600, SYNC_WRITE_LIMIT + 1, 3 * SYNC_WRITE_LIMIT]) {
    const body = new Uint8Array(size).map((_, i) => (i * 7) & 0xff);
    const half = size >> 1;
    const meta = await t.spool.create([body.subarray(0, half), body.subarray(half)], msg);
    assert.deepEqual(await t.spool.readBody(meta.id), body, `a ${size}-byte message`);
    assert.equal((await Deno.stat(`${t.dir}/msg/${meta.id}.eml`)).mode! & 0o777, 0o600);
  }
  assert.deepEqual([...Deno.readDirSync(`${t.dir}/tmp`)], []);
});

Deno.test("spool writeMeta replaces atomically and remove deletes both files", async () => {
  await using t = await temp();
  const meta = await t.spool.create([new Uint8Array([1])], msg);
  await t.spool.writeMeta({ ...meta, state: "held" });
  assert.equal((await t.spool.get(meta.id)).state, "held");
  await t.spool.remove(meta.id);
  await assert.rejects(() => t.spool.get(meta.id), MessageNotFoundError);
  assert.deepEqual(await t.spool.ids(), []);
});

Deno.test("spool ids never reach the file system unless they look like queue ids", async () => {
  await using t = await temp();
  await assert.rejects(() => t.spool.get("../../etc/passwd"), MessageNotFoundError);
  await assert.rejects(() => t.spool.readBody("x/y"), MessageNotFoundError);
});

Deno.test("spool recover empties tmp, drops orphan bodies and quarantines bad metadata", async () => {
  await using t = await temp();
  const good = await t.spool.create([new Uint8Array([1])], msg);
  const noBody = await t.spool.create([new Uint8Array([2])], msg);
  await t.spool.writeMeta({ ...noBody, state: "held" });
  await Deno.remove(`${t.dir}/msg/${noBody.id}.eml`);
  const broken = await t.spool.create([new Uint8Array([3])], msg);
  await Deno.writeTextFile(`${t.dir}/meta/${broken.id}.json`, '{"version":1,"id":');
  await Deno.writeTextFile(`${t.dir}/msg/237W2FMGYK2V39KX.eml`, "orphan");
  await Deno.writeTextFile(`${t.dir}/tmp/stale.eml`, "stale");
  const report = await t.spool.recover();
  assert.equal(report.messages, 1);
  assert.deepEqual(report.tmpRemoved, ["stale.eml"]);
  assert.deepEqual(report.orphanBodiesRemoved, ["237W2FMGYK2V39KX.eml"]);
  assert.deepEqual(report.quarantined.map((q) => q.id).sort(), [noBody.id, broken.id].sort());
  assert.deepEqual(await t.spool.ids(), [good.id]);
  assert.equal([...Deno.readDirSync(`${t.dir}/corrupt`)].length, 3);
});

Deno.test("spool lock admits one process at a time", async () => {
  await using t = await temp();
  assert.equal(await t.spool.lock(), true);
  const other = await Spool.open(t.dir);
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `const f = await Deno.open("${t.dir}/lock", {read: true, write: true}); Deno.exit(await f.tryLock(true) ? 0 : 3);`,
    ],
  });
  assert.equal((await child.output()).code, 3);
  t.spool.close();
  other.close();
});

Deno.test("spool recover quarantines JSON metadata that is malformed inside, naming the field", async () => {
  await using t = await temp();
  const good = await t.spool.create([new Uint8Array([1])], msg);
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ recipients: [null] }, /recipients\[0\] is not an object/],
    [{ state: "frozen" }, /state has a wrong type or value/],
    [{ size: undefined }, /size is missing/],
    [{ created_at: "yesterday" }, /created_at has a wrong type or value/],
  ];
  const reasons = new Map<string, RegExp>();
  for (const [change, reason] of cases) {
    const meta = await t.spool.create([new Uint8Array([2])], msg);
    await Deno.writeTextFile(
      `${t.dir}/meta/${meta.id}.json`,
      JSON.stringify({ ...meta, ...change }),
    );
    reasons.set(meta.id, reason);
  }
  const report = await t.spool.recover();
  assert.deepEqual(report.metas.map((m) => m.id), [good.id]);
  assert.equal(report.quarantined.length, cases.length);
  for (const q of report.quarantined) {
    assert.match(q.reason, new RegExp(`"${q.id}"`));
    assert.match(q.reason, reasons.get(q.id)!);
  }
});

Deno.test("spool reads a new message's metadata from its envelope, and the older two-file layout as before", async () => {
  await using t = await temp();
  const fresh = await t.spool.create([new TextEncoder().encode("Subject: new\r\n\r\nhi\r\n")], msg);
  // The older layout: message bytes only in msg/, the metadata in meta/.
  const old = { ...fresh, id: "237W2FMGYK2V39KX", subject: "old" };
  const oldBody = new TextEncoder().encode("Subject: old\r\n\r\nhi\r\n");
  await Deno.writeFile(`${t.dir}/msg/${old.id}.eml`, oldBody, { mode: 0o600 });
  await Deno.writeTextFile(`${t.dir}/meta/${old.id}.json`, JSON.stringify(old), { mode: 0o600 });
  // A damaged envelope: quarantined at start-up, never delivered as garbage.
  const damaged = await t.spool.create([new Uint8Array([0x41])], msg);
  const bytes = await Deno.readFile(`${t.dir}/msg/${damaged.id}.eml`);
  await Deno.writeFile(`${t.dir}/msg/${damaged.id}.eml`, bytes.subarray(0, 30));
  await assert.rejects(() => t.spool.get(damaged.id), /envelope is cut short|Unterminated|JSON/);

  assert.deepEqual((await t.spool.get(fresh.id)).recipients, fresh.recipients);
  assert.equal(await t.spool.readHeaders(fresh.id), "Subject: new");
  assert.equal(await t.spool.readHeaders(old.id), "Subject: old");
  assert.deepEqual(await t.spool.readBody(old.id), oldBody);
  const loaded = await t.spool.load(fresh.id);
  assert.equal(new TextDecoder().decode(loaded.body), "Subject: new\r\n\r\nhi\r\n");
  assert.deepEqual(loaded.meta, await t.spool.get(fresh.id));
  assert.equal((await t.spool.load(old.id)).meta.subject, "old");
  assert.deepEqual((await t.spool.load(old.id)).body, oldBody);
  await assert.rejects(() => t.spool.load(damaged.id), /cut short/);
  const report = await t.spool.recover();
  assert.deepEqual(report.metas.map((m) => m.id), [old.id, fresh.id]);
  assert.deepEqual(report.quarantined.map((q) => q.id), [damaged.id]);
  assert.match(report.quarantined[0].reason, /cut short/);
  assert.deepEqual(await t.spool.ids(), [old.id, fresh.id]);
  const listed = await t.spool.list();
  assert.deepEqual(listed.map((m) => m.subject), ["old", undefined]);
});

/** A queue index as Spool.saveSnapshot takes it: these ids, one line each. */
function indexOf(ids: string[]) {
  return {
    has: (id: string) => ids.includes(id),
    size: ids.length,
    snapshot: () => ids.map((id) => `["${id}"]\n`),
  };
}

// Folder change times can be as coarse as a kernel tick (a few ms): a change
// made at once after a snapshot would carry the same time.
const tick = () => new Promise((r) => setTimeout(r, 30));

Deno.test("spool snapshot: taken once, and only while no message file changed since it was left", async () => {
  await using t = await temp();
  const a = await t.spool.create([new Uint8Array([1])], msg);
  const b = await t.spool.create([new Uint8Array([2])], msg);
  await t.spool.writeMeta({ ...b, state: "deferred" });
  assert.equal(await t.spool.takeSnapshot(), null, "none left yet");
  assert.equal(await t.spool.saveSnapshot(indexOf([a.id, b.id])), true);
  assert.equal((await Deno.stat(`${t.dir}/index-snapshot.json`)).mode! & 0o777, 0o600);
  const taken = await t.spool.takeSnapshot();
  assert.ok(taken && "lines" in taken);
  const decoder = new TextDecoder();
  assert.deepEqual(Array.from(taken.lines, (l) => decoder.decode(l)), [
    `["${a.id}"]`,
    `["${b.id}"]`,
  ]);
  assert.equal(await t.spool.takeSnapshot(), null, "used once");

  // Each change below, made after the snapshot was left, makes it stale.
  const changes: [string, () => Promise<unknown>][] = [
    [
      "a metadata write (queue hold while stopped)",
      () => t.spool.writeMeta({ ...a, state: "held" }),
    ],
    ["a new message (sendmail while stopped)", () => t.spool.create([new Uint8Array([3])], msg)],
    ["a removal (queue delete while stopped)", () => t.spool.remove(a.id)],
  ];
  for (const [what, change] of changes) {
    const ids = await t.spool.ids();
    assert.equal(await t.spool.saveSnapshot(indexOf(ids)), true, what);
    await tick();
    await change();
    const stale = await t.spool.takeSnapshot();
    assert.ok(stale && "stale" in stale, what);
    assert.match(stale.stale, /index-snapshot\.json: the spool changed after it was written/);
  }
});

Deno.test("spool snapshot: not left when the files are not exactly the index's messages", async () => {
  await using t = await temp();
  const a = await t.spool.create([new Uint8Array([1])], msg);
  const b = await t.spool.create([new Uint8Array([2])], msg);
  // b is on disk but not in the index (say, a notice from an intake worker was lost).
  assert.equal(await t.spool.saveSnapshot(indexOf([a.id])), false);
  // The index names a message that is not on disk.
  assert.equal(await t.spool.saveSnapshot(indexOf([a.id, b.id, "0000000000000000"])), false);
  assert.equal(await t.spool.takeSnapshot(), null);
  // A start after a snapshot that is broken inside says why, naming the file.
  assert.equal(await t.spool.saveSnapshot(indexOf([a.id, b.id])), true);
  await Deno.writeTextFile(`${t.dir}/index-snapshot.json`, "garbage");
  const broken = await t.spool.takeSnapshot();
  assert.ok(broken && "stale" in broken);
  assert.match(broken.stale, /index-snapshot\.json: the first line is not JSON/);
});

Deno.test("spool recover takes the expected messages without reading them, unless a write was cut short", async () => {
  await using t = await temp();
  const a = await t.spool.create([new Uint8Array([1])], msg);
  // Corrupt, yet not read: the snapshot vouches for the queue as it was left.
  const expected = { has: (id: string) => id === a.id, size: 1 };
  const report = await t.spool.recover({ expected, onMessage: () => assert.fail("read") });
  assert.deepEqual([report.matched, report.messages], [true, 1]);
  // A temporary file left by an interrupted write: every file is read and checked.
  await Deno.writeTextFile(`${t.dir}/tmp/x.json`, "{");
  const read: string[] = [];
  const full = await t.spool.recover({ expected, onMessage: (m) => read.push(m.id) });
  assert.deepEqual([full.matched, full.messages, read], [false, 1, [a.id]]);
});

Deno.test("the lock holder reads a new message from its envelope, then from its metadata once written, and removes both files", async () => {
  await using t = await temp();
  assert.equal(await t.spool.lock(), true);
  try {
    const body = new Uint8Array([0x48, 0x69, 0x0d, 0x0a]);
    const fresh = await t.spool.create([body], msg);
    const first = await t.spool.load(fresh.id);
    assert.equal(first.meta.state, "queued");
    assert.deepEqual(first.body, body);
    assert.equal((await t.spool.get(fresh.id)).state, "queued");
    await t.spool.writeMeta({ ...fresh, state: "held" });
    assert.equal((await t.spool.load(fresh.id)).meta.state, "held", "load after writeMeta");
    assert.equal((await t.spool.get(fresh.id)).state, "held", "get after writeMeta");
    await t.spool.remove(fresh.id);
    assert.deepEqual([...Deno.readDirSync(`${t.dir}/meta`)], [], "its metadata file is removed");
    assert.deepEqual([...Deno.readDirSync(`${t.dir}/msg`)], []);
    // One that never got a metadata file is removed just as well.
    const never = await t.spool.create([body], msg);
    await t.spool.remove(never.id);
    assert.deepEqual([...Deno.readDirSync(`${t.dir}/msg`)], []);
    await assert.rejects(t.spool.load(never.id), MessageNotFoundError);
  } finally {
    t.spool.close();
  }
});
