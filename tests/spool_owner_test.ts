/**
 * The spool belongs to the daemon's user (`minimta` under the unit), while
 * the operator runs the CLI as root. With the daemon stopped, root's
 * `sendmail` and `queue hold/release/retry` write into the spool directly:
 * what they write must be the spool owner's, or the daemon cannot read it
 * and the mail answered "queued as …" is never delivered (issue 8). And a
 * file the daemon cannot read is an error to fix, never "corrupt".
 *
 * The daemon runs as `nobody` (setpriv), the CLI as root. Needs root,
 * setpriv, Postfix's smtp-sink and the fake DNS (dnspython).
 */
import assert from "node:assert/strict";
import { cliOk, lfMessage, sendmail } from "./_cli.ts";
import { freePorts, Mta, requireTool, run, waitFor } from "./_harness.ts";
import { deliveryConfig, isGone } from "./_delivery.ts";
import { FakeDns, mxZone } from "./_dns.ts";
import { loopbackNet, SmtpSink } from "./_mx.ts";

const ignore = requireTool("root:", "setpriv", "smtp-sink", "python3:dns");

async function nobody(): Promise<{ uid: number; gid: number }> {
  const uid = Number((await run("id", ["-u", "nobody"])).stdout.trim());
  const gid = Number((await run("id", ["-g", "nobody"])).stdout.trim());
  assert.ok(uid > 0 && gid > 0, "user nobody exists");
  return { uid, gid };
}

/** Every path under `dir` (itself included) whose owner is not `uid`. */
async function notOwnedBy(dir: string, uid: number): Promise<string[]> {
  const out: string[] = [];
  const walk = async (path: string) => {
    const info = await Deno.lstat(path);
    if (info.uid !== uid) out.push(`${path} (uid ${info.uid})`);
    if (info.isDirectory) {
      for await (const e of Deno.readDir(path)) await walk(`${path}/${e.name}`);
    }
  };
  await walk(dir);
  return out;
}

/** A daemon that runs as nobody, delivering dest.test to a real smtp-sink; stopped. */
async function world() {
  const net = loopbackNet();
  const [port] = freePorts(1);
  const dns = await FakeDns.start(mxZone("dest.test", "mx1.dest.test", net(2)));
  const sink = await SmtpSink.start(net(2), port);
  const user = await nobody();
  const mta = await Mta.start({
    noStart: true,
    runAs: user,
    config: { delivery: deliveryConfig({ dns, port }) },
  });
  return {
    dns,
    sink,
    mta,
    user,
    async [Symbol.asyncDispose]() {
      await mta[Symbol.asyncDispose]();
      await sink[Symbol.asyncDispose]();
      await dns[Symbol.asyncDispose]();
    },
  };
}

/** Waits until the sink holds a message with each subject. */
async function arrived(sink: SmtpSink, subjects: string[]): Promise<void> {
  await waitFor(
    `messages ${subjects.join(", ")} at the sink`,
    async () => {
      const all = (await sink.messages()).join("\n");
      return subjects.every((s) => all.includes(`Subject: ${s}`));
    },
    30_000,
  );
}

Deno.test({
  name:
    "root's sendmail and queue hold/release/retry with the daemon stopped write files the daemon's user owns: the mail is delivered, nothing goes to corrupt/",
  ignore,
  async fn() {
    await using w = await world();
    const { mta, sink, user } = w;
    // The spool folder is the user's, as install.sh makes it; the daemon is
    // stopped (here: never started), so root's CLI writes the files itself.
    const mail = (subject: string) =>
      lfMessage(["From: alice@ours.test", "To: rcpt@dest.test", `Subject: ${subject}`]);
    const first = await sendmail(mta, ["-f", "alice@ours.test", "rcpt@dest.test"], mail("one"));
    const second = await sendmail(mta, ["-f", "alice@ours.test", "rcpt@dest.test"], mail("two"));
    assert.match(await cliOk(mta, ["queue", "hold", second]), /held/);
    assert.match(await cliOk(mta, ["queue", "release", second]), /released/);
    await cliOk(mta, ["queue", "retry", "--all"]);
    assert.deepEqual(await notOwnedBy(mta.spoolDir, user.uid), [], "everything is nobody's");

    await mta.launch();
    await arrived(sink, ["one", "two"]);
    await waitFor(
      "both messages leave the spool",
      async () => (await isGone(mta, first)) && (await isGone(mta, second)),
    );
    assert.deepEqual(await mta.spoolFiles("corrupt"), []);
    const errors = mta.logs().filter((e) => e.level === "ERROR" || e.level === "WARN");
    assert.deepEqual(errors, [], "no warnings or errors");
    assert.equal(await mta.stop(), 0);
  },
});

Deno.test({
  name:
    "a spool file the daemon cannot read is logged as an error naming the file and the fix, stays in place (not corrupt/), and is delivered once its owner is fixed",
  ignore,
  async fn() {
    await using w = await world();
    const { mta, sink, user } = w;
    const mail = (subject: string) =>
      lfMessage(["From: alice@ours.test", "To: rcpt@dest.test", `Subject: ${subject}`]);
    const badMeta = await sendmail(mta, ["rcpt@dest.test"], mail("meta was root's"));
    const badBody = await sendmail(mta, ["rcpt@dest.test"], mail("body was root's"));
    // As root's files were before the fix (or after a careless copy): 0600, root's. A new
    // message's metadata is the envelope in its message file; the metadata file of a message
    // whose metadata changed is what is root's here.
    await Deno.writeTextFile(mta.metaPath(badMeta), JSON.stringify(await mta.readMeta(badMeta)), {
      mode: 0o600,
    });
    await Deno.chown(mta.metaPath(badMeta), 0, 0);
    await Deno.chown(mta.emlPath(badBody), 0, 0);

    await mta.launch();
    await waitFor("errors naming both files", () => {
      const lines = mta.logs().filter((e) => e.level === "ERROR").map((e) => e.message);
      return [mta.metaPath(badMeta), mta.emlPath(badBody)].every((path) =>
        lines.some((l) => String(l).includes(path) && /permission denied/i.test(String(l)))
      );
    });
    const meta = mta.logs().find((e) =>
      e.level === "ERROR" && String(e.message).includes(mta.metaPath(badMeta))
    );
    assert.match(String(meta?.message), new RegExp(`chown -R ${user.uid}:${user.gid} `));
    assert.match(String(meta?.message), /restart minimta/);
    assert.equal(await mta.stop(), 0);
    assert.deepEqual(await mta.spoolFiles("corrupt"), [], "nothing quarantined");
    assert.deepEqual(await mta.spoolFiles("meta"), [`${badMeta}.json`]);
    assert.deepEqual(await mta.spoolFiles("msg"), [`${badMeta}.eml`, `${badBody}.eml`].sort());
    assert.deepEqual(await sink.messages(), [], "nothing delivered yet");

    // The fix the error names, then a restart: both are delivered.
    const fix = await run("chown", ["-R", `${user.uid}:${user.gid}`, mta.spoolDir]);
    assert.equal(fix.code, 0, fix.stderr);
    await mta.launch();
    await arrived(sink, ["meta was root's", "body was root's"]);
    await waitFor(
      "both messages leave the spool",
      async () => (await isGone(mta, badMeta)) && (await isGone(mta, badBody)),
    );
    assert.deepEqual(await mta.spoolFiles("corrupt"), []);
    assert.equal(await mta.stop(), 0);
  },
});
