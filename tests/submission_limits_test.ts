/**
 * TESTPLAN §2 L5–L7 and R5: message size, recipient count and the session
 * deadline that a slow client cannot stretch.
 */
import assert from "node:assert/strict";
import { delay, Mta, queuedId } from "./_harness.ts";

const LIMIT = 64 * 1024;

Deno.test("limits: SIZE=, oversized bodies and too many recipients", async (t) => {
  await using mta = await Mta.start({
    config: { server: { max_message_size: LIMIT, max_recipients: 3 } },
  });

  await t.step("L6: MAIL with SIZE= over the limit gets 552", async () => {
    using smtp = await mta.authed();
    const ehlo = await smtp.cmd("EHLO t.test", 250);
    assert.ok(ehlo.lines.includes(`SIZE ${LIMIT}`), ehlo.raw);
    const reply = await smtp.cmd(`MAIL FROM:<alice@ours.test> SIZE=${LIMIT + 1}`);
    assert.equal(reply.code, 552, reply.raw);
    await smtp.cmd(`MAIL FROM:<alice@ours.test> SIZE=${LIMIT - 1}`, 250);
  });

  await t.step(
    "L7: a body over the limit without SIZE= gets 552 after the dot, nothing stored",
    async () => {
      using smtp = await mta.authed();
      await smtp.cmd("MAIL FROM:<alice@ours.test>", 250);
      await smtp.cmd("RCPT TO:<big@remote.test>", 250);
      await smtp.cmd("DATA", 354);
      const line = "x".repeat(76) + "\r\n";
      const body = "From: alice@ours.test\r\nSubject: big\r\n\r\n" +
        line.repeat(Math.ceil((LIMIT * 3) / line.length));
      await smtp.write(body);
      const reply = await smtp.cmd(".");
      assert.equal(reply.code, 552, reply.raw);
      assert.deepEqual(await mta.spoolMetas(), []);
      assert.deepEqual(await mta.spoolFiles("msg"), []);
      assert.deepEqual(await mta.spoolFiles("meta"), []);
      assert.deepEqual(await mta.spoolFiles("tmp"), []);
      // The session goes on: a message within the limit is accepted.
      await smtp.cmd("MAIL FROM:<alice@ours.test>", 250);
      await smtp.cmd("RCPT TO:<small@remote.test>", 250);
      await smtp.cmd("DATA", 354);
      const ok = await smtp.cmd("From: alice@ours.test\r\nSubject: small\r\n\r\nsmall\r\n.", 250);
      assert.equal((await mta.spoolMetas()).map((m) => m.id).join(), queuedId(ok.raw));
    },
  );

  await t.step(
    "L4 / SMUG-OUT-06: a 998-octet line is accepted, a longer one refused with 554",
    async () => {
      using smtp = await mta.authed();
      for (const [length, code] of [[998, 250], [5000, 554]]) {
        await smtp.cmd("MAIL FROM:<alice@ours.test>", 250);
        await smtp.cmd("RCPT TO:<lines@remote.test>", 250);
        await smtp.cmd("DATA", 354);
        const reply = await smtp.cmd(
          `From: alice@ours.test\r\nSubject: line ${length}\r\n\r\n${"y".repeat(length)}\r\n.`,
        );
        assert.equal(reply.code, code, reply.raw);
        if (code === 554) assert.match(reply.raw, /5\.6\.0 Line of 5000 octets/);
      }
      const subjects = await Promise.all(
        (await mta.spoolMetas()).map((m) => Deno.readTextFile(mta.emlPath(m.id as string))),
      );
      assert.equal(subjects.filter((t) => t.includes("Subject: line 998")).length, 1);
      assert.equal(subjects.filter((t) => t.includes("Subject: line 5000")).length, 0);
    },
  );

  await t.step("L5: the recipient over max_recipients gets 452, the others are kept", async () => {
    using smtp = await mta.authed();
    await smtp.cmd("MAIL FROM:<alice@ours.test>", 250);
    for (const n of [1, 2, 3]) await smtp.cmd(`RCPT TO:<r${n}@remote.test>`, 250);
    const extra = await smtp.cmd("RCPT TO:<r4@remote.test>");
    assert.equal(extra.code, 452, extra.raw);
    await smtp.cmd("DATA", 354);
    const ok = await smtp.cmd("From: alice@ours.test\r\nSubject: many\r\n\r\nhi\r\n.", 250);
    const entry = (await mta.queueList()).find((e) => e.id === queuedId(ok.raw));
    assert.ok(entry);
    assert.deepEqual(entry.recipients.map((r) => r.address), [
      "r1@remote.test",
      "r2@remote.test",
      "r3@remote.test",
    ]);
  });

  assert.equal(await mta.stop(), 0);
});

Deno.test("R5: a client trickling bytes is cut off with 421 at the transaction deadline", async () => {
  await using mta = await Mta.start({ config: { server: { transaction_timeout: "2s" } } });
  using smtp = await mta.authed();
  await smtp.cmd("MAIL FROM:<alice@ours.test>", 250);
  await smtp.cmd("RCPT TO:<slow@remote.test>", 250);
  await smtp.cmd("DATA", 354);
  const started = Date.now();
  const trickle = "From: alice@ours.test\r\nSubject: slow\r\n\r\n" +
    "slow body line\r\n".repeat(20);
  // One byte every 100 ms: the idle timer (60 s) never fires, but the whole
  // message would take over 3 s against a 2 s deadline.
  let written = 0;
  try {
    for (; written < trickle.length; written++) {
      await smtp.write(trickle[written]);
      await delay(100);
      if (Date.now() - started > 10_000) break;
    }
  } catch {
    // The server closed the connection under us: expected.
  }
  const rest = await smtp.readToEnd(10_000);
  assert.match(rest, /^421 /m, `no 421 before the close: ${JSON.stringify(rest)}`);
  assert.ok(written < trickle.length, "the whole message was trickled in without a cut");
  assert.ok(Date.now() - started < 8_000);
  assert.deepEqual(await mta.spoolMetas(), []);
  assert.equal(await mta.stop(), 0);
});

Deno.test("R7: one client address gets at most max_connections_per_ip connections", async () => {
  await using mta = await Mta.start({ config: { server: { max_connections_per_ip: 2 } } });
  // Two connections that both get their greeting: the harness's readiness
  // probe may hold a slot for a moment after it hangs up, so retry briefly.
  const pair = async () => {
    for (let i = 0; i < 50; i++) {
      const a = await mta.connect();
      const b = await mta.connect();
      if ((await a.reply()).code === 220 && (await b.reply()).code === 220) return [a, b];
      a.close();
      b.close();
      await delay(100);
    }
    throw new Error("never got two connections");
  };
  const [first, second] = await pair();
  const third = await mta.connect();
  try {
    const refused = await third.reply();
    assert.equal(refused.code, 421, refused.raw);
    assert.match(refused.raw, /Too many connections from your address/);
    first.close();
    // The slot is given back once the first connection is gone.
    let fourth = await mta.connect();
    for (let i = 0; i < 20 && (await fourth.reply()).code !== 220; i++) {
      fourth.close();
      await delay(100);
      fourth = await mta.connect();
    }
    await fourth.cmd("EHLO t.test", 250);
    fourth.close();
  } finally {
    for (const c of [first, second, third]) c.close();
  }
});
