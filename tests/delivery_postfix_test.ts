/**
 * TESTPLAN §1.2 SMUG-OUT-08: a strict reference receiver. A private Postfix
 * (Debian package) on a loopback address with `smtpd_forbid_bare_newline =
 * reject` is the MX of dest.test. minimta delivers spool fixtures holding
 * bare LF, bare CR, `\n.\r\n`, lone `.` lines, `..` lines, no final line
 * break and 8-bit bytes (written into the spool before the daemon starts,
 * as legacy or corrupt content would be), plus one message submitted
 * normally and DKIM-signed. Postfix must accept every one, exactly once,
 * with no "bare <LF>" complaint; what it stored must have the expected line
 * structure (dot-stuffing undone, every bare CR/LF turned into a line
 * break), and the DKIM signature must verify on the bytes Postfix stored.
 *
 * Needs root, the postfix package and python3-dkim; skipped loudly without
 * them, a failure with MINIMTA_REQUIRE_INTEROP=1.
 */
import assert from "node:assert/strict";
import { freePorts, Mta, requireTool, spoolFixture, waitFor } from "./_harness.ts";
import { deliveryConfig, deliveryEvents, isGone, submit } from "./_delivery.ts";
import { dkimVerify } from "./_dkim.ts";
import { FakeDns, mxZone } from "./_dns.ts";
import { loopbackNet } from "./_mx.ts";
import {
  bytesToLatin1,
  latin1ToBytes,
  Postfix,
  POSTFIX_TOOLS,
  rawTransaction,
  splitReceived,
} from "./_postfix.ts";

const head = (rcpt: string) => [
  "From: alice@ours.test",
  `To: ${rcpt}`,
  `Subject: strict receiver ${rcpt}`,
  `Message-ID: <${rcpt.replace("@", ".")}@ours.test>`,
];

/** Spooled body → the lines Postfix must store after the header block (latin-1 text). */
const CASES: { name: string; rcpt: string; body: string; lines: string[] }[] = [
  {
    name: "bare LF and <LF>.<LF>",
    rcpt: "lf@dest.test",
    body: "SMUGGLINGSTART\nx\n.\nMAIL FROM:<admin@ours.test>\nSMUGGLINGEND\r\n",
    lines: ["SMUGGLINGSTART", "x", ".", "MAIL FROM:<admin@ours.test>", "SMUGGLINGEND"],
  },
  {
    name: "<LF>.<CR><LF>",
    rcpt: "lfcrlf@dest.test",
    body: "SMUGGLINGSTART\r\nx\n.\r\nRCPT TO:<evil@x.test>\r\nSMUGGLINGEND\r\n",
    lines: ["SMUGGLINGSTART", "x", ".", "RCPT TO:<evil@x.test>", "SMUGGLINGEND"],
  },
  {
    name: "bare CR alone and <CR>.<CR><LF>",
    rcpt: "cr@dest.test",
    body: "SMUGGLINGSTART\r\na\rb\r.\r\nDATA\r\nSMUGGLINGEND\r\n",
    lines: ["SMUGGLINGSTART", "a", "b", ".", "DATA", "SMUGGLINGEND"],
  },
  {
    name: "a body that starts with a lone dot line, lone dot lines and a '..' line",
    rcpt: "dot@dest.test",
    body: ".\r\nmiddle\r\n..two dots\r\n.\r\n...\r\n.x\r\n",
    lines: [".", "middle", "..two dots", ".", "...", ".x"],
  },
  {
    name: "no final line break",
    rcpt: "noeol@dest.test",
    body: "first\r\nlast line without a line break",
    lines: ["first", "last line without a line break"],
  },
  {
    name: "8-bit bytes (latin-1 and invalid UTF-8)",
    rcpt: "eightbit@dest.test",
    body: "caf\xe9 \xc3\xa9t\xc3\xa9\r\n\xff\xfe\x80 raw\r\n\xe9.\r\n",
    lines: ["caf\xe9 \xc3\xa9t\xc3\xa9", "\xff\xfe\x80 raw", "\xe9."],
  },
];

Deno.test({
  name:
    "SMUG-OUT-08: a strict Postfix (smtpd_forbid_bare_newline = reject) accepts every message " +
    "once, with CRLF-only lines, dots unstuffed and the DKIM signature intact",
  ignore: requireTool(...POSTFIX_TOOLS, "python3:dns", "python3:dkim"),
  async fn() {
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using postfix = await Postfix.start({ host: net(2), port });
    await using dns = await FakeDns.start(mxZone("dest.test", "mx1.dest.test", net(2)));
    await using mta = await Mta.start({
      noStart: true,
      dkim: ["rsa"],
      config: { delivery: deliveryConfig({ dns, port }) },
    });

    // Fixtures straight into the spool, before the daemon runs.
    const byId = new Map<string, (typeof CASES)[number]>();
    for (const c of CASES) {
      const bytes = latin1ToBytes([...head(c.rcpt), "", ""].join("\r\n") + c.body);
      const id = await spoolFixture(mta.spoolDir, bytes, {
        from: "alice@ours.test",
        recipients: [c.rcpt],
      });
      byId.set(id, c);
    }
    await mta.launch();
    // And one message through the real intake, DKIM-signed by minimta.
    const signedRcpt = "signed@dest.test";
    const signedId = await submit(mta, {
      to: [signedRcpt],
      headers: ["From: Alice <alice@ours.test>", "Subject: signed for a strict receiver"],
      // Written raw on the submission wire: "..lead" is the line ".lead".
      body: "Line one\r\n..leading dot line\r\n\r\ntrailing spaces   \r\n",
    });
    const allIds = [...byId.keys(), signedId];

    await waitFor(
      "every message to leave minimta's queue and its delivery to be logged",
      async () =>
        (await Promise.all(allIds.map((id) => isGone(mta, id)))).every(Boolean) &&
        // The mail log reaches us through a pipe, possibly after the spool change.
        allIds.every((id) => deliveryEvents(mta, id).length > 0),
      30_000,
      async () =>
        `minimta queue: ${JSON.stringify(await mta.queueList())}\n` +
        `postfix log:\n${await postfix.maillog()}`,
    );

    // minimta: every recipient delivered with a 250 from Postfix.
    const postfixIdOf = new Map<string, string>();
    for (const id of allIds) {
      const events = deliveryEvents(mta, id);
      assert.equal(events.length, 1, `${id}: one delivery attempt: ${JSON.stringify(events)}`);
      const [e] = events;
      assert.equal(e.outcome, "delivered", JSON.stringify(e));
      assert.equal(e.code, 250, JSON.stringify(e));
      const m = /queued as ([0-9A-F]+)/.exec(String(e.text));
      assert.ok(m, `Postfix's queue id in ${JSON.stringify(e.text)}`);
      postfixIdOf.set(id, m[1]);
    }

    // Postfix: no complaint, one held message per minimta message.
    const log = await postfix.maillog();
    assert.doesNotMatch(log, /bare <LF>/i, log);
    assert.doesNotMatch(log, /\breject:/, log);
    const queue = await postfix.queue();
    assert.equal(queue.length, allIds.length, JSON.stringify(queue));
    assert.ok(queue.every((q) => q.queue_name === "hold"), JSON.stringify(queue));
    assert.deepEqual(
      queue.map((q) => q.recipients.map((r) => r.address).join()).sort(),
      [...CASES.map((c) => c.rcpt), signedRcpt].sort(),
      "each recipient exactly once: nothing smuggled, nothing split",
    );
    assert.equal((await postfix.queueFiles("hold")).length, allIds.length);
    for (const other of ["incoming", "active", "deferred", "corrupt"]) {
      assert.deepEqual(await postfix.queueFiles(other), [], `nothing in Postfix's ${other}/`);
    }
    assert.ok(queue.every((q) => q.sender === "alice@ours.test"));

    // What Postfix stored: our header, a blank line, then exactly the expected lines.
    for (const [id, c] of byId) {
      const pfId = postfixIdOf.get(id)!;
      const entry = queue.find((q) => q.queue_id === pfId);
      assert.ok(entry, `${c.name}: Postfix ${pfId} in the queue`);
      assert.deepEqual(entry.recipients.map((r) => r.address), [c.rcpt]);
      const text = await postfix.messageText(pfId);
      assert.doesNotMatch(text, /\r/, `${c.name}: no CR stored`);
      const { received, rest } = splitReceived(text);
      assert.match(received, /^Received: from mx\.ours\.test /, `${c.name}: ${text}`);
      assert.deepEqual(rest, [...head(c.rcpt), "", ...c.lines], c.name);
    }

    // The DKIM-signed message verifies on the bytes Postfix stored (Received: on top).
    const stored = await postfix.messageBytes(postfixIdOf.get(signedId)!);
    const storedText = bytesToLatin1(stored);
    assert.match(storedText, /^Received: /);
    assert.match(storedText, /\r\n\.leading dot line\r\n/, "dot-stuffing undone");
    const verdict = await dkimVerify(mta, stored);
    assert.equal(verdict.code, 0, `dkim_verify: ${JSON.stringify(verdict)}\n${storedText}`);
    assert.deepEqual(verdict.results.map((r) => [r.d, r.a, r.ok]), [
      ["ours.test", "rsa-sha256", true],
    ]);

    // Control: this receiver really is strict — a bare LF sent raw is refused.
    const probe = await rawTransaction(net(2), port, {
      from: "probe@ours.test",
      to: "probe@dest.test",
    }, latin1ToBytes("Subject: probe\r\n\r\nbare\nLF\r\n.\r\n"));
    assert.match(probe, /^550 5\.5\.2 .*bare <LF> received/, probe);
    // postlogd writes the log line a moment after smtpd has answered.
    await waitFor(
      "Postfix to log the refused bare LF",
      async () => /bare <LF> received/.test(await postfix.maillog()),
      10_000,
      () => postfix.maillog(),
    );
    assert.equal((await postfix.queue()).length, allIds.length, "the probe was not queued");
  },
});
