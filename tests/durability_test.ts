/**
 * TESTPLAN §3: what got a 250 survives `kill -9`; a full disk gives 452 and
 * leaves nothing half-written; start-up repairs a damaged spool.
 */
import assert from "node:assert/strict";
import { newQueueId } from "../src/spool/mod.ts";
import { contractProblems, Mta, queuedId, requireTool, run, type SmtpDriver } from "./_harness.ts";

async function submit(smtp: SmtpDriver, subject: string, body = "hello\r\n"): Promise<string> {
  await smtp.cmd("MAIL FROM:<alice@ours.test>", 250);
  await smtp.cmd("RCPT TO:<keep@remote.test>", 250);
  await smtp.cmd("DATA", 354);
  await smtp.write(`From: alice@ours.test\r\nSubject: ${subject}\r\n\r\n${body}`);
  return queuedId((await smtp.cmd(".", 250)).raw);
}

Deno.test("D2: a message acknowledged with 250 survives kill -9 intact", async () => {
  await using mta = await Mta.start();
  const smtp = await mta.authed();
  const body = "line one\r\n.dot-stuffed line\r\nline three\r\n";
  const id = await submit(smtp, "survivor", body.replace(/^\./m, ".."));
  await mta.kill9();
  smtp.close();
  const before = await Deno.readFile(mta.emlPath(id));
  const message = await mta.readEml(id);
  const text = new TextDecoder().decode(message);
  assert.ok(text.endsWith(`\r\n\r\n${body}`), JSON.stringify(text));
  assert.deepEqual((await mta.readMeta(id)).recipients.map((r: { address: string }) => r.address), [
    "keep@remote.test",
  ]);

  await mta.launch();
  const list = await mta.queueList();
  assert.deepEqual(list.map((e) => e.id), [id]);
  assert.deepEqual(contractProblems(list[0]), []);
  assert.equal(list[0].size, message.length);
  assert.deepEqual(await Deno.readFile(mta.emlPath(id)), before);
  assert.deepEqual(await mta.spoolFiles("tmp"), []);
  assert.deepEqual(await mta.spoolFiles("corrupt"), []);
  assert.equal(await mta.stop(), 0);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function tmpfs(size: string): Promise<AsyncDisposable & { dir: string }> {
  const dir = await Deno.makeTempDir({ prefix: "minimta-tmpfs-" });
  const r = await run("mount", ["-t", "tmpfs", "-o", `size=${size},mode=0700`, "tmpfs", dir]);
  if (r.code !== 0) {
    await Deno.remove(dir);
    throw new Error(`mount tmpfs failed: ${r.stderr}`);
  }
  return {
    dir,
    async [Symbol.asyncDispose]() {
      await run("umount", [dir]);
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function available(dir: string): Promise<number> {
  const r = await run("df", ["-B1", "--output=avail", dir]);
  return Number(r.stdout.trim().split("\n").pop());
}

Deno.test({
  name:
    "D6: a spool disk that fills during a transaction gives 452, keeps earlier mail, leaves no partial files",
  ignore: requireTool("root:"),
  async fn() {
    await using fs = await tmpfs("2m");
    await using mta = await Mta.start({
      spoolDir: `${fs.dir}/spool`,
      config: { server: { max_message_size: 1024 * 1024 } },
    });
    using smtp = await mta.authed();
    const first = await submit(smtp, "before the disk filled");
    const firstBytes = await Deno.readFile(mta.emlPath(first));

    await smtp.cmd("MAIL FROM:<alice@ours.test>", 250);
    await smtp.cmd("RCPT TO:<keep@remote.test>", 250);
    await smtp.cmd("DATA", 354);
    // Something else fills the disk while the body is on its way.
    const filler = `${fs.dir}/filler`;
    await Deno.writeFile(
      filler,
      new Uint8Array(Math.max(0, (await available(fs.dir)) - 16 * 1024)),
    );
    await smtp.write("From: alice@ours.test\r\nSubject: too big for the disk\r\n\r\n");
    await smtp.write(("y".repeat(998) + "\r\n").repeat(200));
    const full = await smtp.cmd(".");
    assert.equal(full.code, 452, full.raw);
    assert.match(full.raw, /4\.3\.1/);

    assert.deepEqual(await mta.spoolFiles("tmp"), []);
    assert.deepEqual(await mta.spoolFiles("msg"), [`${first}.eml`]);
    assert.deepEqual(await mta.spoolFiles("msg"), [`${first}.eml`]);
    assert.deepEqual(await Deno.readFile(mta.emlPath(first)), firstBytes);

    // While the disk stays full, a new transaction is refused at MAIL, before any body
    // (free space is re-read at most once a second).
    await sleep(1100);
    const early = await smtp.cmd("MAIL FROM:<alice@ours.test>");
    assert.equal(early.code, 452, early.raw);
    assert.match(early.raw, /4\.3\.1 Insufficient system storage/);

    // Still up, and taking mail again once there is room.
    await Deno.remove(filler);
    await sleep(1100);
    const again = await submit(smtp, "after space was freed");
    assert.deepEqual((await mta.queueList()).map((e) => e.id).sort(), [first, again].sort());
    await smtp.cmd("QUIT", 221);
    assert.equal(await mta.stop(), 0);
  },
});

Deno.test({
  name:
    "D6b: a nearly full spool disk refuses MAIL with 452 4.3.1 (and a SIZE= that would not fit), as Postfix's 1.5 × size limit rule",
  ignore: requireTool("root:"),
  async fn() {
    await using fs = await tmpfs("8m");
    await using mta = await Mta.start({
      spoolDir: `${fs.dir}/spool`,
      config: { server: { max_message_size: 2 * 1024 * 1024 } },
    });
    using smtp = await mta.authed();
    // 8 MB free: room for 1.5 × 2 MiB and the declared size.
    await smtp.cmd("MAIL FROM:<alice@ours.test> SIZE=1000", 250);
    await smtp.cmd("RSET", 250);
    // Leave 4.5 MiB: the 3 MiB margin + 1 MB declared fits, + 2 MB does not.
    const filler = `${fs.dir}/filler`;
    await Deno.writeFile(
      filler,
      new Uint8Array(Math.max(0, (await available(fs.dir)) - 4.5 * 1024 * 1024)),
    );
    await sleep(1100);
    await smtp.cmd("MAIL FROM:<alice@ours.test> SIZE=1000000", 250);
    await smtp.cmd("RSET", 250);
    const tooBig = await smtp.cmd("MAIL FROM:<alice@ours.test> SIZE=2000000");
    assert.equal(tooBig.code, 452, tooBig.raw);
    assert.match(tooBig.raw, /4\.3\.1/);
    // Leave 2 MB: less than the 3 MB margin, so every MAIL waits for room.
    await Deno.writeFile(
      `${fs.dir}/filler2`,
      new Uint8Array(Math.max(0, (await available(fs.dir)) - 2 * 1024 * 1024)),
    );
    await sleep(1100);
    const full = await smtp.cmd("MAIL FROM:<alice@ours.test>");
    assert.equal(full.code, 452, full.raw);
    assert.ok(
      mta.logs().some((e) => e.event === "rejected" && /4\.3\.1/.test(JSON.stringify(e))),
      "the refusal is in the mail log",
    );
    assert.deepEqual(await mta.spoolFiles("msg"), [], "nothing stored");
    await smtp.cmd("QUIT", 221);
  },
});

Deno.test("D11: start-up repairs the spool; files are 0600 and folders 0700", async () => {
  await using mta = await Mta.start();
  let good: string;
  {
    using smtp = await mta.authed();
    good = await submit(smtp, "the good one");
    await smtp.cmd("QUIT", 221);
  }
  assert.equal(await mta.stop(), 0);

  const s = mta.spoolDir;
  // Fixtures in the older two-file layout (message bytes in msg/, metadata in meta/), which
  // the daemon still reads; "good" itself is in the current one (envelope in its message file).
  const goodMeta = JSON.stringify(await mta.readMeta(good));
  const goodEml = await mta.readEml(good);
  const goodFile = await Deno.readFile(mta.emlPath(good));
  const truncated = newQueueId();
  const invalid = newQueueId();
  const noBody = newQueueId();
  const noMeta = newQueueId();
  await Deno.writeTextFile(`${s}/tmp/${newQueueId()}.eml`, "half a mess");
  await Deno.writeTextFile(`${s}/tmp/${newQueueId()}.json`, '{"version":');
  await Deno.writeTextFile(
    `${s}/meta/${truncated}.json`,
    goodMeta.replaceAll(good, truncated).slice(0, 40),
  );
  await Deno.writeFile(`${s}/msg/${truncated}.eml`, goodEml);
  await Deno.writeTextFile(`${s}/meta/${invalid}.json`, "\xff\xfe not json at all");
  await Deno.writeFile(`${s}/msg/${invalid}.eml`, goodEml);
  await Deno.writeTextFile(`${s}/meta/${noBody}.json`, goodMeta.replaceAll(good, noBody));
  await Deno.writeFile(`${s}/msg/${noMeta}.eml`, goodEml);

  await mta.launch();
  assert.deepEqual((await mta.queueList()).map((e) => e.id), [good]);
  assert.deepEqual(await mta.spoolFiles("tmp"), []);
  // good's metadata file exists once its first attempt (deferred: no DNS) is recorded.
  const metas = await mta.spoolFiles("meta");
  assert.ok(metas.every((name) => name === `${good}.json`), metas.join(" "));
  assert.deepEqual(await mta.spoolFiles("msg"), [`${good}.eml`]);
  const corrupt = (await mta.spoolFiles("corrupt")).join("\n");
  for (const id of [truncated, invalid, noBody]) {
    assert.match(corrupt, new RegExp(`^${id}\\.json`, "m"), `${id} not quarantined: ${corrupt}`);
  }
  assert.match(corrupt, new RegExp(`^${truncated}\\.eml`, "m"));
  assert.deepEqual(await Deno.readFile(mta.emlPath(good)), goodFile);
  for (const id of [truncated, invalid, noBody]) {
    assert.ok(mta.stdout.includes(id), `quarantine of ${id} not logged`);
  }

  for (const sub of ["", "/tmp", "/msg", "/meta", "/corrupt"]) {
    const mode = (await Deno.stat(`${s}${sub}`)).mode! & 0o777;
    assert.equal(mode.toString(8), "700", `${s}${sub}`);
  }
  for (const file of [mta.emlPath(good)]) {
    assert.equal(((await Deno.stat(file)).mode! & 0o777).toString(8), "600", file);
  }
  assert.equal(await mta.stop(), 0);
});

Deno.test({
  name:
    "D8: a spool file system out of inodes gives 452 4.3.1, leaves no partial files, and takes mail again once inodes are freed",
  ignore: requireTool("root:"),
  async fn() {
    await using fs = await tmpfs("64m,nr_inodes=64");
    await using mta = await Mta.start({ spoolDir: `${fs.dir}/spool` });
    using smtp = await mta.authed();
    const first = await submit(smtp, "before the inodes ran out");
    // Something else takes every inode left (bytes stay plentiful).
    await Deno.mkdir(`${fs.dir}/filler`);
    let fillers = 0;
    try {
      for (;; fillers++) await Deno.writeFile(`${fs.dir}/filler/${fillers}`, new Uint8Array(0));
    } catch (error) {
      assert.match(String(error), /No space left/, "inodes exhausted");
    }
    assert.ok(fillers > 0);

    await smtp.cmd("MAIL FROM:<alice@ours.test>", 250);
    await smtp.cmd("RCPT TO:<keep@remote.test>", 250);
    await smtp.cmd("DATA", 354);
    await smtp.write("From: alice@ours.test\r\nSubject: no inode for me\r\n\r\nhello\r\n");
    const full = await smtp.cmd(".");
    assert.equal(full.code, 452, full.raw);
    assert.match(full.raw, /4\.3\.1/);
    assert.deepEqual(await mta.spoolFiles("tmp"), []);
    assert.deepEqual(await mta.spoolFiles("msg"), [`${first}.eml`]);
    assert.deepEqual(await mta.spoolFiles("msg"), [`${first}.eml`]);

    // Still up; inodes back, mail is taken again.
    await Deno.remove(`${fs.dir}/filler`, { recursive: true });
    const again = await submit(smtp, "after inodes were freed");
    assert.deepEqual((await mta.queueList()).map((e) => e.id).sort(), [first, again].sort());
    await smtp.cmd("QUIT", 221);
    assert.equal(await mta.stop(), 0);
  },
});

/** Makes `dir` read-only by mounting it read-only over itself (root); undone on dispose. */
async function readOnly(dir: string): Promise<AsyncDisposable> {
  for (const args of [["--bind", dir, dir], ["-o", "remount,bind,ro", dir]]) {
    const r = await run("mount", args);
    if (r.code !== 0) throw new Error(`mount ${args.join(" ")}: ${r.stderr}`);
  }
  let mounted = true;
  return {
    async [Symbol.asyncDispose]() {
      if (mounted) await run("umount", [dir]);
      mounted = false;
    },
  };
}

Deno.test({
  name:
    "D10: a read-only spool: start-up fails loudly; at runtime 451 4.3.0 and never a 250; mail is taken again once writable",
  ignore: requireTool("root:"),
  async fn(t) {
    await using mta = await Mta.start();
    let kept: string;
    {
      using smtp = await mta.authed();
      kept = await submit(smtp, "stored before");
      await smtp.cmd("QUIT", 221);
    }

    await t.step("at runtime", async () => {
      using smtp = await mta.authed();
      {
        // A read-only view of the spool is mounted under the running daemon.
        await using _ro = await readOnly(mta.spoolDir);
        await smtp.cmd("MAIL FROM:<alice@ours.test>", 250);
        await smtp.cmd("RCPT TO:<keep@remote.test>", 250);
        await smtp.cmd("DATA", 354);
        await smtp.write("From: alice@ours.test\r\nSubject: nowhere to go\r\n\r\nhello\r\n");
        const refused = await smtp.cmd(".");
        assert.equal(refused.code, 451, refused.raw);
        assert.match(refused.raw, /4\.3\.0/);
      }
      const again = await submit(smtp, "writable again");
      assert.deepEqual((await mta.queueList()).map((e) => e.id).sort(), [kept, again].sort());
      await smtp.cmd("QUIT", 221);
    });

    await t.step("at start-up", async () => {
      assert.equal(await mta.stop(), 0);
      {
        await using _ro = await readOnly(mta.spoolDir);
        const failed = await mta.launch().then(() => null, (error: Error) => error);
        assert.ok(failed, "the daemon must not start on a read-only spool");
        assert.doesNotMatch(failed.message, /exited with 0 /);
        assert.match(mta.stderr, new RegExp(mta.spoolDir.replaceAll("/", "\\/")));
        assert.match(mta.stderr, /Read-only file system/i);
        assert.match(mta.stderr, /Cannot use the spool folder .*\(queue\.dir\)/, "names the key");
        assert.doesNotMatch(mta.stderr, /^\s+at /m, "no stack trace");
      }
      await mta.launch();
      assert.equal((await mta.queueList()).length, 2);
      assert.equal(await mta.stop(), 0);
    });
  },
});
