/**
 * A metadata file that is valid JSON but wrong inside (`"recipients":
 * [null]`, a missing field, a wrong type, an unknown state) must not stop
 * the daemon from starting (a crash loop under systemd, naming no file):
 * it is moved to corrupt/ with a warning naming its id, like a truncated
 * file, and the good mail beside it is delivered (issue 8 item 7b).
 */
import assert from "node:assert/strict";
import { newQueueId } from "../src/spool/mod.ts";
import { freePorts, Mta, requireTool, spoolFixture, waitFor } from "./_harness.ts";
import { deliveryConfig, isGone, submit } from "./_delivery.ts";
import { FakeDns, mxZone } from "./_dns.ts";
import { loopbackNet, SmtpSink } from "./_mx.ts";

type Meta = Record<string, unknown> & { recipients: Record<string, unknown>[] };

/** How each bad file differs from a good one: what it holds instead. */
const BREAKAGES: Record<string, (m: Meta) => unknown> = {
  "recipients [null]": (m) => ({ ...m, recipients: [null] }),
  "recipients []": (m) => ({ ...m, recipients: [] }),
  "recipients a string": (m) => ({ ...m, recipients: "x@dest.test" }),
  "no state": ({ state: _, ...m }) => m,
  "unknown state": (m) => ({ ...m, state: "frozen" }),
  "size a string": (m) => ({ ...m, size: "12" }),
  "from a number": (m) => ({ ...m, from: 42 }),
  "no created_at": ({ created_at: _, ...m }) => m,
  "next_attempt_at not a date": (m) => ({ ...m, next_attempt_at: "soon" }),
  "is_bounce a string": (m) => ({ ...m, is_bounce: "no" }),
  "recipient without address": (m) => rcpt(m, ({ address: _, ...r }) => r),
  "recipient with unknown status": (m) => rcpt(m, (r) => ({ ...r, status: "lost" })),
  "recipient attempts null": (m) => rcpt(m, (r) => ({ ...r, attempts: null })),
  "history [null]": (m) => rcpt(m, (r) => ({ ...r, history: [null] })),
  "a list, not an object": (m) => [m],
};

function rcpt(m: Meta, change: (r: Record<string, unknown>) => unknown): unknown {
  return { ...m, recipients: [change(m.recipients[0])] };
}

Deno.test({
  name:
    "malformed-but-JSON metadata files are quarantined with a warning naming each id; the daemon starts, serves, and delivers the good mail beside them",
  ignore: requireTool("smtp-sink", "python3:dns"),
  async fn() {
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start(mxZone("dest.test", "mx1.dest.test", net(2)));
    await using sink = await SmtpSink.start(net(2), port);
    await using mta = await Mta.start({
      noStart: true,
      config: { delivery: deliveryConfig({ dns, port }) },
    });
    const body = (subject: string) =>
      new TextEncoder().encode(`From: alice@ours.test\r\nSubject: ${subject}\r\n\r\nhello\r\n`);
    const envelope = { from: "alice@ours.test", recipients: ["rcpt@dest.test"] };
    const good = [
      await spoolFixture(mta.spoolDir, body("good one"), envelope),
      await spoolFixture(mta.spoolDir, body("good two"), envelope),
    ];
    const template: Meta = await mta.readMeta(good[0]);
    const bad = new Map<string, string>();
    for (const [what, breakIt] of Object.entries(BREAKAGES)) {
      const id = newQueueId();
      await Deno.writeTextFile(mta.metaPath(id), JSON.stringify(breakIt({ ...template, id })));
      await Deno.writeFile(mta.emlPath(id), body(`bad: ${what}`));
      bad.set(id, what);
    }

    await mta.launch();
    const fresh = await submit(mta, { to: ["fresh@dest.test"] });
    const ids = [...good, fresh];
    await waitFor("the good messages delivered", async () => {
      for (const id of ids) if (!(await isGone(mta, id))) return false;
      return true;
    });
    const arrived = (await sink.messages()).join("\n");
    for (const subject of ["good one", "good two"]) {
      assert.match(arrived, new RegExp(`Subject: ${subject}`));
    }
    assert.doesNotMatch(arrived, /Subject: bad:/, "nothing of a bad file is sent");

    const warnings = mta.logs().filter((e) => e.level === "WARN").map((e) => JSON.stringify(e));
    const corrupt = (await mta.spoolFiles("corrupt")).join("\n");
    for (const [id, what] of bad) {
      assert.ok(warnings.some((w) => w.includes(id)), `no warning names ${id} (${what})`);
      assert.match(corrupt, new RegExp(`^${id}\\.json\\.`, "m"), `${what} not quarantined`);
      assert.match(corrupt, new RegExp(`^${id}\\.eml\\.`, "m"), `${what}: body not quarantined`);
    }
    assert.deepEqual(await mta.spoolFiles("meta"), [], "only the bad ones left meta/, to corrupt/");
    assert.equal(await mta.stop(), 0);
  },
});
