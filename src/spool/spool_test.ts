import assert from "node:assert/strict";
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
  for (const path of [`${t.dir}/msg/${meta.id}.eml`, `${t.dir}/meta/${meta.id}.json`]) {
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
  }
  for (const sub of ["", "/msg", "/meta", "/tmp"]) {
    assert.equal((await Deno.stat(`${t.dir}${sub}`)).mode! & 0o777, 0o700);
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
