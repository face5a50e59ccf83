/**
 * `log.file`: the same JSON lines go to a file rotated by size (`log.max_size`,
 * `log.max_files`), every line whole; SIGUSR1 after an outside `mv` starts a
 * new file at the configured path; and a log that cannot be written (cannot
 * be created, or a full disk) never stops mail: the lines go to stderr after
 * one warning there.
 */
import assert from "node:assert/strict";
import { freePorts, Mta, requireTool, waitFor } from "./_harness.ts";
import { deliveryConfig, isGone, submit } from "./_delivery.ts";
import { FakeDns, mxZone } from "./_dns.ts";
import { FakeMx, loopbackNet } from "./_mx.ts";

/** The files in `dir` whose names start with `base`, sorted. */
async function logFiles(dir: string, base: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.name.startsWith(base)) names.push(e.name);
  return names.sort();
}

/** Every line of a log file parsed as JSON; throws naming the file and the line that is not. */
async function jsonLines(path: string): Promise<Record<string, unknown>[]> {
  const text = await Deno.readTextFile(path);
  assert.ok(text === "" || text.endsWith("\n"), `${path} ends in the middle of a line`);
  return text.split("\n").filter((l) => l !== "").map((line, i) => {
    try {
      return JSON.parse(line);
    } catch {
      throw new Error(`${path} line ${i + 1} is not a whole JSON line: ${line}`);
    }
  });
}

Deno.test("log.file rotates at log.max_size, keeps log.max_files, and every line is whole JSON", async () => {
  await using mta = await Mta.start({ noStart: true });
  const path = `${mta.dir}/logs/minimta.log`;
  await Deno.mkdir(`${mta.dir}/logs`);
  await mta.patchConfig({ log: { file: path, max_size: "10KB", max_files: 3 } });
  await mta.launch();
  const ids: string[] = [];
  for (let i = 0; i < 80; i++) ids.push(await submit(mta, { to: [`bob${i}@dest.test`] }));
  await waitFor("the last message's queued event in the log", async () => {
    const text = await Deno.readTextFile(path);
    return text.includes(ids.at(-1)!);
  });

  const names = await logFiles(`${mta.dir}/logs`, "minimta.log");
  assert.deepEqual(names, ["minimta.log", "minimta.log.1", "minimta.log.2", "minimta.log.3"]);
  const all: Record<string, unknown>[] = [];
  for (const name of names) {
    const file = `${mta.dir}/logs/${name}`;
    assert.ok((await Deno.stat(file)).size <= 10 * 1024, `${name} is larger than 10KB`);
    all.push(...await jsonLines(file));
  }
  const queued = all.filter((e) => e.event === "queued").map((e) => e.queue_id);
  assert.ok(queued.includes(ids.at(-1)), "the newest mail-log events are kept");
  assert.ok(!queued.includes(ids[0]), "the oldest were rotated away: only 3 old files are kept");
  assert.equal(mta.logs().length, 0, "nothing went to stdout");
  assert.equal(mta.stderr, "");
  assert.equal(await mta.stop(), 0);
});

Deno.test("SIGUSR1 after an outside mv writes new lines to a new file at log.file", async () => {
  await using mta = await Mta.start({ noStart: true });
  const path = `${mta.dir}/minimta.log`;
  await mta.patchConfig({ log: { file: path } });
  await mta.launch();
  const before = await submit(mta, { to: ["bob@dest.test"] });
  await waitFor("the first message in the log", async () => {
    return (await Deno.readTextFile(path)).includes(before);
  });
  await Deno.rename(path, `${path}.old`);
  Deno.kill(mta.pid, "SIGUSR1");
  await waitFor("a new log file", async () => {
    return await Deno.readTextFile(path).then(
      (t) => t.includes("Reopened the log file"),
      () => false,
    );
  });
  const after = await submit(mta, { to: ["bob@dest.test"] });
  await waitFor("the second message in the new file", async () => {
    return (await Deno.readTextFile(path)).includes(after);
  });
  const old = await jsonLines(`${path}.old`);
  assert.ok(old.some((e) => e.queue_id === before));
  assert.ok(!old.some((e) => e.queue_id === after), "the moved file gets no new lines");
  assert.ok((await jsonLines(path)).every((e) => e.queue_id !== before));
  assert.equal(await mta.stop(), 0);
});

for (
  const [what, file] of [
    ["a log file that cannot be created", "/proc/minimta-no-such-dir/minimta.log"],
    ["a full disk (/dev/full)", "/dev/full"],
  ]
) {
  Deno.test({
    name: `${what}: mail is still accepted and delivered; stderr has one warning and the lines`,
    ignore: requireTool("python3:dns"),
    async fn() {
      const net = loopbackNet();
      const [port] = freePorts(1);
      await using dns = await FakeDns.start(mxZone("dest.test", "mx1.dest.test", net(2)));
      await using mx = await FakeMx.start(net(2), port, { name: "mx1.dest.test" });
      await using mta = await Mta.start({
        config: { delivery: deliveryConfig({ dns, port }), log: { file } },
      });
      const ids = [
        await submit(mta, { to: ["bob@dest.test"] }),
        await submit(mta, { to: ["carl@dest.test"] }),
      ];
      await waitFor("both messages at the MX", () => mx.accepted().then((t) => t.length === 2));
      for (const id of ids) await waitFor(`${id} to leave the queue`, () => isGone(mta, id));
      // The message leaves the spool as its delivery line is written: the line
      // may reach this end of the pipe a moment later. (Other lines name the id
      // too, the "queued" one first: waiting for the id alone did not wait for it.)
      const delivered = () =>
        mta.stderr.split("\n").filter((l) => l.startsWith("{") && l.endsWith("}"))
          .map((l) => JSON.parse(l))
          .some((e) => e.event === "delivery" && e.queue_id === ids[1]);
      await waitFor("the delivery in the log on stderr", delivered);
      const warnings = mta.stderr.split("\n").filter((l) => l.startsWith("minimta: "));
      assert.equal(warnings.length, 1, mta.stderr);
      assert.match(warnings[0], /cannot write the log file ".*" \(log\.file\)/);
      assert.equal(await mta.stop(), 0);
    },
  });
}
