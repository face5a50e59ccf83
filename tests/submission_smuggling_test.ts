/**
 * TESTPLAN §1.1: inbound SMTP smuggling. Every malformed end-of-data
 * sequence is sent in one write, one byte per write, and split in two at
 * every offset; none may end the message, so the smuggled second
 * transaction (from admin@ours.test) must never exist, and nothing stored
 * may hold a bare CR or LF. Also R12: BDAT, which is not offered, is not
 * another way to frame a message.
 */
import assert from "node:assert/strict";
import { bareLineEnds, delay, Mta, queuedId, type SmtpDriver } from "./_harness.ts";
import { parseReplies, type SmtpReply } from "./_smtp_driver.ts";

const SEQUENCES: [id: string, eod: string, nul: boolean][] = [
  ["SMUG-IN-01", "\n.\n", false],
  ["SMUG-IN-02", "\n.\r\n", false],
  ["SMUG-IN-03", "\r\n.\n", false],
  ["SMUG-IN-04", "\r.\r\n", false],
  ["SMUG-IN-05", "\r.\r", false],
  ["SMUG-IN-06", "\r.\n", false],
  ["SMUG-IN-07", "\n.\r", false],
  ["SMUG-IN-08", "\r\n.\r", false],
  ["SMUG-IN-09", "\r\r\n.\r\r\n", false],
  ["SMUG-IN-10", "\r\n.\r\r\n", false],
  ["SMUG-IN-11", "\r\n\0.\r\n", true],
  ["SMUG-IN-12", "\r\n.\0\r\n", true],
  ["SMUG-IN-13", "\n..\r\n", false],
];

const SMUGGLED = "MAIL FROM:<admin@ours.test>\r\nRCPT TO:<rcpt@capture.test>\r\nDATA\r\n" +
  "From: admin@ours.test\r\nSubject: SMUGGLED\r\n\r\nx\r\n.\r\nQUIT\r\n";

/** The message text before the end-of-data sequence under test. */
const HEAD = "From: alice@ours.test\r\nSubject: A\r\n\r\nbody";

function payload(eod: string): Uint8Array {
  const text = `${HEAD}${eod}${SMUGGLED}`;
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

async function openData(mta: Mta): Promise<SmtpDriver> {
  const smtp = await mta.authed();
  await smtp.cmd("MAIL FROM:<alice@ours.test>", 250);
  await smtp.cmd("RCPT TO:<rcpt@capture.test>", 250);
  await smtp.cmd("DATA", 354);
  return smtp;
}

/** Sends one smuggling payload; returns the replies after the 354 and the new spool entries. */
async function smuggle(
  mta: Mta,
  eod: string,
  bytewise: boolean,
): Promise<{ replies: SmtpReply[]; added: Record<string, unknown>[] }> {
  const before = new Set((await mta.spoolMetas()).map((m) => m.id));
  const smtp = await openData(mta);
  try {
    await smtp.write(payload(eod), { bytewise });
    const replies = parseReplies(await smtp.readToEnd());
    const added = (await mta.spoolMetas()).filter((m) => !before.has(m.id));
    return { replies, added };
  } finally {
    smtp.close();
  }
}

async function assertNoSmuggledSender(mta: Mta): Promise<void> {
  const metas = await mta.spoolMetas();
  assert.deepEqual(metas.filter((m) => m.from !== "alice@ours.test").map((m) => m.from), []);
  for (const m of metas) {
    const eml = await mta.readEml(m.id as string);
    assert.deepEqual(bareLineEnds(eml), [], `bare CR/LF stored in ${m.id}`);
  }
}

Deno.test("SMUG-IN-01..13 (bare_newline: normalize): one message, CRLF only, NUL refused", async (t) => {
  await using mta = await Mta.start({ config: { server: { bare_newline: "normalize" } } });
  for (const [id, eod, nul] of SEQUENCES) {
    for (const bytewise of [false, true]) {
      await t.step(
        `${id} ${JSON.stringify(eod)} ${bytewise ? "one byte per write" : "one write"}`,
        async () => {
          const { replies, added } = await smuggle(mta, eod, bytewise);
          const codes = replies.map((r) => r.code);
          if (nul) {
            assert.deepEqual(codes, [554, 221], JSON.stringify(replies));
            assert.equal(added.length, 0, "a message with NUL was stored");
            return;
          }
          assert.deepEqual(codes, [250, 221], JSON.stringify(replies));
          assert.equal(added.length, 1, `expected one spool entry, got ${added.length}`);
          assert.equal(added[0].id, queuedId(replies[0].raw));
          assert.equal(added[0].from, "alice@ours.test");
          const eml = await mta.readEml(added[0].id as string);
          assert.deepEqual(bareLineEnds(eml), [], "bare CR or LF in the stored message");
          // The would-be second transaction is inert body text of the first message.
          assert.ok(new TextDecoder().decode(eml).includes("Subject: SMUGGLED"));
        },
      );
    }
  }
  await assertNoSmuggledSender(mta);
  assert.equal(await mta.stop(), 0);
});

Deno.test("SMUG-IN-01..13 (bare_newline: reject): 550 or 554, nothing stored", async (t) => {
  await using mta = await Mta.start({ config: { server: { bare_newline: "reject" } } });
  for (const [id, eod, nul] of SEQUENCES) {
    for (const bytewise of [false, true]) {
      await t.step(
        `${id} ${JSON.stringify(eod)} ${bytewise ? "one byte per write" : "one write"}`,
        async () => {
          const { replies, added } = await smuggle(mta, eod, bytewise);
          assert.deepEqual(
            replies.map((r) => r.code),
            [nul ? 554 : 550, 221],
            JSON.stringify(replies),
          );
          assert.equal(added.length, 0, "a refused message was stored");
        },
      );
    }
  }
  assert.deepEqual(await mta.spoolMetas(), []);
  assert.deepEqual(await mta.spoolFiles("msg"), []);
  assert.deepEqual(await mta.spoolFiles("tmp"), []);
  assert.equal(await mta.stop(), 0);
});

Deno.test("SMUG-IN-15: two pipelined messages in one write are exactly two, in order", async () => {
  await using mta = await Mta.start();
  const smtp = await mta.authed();
  try {
    const one = (n: number) =>
      `MAIL FROM:<alice@ours.test>\r\nRCPT TO:<rcpt${n}@capture.test>\r\nDATA\r\n` +
      `From: alice@ours.test\r\nSubject: pipelined ${n}\r\n\r\nmessage ${n}\r\n.\r\n`;
    // QUIT pipelined after the second dot must be answered: smtp-server
    // 3.21.6 lost it (SMTPStream.continue() cleared the continuation it had
    // just set); src/submission/_smtp_server_patches.ts mends that.
    await smtp.write(`${one(1)}${one(2)}QUIT\r\n`);
    const replies: SmtpReply[] = [];
    while (replies.length < 9) replies.push(await smtp.reply());
    assert.deepEqual(replies.map((r) => r.code), [250, 250, 354, 250, 250, 250, 354, 250, 221]);
    const queued = replies.filter((r) => r.code === 250 && /queued as/.test(r.raw));
    assert.equal(queued.length, 2, JSON.stringify(replies));
    const ids = queued.map((r) => queuedId(r.raw));
    const metas = await mta.spoolMetas();
    assert.deepEqual(metas.map((m) => m.id).sort(), [...ids].sort());
    for (const [i, id] of ids.entries()) {
      const eml = new TextDecoder().decode(await mta.readEml(id));
      assert.match(eml, new RegExp(`Subject: pipelined ${i + 1}\r\n`));
      const meta = metas.find((m) => m.id === id)!;
      assert.deepEqual(
        (meta.recipients as { address: string }[]).map((r) => r.address),
        [`rcpt${i + 1}@capture.test`],
      );
    }
  } finally {
    smtp.close();
  }
  assert.equal(await mta.stop(), 0);
});

const ENVELOPE = "MAIL FROM:<alice@ours.test>\r\nRCPT TO:<rcpt@capture.test>\r\nDATA\r\n";

/** The payload without its final QUIT, so one session can take it again and again. */
function payloadWithoutQuit(eod: string): Uint8Array {
  const bytes = payload(eod);
  return bytes.subarray(0, bytes.length - "QUIT\r\n".length);
}

/**
 * One transaction with the payload written in two parts, split at `at`
 * after a pause, then a NOOP. Returns the replies before the NOOP's
 * "250 OK": exactly one when no split ends the message early.
 */
async function splitOnce(
  smtp: SmtpDriver,
  bytes: Uint8Array,
  at: number,
  pauseMs: number,
): Promise<SmtpReply[]> {
  // Pipelined (RFC 2920): the envelope and the first part go in one segment.
  await smtp.write(concatBytes(ENVELOPE, bytes.subarray(0, at)));
  await delay(pauseMs);
  await smtp.write(concatBytes(bytes.subarray(at), "NOOP\r\n"));
  for (const code of [250, 250, 354]) await smtp.expect(code);
  const replies: SmtpReply[] = [];
  for (let r = await smtp.reply(); r.raw !== "250 OK"; r = await smtp.reply()) replies.push(r);
  return replies;
}

function concatBytes(a: string | Uint8Array, b: string | Uint8Array): Uint8Array {
  const [x, y] = [a, b].map((v) => typeof v === "string" ? new TextEncoder().encode(v) : v);
  const out = new Uint8Array(x.length + y.length);
  out.set(x);
  out.set(y, x.length);
  return out;
}

/** The stored body (after the header block) of the message queued by `reply`. */
async function storedBody(mta: Mta, reply: SmtpReply): Promise<string> {
  const eml = new TextDecoder("latin1").decode(
    await mta.readEml(queuedId(reply.raw)),
  );
  return eml.slice(eml.indexOf("\r\n\r\n") + 4);
}

Deno.test("SMUG-IN-14 (bare_newline: reject): every payload split at every offset gets the same one 550/554", async (t) => {
  await using mta = await Mta.start({ config: { server: { bare_newline: "reject" } } });
  for (const [id, eod, nul] of SEQUENCES) {
    await t.step(`${id} ${JSON.stringify(eod)}`, async () => {
      const bytes = payloadWithoutQuit(eod);
      using smtp = await mta.authed();
      const want = nul ? 554 : 550;
      for (let at = 1; at < bytes.length; at++) {
        const replies = await splitOnce(smtp, bytes, at, 1);
        assert.deepEqual(replies.map((r) => r.code), [want], `split at ${at}: ${replies[0]?.raw}`);
      }
      // The legitimate terminator split between its CRLF and ".CRLF", with time to parse each half.
      const replies = await splitOnce(smtp, bytes, bytes.length - 3, 200);
      assert.deepEqual(replies.map((r) => r.code), [want]);
    });
  }
  assert.deepEqual(await mta.spoolFiles("msg"), []);
  assert.deepEqual(await mta.spoolFiles("tmp"), []);
  assert.equal(await mta.stop(), 0);
});

Deno.test("SMUG-IN-14 (bare_newline: normalize): splits around each sequence store the same bytes", async (t) => {
  await using mta = await Mta.start({ config: { server: { bare_newline: "normalize" } } });
  for (const [id, eod, nul] of SEQUENCES) {
    await t.step(`${id} ${JSON.stringify(eod)}`, async () => {
      const bytes = payloadWithoutQuit(eod);
      using smtp = await mta.authed();
      // Every offset from 4 bytes before the sequence to 4 after it, and the final CRLF | .CRLF.
      const splits = [
        ...Array.from({ length: eod.length + 9 }, (_, i) => HEAD.length - 4 + i),
        bytes.length - 3,
      ];
      const bodies = new Set<string>();
      for (const at of splits) {
        const replies = await splitOnce(smtp, bytes, at, at === bytes.length - 3 ? 200 : 1);
        assert.deepEqual(replies.map((r) => r.code), [nul ? 554 : 250], `split at ${at}`);
        if (!nul) bodies.add(await storedBody(mta, replies[0]));
      }
      if (!nul) {
        assert.equal(
          bodies.size,
          1,
          `stored bodies differ by split: ${JSON.stringify([...bodies])}`,
        );
        const [body] = bodies;
        assert.ok(body.includes("Subject: SMUGGLED"), "the smuggled text is body text");
        assert.deepEqual(bareLineEnds(new TextEncoder().encode(body)), []);
      }
    });
  }
  await assertNoSmuggledSender(mta);
  assert.equal(await mta.stop(), 0);
});

Deno.test("R12: BDAT (CHUNKING not offered) gets 500 and its chunk is read as commands", async () => {
  await using mta = await Mta.start();
  const smtp = await mta.authed();
  const ehlo = await smtp.cmd("EHLO t.test", 250);
  assert.ok(!ehlo.lines.some((l) => /^CHUNKING\b/i.test(l)), ehlo.raw);
  await smtp.cmd("MAIL FROM:<alice@ours.test>", 250);
  await smtp.cmd("RCPT TO:<r12@remote.test>", 250);
  // Were BDAT honoured, the next 12 bytes would be message data, not commands.
  await smtp.write("BDAT 12 LAST\r\nNOOP\r\nRSET\r\n");
  const bdat = await smtp.reply();
  assert.equal(bdat.code, 500, bdat.raw);
  assert.equal((await smtp.reply()).raw, "250 OK");
  assert.equal((await smtp.reply()).raw, "250 Flushed");
  assert.equal((await smtp.cmd("DATA")).code, 503, "the RSET ran: no transaction left");
  await smtp.cmd("QUIT", 221);
  smtp.close();
  assert.deepEqual(await mta.spoolFiles("msg"), []);
  assert.equal(await mta.stop(), 0);
});
