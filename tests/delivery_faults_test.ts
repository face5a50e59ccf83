/**
 * Remote faults and DNS faults (TESTPLAN §4, DLV-*, and D16): temporary
 * replies are retried on schedule, permanent ones bounce with an RFC 3464
 * DSN that is itself delivered to the sender's MX, DNS outages never bounce,
 * the next MX is tried when the first refuses, never greets or drops the
 * SYN, a dropped DATA ends in exactly one copy and a reply lost after the
 * dot in two, per-recipient replies are kept apart, a server's recipient
 * limit splits the transaction, and a reset after the 250 changes nothing.
 */
import assert from "node:assert/strict";
import { delay, requireTool, spoolFixture, waitFor } from "./_harness.ts";
import { deliveryEvents, deliveryWorld, isGone, mailEvents, submit } from "./_delivery.ts";
import { dkimVerify } from "./_dkim.ts";
import { header, type MimePart, parseMime, text, unstuff } from "./_mime.ts";
import { FakeMx, type MxTransaction, SmtpSink } from "./_mx.ts";

const needs = requireTool("python3:dns");

/** The parts of a DSN that RFC 3464 fixes, parsed by Python's email package. */
interface Dsn {
  top: MimePart;
  human: MimePart;
  /** Per-message fields, then one block per recipient. */
  blocks: MimePart[];
  original: MimePart;
}

async function parseDsn(tx: MxTransaction): Promise<Dsn> {
  const top = await parseMime(unstuff(tx.data));
  assert.equal(top.content_type, "multipart/report");
  assert.equal(top.params["report-type"], "delivery-status");
  assert.match(header(top, "From") ?? "", /<MAILER-DAEMON@mx\.ours\.test>/);
  assert.equal(header(top, "Auto-Submitted"), "auto-replied");
  const types = top.parts.map((p) => p.content_type);
  assert.deepEqual(types, ["text/plain", "message/delivery-status", "text/rfc822-headers"]);
  const [human, status, original] = top.parts;
  return { top, human, blocks: status.parts, original };
}

/** The recipient block of `address` in a DSN. */
function block(dsn: Dsn, address: string): MimePart {
  const found = dsn.blocks.find((b) => header(b, "Final-Recipient") === `rfc822; ${address}`);
  assert.ok(found, `no DSN block for ${address}: ${JSON.stringify(dsn.blocks)}`);
  return found;
}

/** Waits for the one DSN the sender's MX receives, checks the null reverse-path. */
async function oneDsn(capture: FakeMx): Promise<MxTransaction> {
  const [tx] = await waitFor("a DSN at the sender's MX", async () => {
    const txs = await capture.accepted();
    return txs.length > 0 && txs;
  }, 15_000);
  assert.equal(tx.mail_from, "", "DSN sent with MAIL FROM:<> (RFC 5321 §4.5.5)");
  assert.deepEqual(tx.rcpts, ["alice@ours.test"]);
  const nullPath = (await capture.commands()).filter((c) => c.conn === tx.conn)
    .some((c) => /^MAIL FROM:<>( |$)/i.test(c.line));
  assert.ok(nullPath, "MAIL FROM:<> on the wire");
  return tx;
}

Deno.test({
  name: "451 then 250: deferred with the remote text, retried on schedule, delivered, removed",
  ignore: needs,
  async fn() {
    await using w = await deliveryWorld({
      mx: {
        data: ["451 4.3.0 Temporary local problem (fake_mx)", "250 2.0.0 Ok"],
      },
      delivery: { retry_schedule: ["4s"] },
    });
    const { net, mta, mx } = w;
    const id = await submit(mta, { to: ["bob@dest.test"] });
    const entry = await waitFor("the message to show as deferred", async () => {
      const list = await mta.queueList();
      const e = list.find((m) => m.id === id);
      return e?.state === "deferred" && e;
    }, 10_000);
    const [rcpt] = entry.recipients;
    assert.equal(rcpt.status, "deferred");
    assert.equal(rcpt.attempts, 1);
    assert.match(rcpt.last_error ?? "", /451 4\.3\.0 Temporary local problem \(fake_mx\)/);
    assert.match(rcpt.last_error ?? "", new RegExp(`mx1\\.dest\\.test\\[${net(2)}\\]`));
    const retryAt = Date.parse(entry.next_attempt_at);
    await waitFor("the message to leave the queue", () => isGone(mta, id), 15_000);
    const txs = await mx.transactions();
    assert.equal(txs.length, 2);
    const waited = txs[1].t - txs[0].t;
    assert.ok(
      waited >= 3.4 && waited < 8,
      `retried after ${waited.toFixed(1)} s; schedule is 4 s ±10%`,
    );
    assert.ok(txs[1].t * 1000 >= retryAt - 200, "not before next_attempt_at");
    assert.equal((await mx.accepted()).length, 1, "delivered exactly once");
    const events = deliveryEvents(mta, id);
    assert.deepEqual(events.map((e) => [e.outcome, e.attempt, e.code]), [
      ["transient", 1, 451],
      ["delivered", 2, 250],
    ]);
    assert.equal(mailEvents(mta, "bounced").length, 0);
  },
});

Deno.test({
  name: "550 for one of two recipients: the other is delivered, the sender gets one RFC 3464 DSN",
  ignore: needs,
  async fn() {
    await using w = await deliveryWorld({
      mx: {
        rcpt: {
          "bad@dest.test": "550 5.1.1 <bad@dest.test>: Recipient address rejected: User unknown",
        },
      },
      capture: true,
    });
    const { mta, mx, capture } = w;
    const id = await submit(mta, {
      to: ["good@dest.test", "bad@dest.test"],
      headers: ["Subject: quarterly report", "Message-ID: <orig-1@ours.test>"],
    });
    await waitFor("the message to leave the queue", () => isGone(mta, id));
    const delivered = await mx.accepted();
    assert.equal(delivered.length, 1);
    assert.deepEqual(delivered[0].rcpts, ["good@dest.test"]);

    const dsn = await parseDsn(await oneDsn(capture));
    assert.match(dsn.human.text ?? "", /bad@dest\.test/);
    assert.doesNotMatch(dsn.human.text ?? "", /good@dest\.test/);
    assert.equal(header(dsn.blocks[0], "Reporting-MTA"), "dns; mx.ours.test");
    assert.equal(dsn.blocks.length, 2, "per-message fields and exactly one recipient block");
    const bad = block(dsn, "bad@dest.test");
    assert.equal(header(bad, "Action"), "failed");
    assert.equal(header(bad, "Status"), "5.1.1");
    assert.equal(header(bad, "Remote-MTA"), "dns; mx1.dest.test");
    assert.match(header(bad, "Diagnostic-Code") ?? "", /^smtp; .*550 5\.1\.1 .*User unknown/);
    assert.match(dsn.original.text ?? "", /^Subject: quarterly report\r?$/m);
    assert.match(dsn.original.text ?? "", /^Message-ID: <orig-1@ours\.test>\r?$/m);
    assert.doesNotMatch(dsn.original.text ?? "", /Hello from the delivery tests/, "headers only");
    await waitFor(
      "the DSN to leave the queue",
      async () => (await mta.spoolFiles("msg")).length === 0,
    );
    assert.equal(mailEvents(mta, "bounced").length, 1);
  },
});

Deno.test({
  name:
    "D16: a recipient still deferred after max_queue_lifetime bounces once, with the last remote diagnostic; a null-sender message expires without a DSN",
  ignore: needs || requireTool("smtp-sink"),
  async fn() {
    await using w = await deliveryWorld({
      mx: null,
      capture: true,
      delivery: { max_queue_lifetime: "3s" },
      mta: { noStart: true },
    });
    const { net, port, mta, capture } = w;
    // Real Postfix smtp-sink answering every RCPT with a 4xx.
    await using _sink = await SmtpSink.start(net(2), port, [
      "-r",
      "RCPT",
      "-b",
      "450 4.2.1 Mailbox busy, try later (smtp-sink)",
    ]);
    // A bounce from elsewhere (null reverse-path) stuck behind the same 4xx.
    const nullSender = await spoolFixture(
      mta.spoolDir,
      new TextEncoder().encode("From: MAILER-DAEMON@elsewhere.test\r\nSubject: a DSN\r\n\r\nx\r\n"),
      { from: "", recipients: ["stuck@dest.test"] },
    );
    await mta.launch();
    const id = await submit(mta, { to: ["slow@dest.test"] });
    const dsn = await parseDsn(await oneDsn(capture));
    const rcpt = block(dsn, "slow@dest.test");
    assert.equal(header(rcpt, "Action"), "failed");
    assert.match(
      header(rcpt, "Status") ?? "",
      /^[45]\.4\.7$/,
      "RFC 3463 4.4.7: delivery time expired",
    );
    assert.match(
      header(rcpt, "Diagnostic-Code") ?? "",
      /450 4\.2\.1 Mailbox busy, try later \(smtp-sink\)/,
    );
    assert.ok(await isGone(mta, id));
    const attempts = deliveryEvents(mta, id).filter((e) => e.code === 450);
    assert.ok(attempts.length >= 2, `retried until it expired (${attempts.length} attempts)`);
    // The original is removed only once its DSN is spooled (the bounced event follows the fsync).
    const order = mta.logs().filter((e) =>
      e.queue_id === id && (e.event === "bounced" || e.event === "removed")
    ).map((e) => e.event);
    assert.deepEqual(order, ["bounced", "removed"]);
    await waitFor("the null-sender message to expire", () => isGone(mta, nullSender));
    assert.ok(mailEvents(mta, "expired").some((e) => e.queue_id === nullSender));
    await delay(1500);
    const dsns = await capture.accepted();
    assert.equal(dsns.length, 1, "exactly one DSN, and none for the null-sender message");
    assert.deepEqual(dsns[0].rcpts, ["alice@ours.test"]);
    assert.deepEqual(mailEvents(mta, "bounced").map((e) => e.queue_id), [id]);
  },
});

Deno.test({
  name: "null MX and NXDOMAIN recipient domains bounce on the first attempt, in one DSN",
  ignore: needs,
  async fn() {
    await using w = await deliveryWorld({
      zone: {
        "null.test": { MX: [[0, "."]] },
        "nx.test": { rcode: "NXDOMAIN" },
      },
      mx: null,
      capture: true,
      delivery: { retry_schedule: ["1h"] },
    });
    const { mta, capture } = w;
    const started = Date.now();
    const id = await submit(mta, { to: ["x@null.test", "y@nx.test"] });
    const dsn = await parseDsn(await oneDsn(capture));
    assert.ok(Date.now() - started < 10_000, "bounced at once, not after a retry");
    const nullMx = block(dsn, "x@null.test");
    assert.equal(header(nullMx, "Action"), "failed");
    assert.match(header(nullMx, "Status") ?? "", /^5\.1\.10$/, "RFC 7505 §4.3");
    assert.match(header(nullMx, "Diagnostic-Code") ?? "", /null ?MX|does not accept mail/i);
    const nx = block(dsn, "y@nx.test");
    assert.match(header(nx, "Status") ?? "", /^5\./);
    assert.match(header(nx, "Diagnostic-Code") ?? "", /not found|NXDOMAIN/i);
    assert.equal(header(nx, "Remote-MTA"), undefined, "no server was reached");
    assert.ok(await isGone(mta, id));
    assert.deepEqual(deliveryEvents(mta, id).map((e) => [e.attempt, e.outcome]), [
      [1, "permanent"],
      [1, "permanent"],
    ]);
  },
});

Deno.test({
  name: "SERVFAIL defers and never bounces: still deferred after several attempts, no DSN",
  ignore: needs,
  async fn() {
    await using w = await deliveryWorld({
      zone: { "sf.test": { rcode: "SERVFAIL" } },
      mx: null,
      capture: true,
    });
    const { mta, capture } = w;
    const id = await submit(mta, { to: ["z@sf.test"] });
    await waitFor("three attempts", () => deliveryEvents(mta, id).length >= 3, 15_000);
    const events = deliveryEvents(mta, id);
    assert.ok(events.every((e) => e.outcome === "transient"), JSON.stringify(events));
    assert.match(String(events[0].status), /^4\.4\.3$/);
    const entry = (await mta.queueList()).find((m) => m.id === id);
    assert.ok(entry, "still in the queue");
    assert.equal(entry.recipients[0].status, "deferred");
    assert.ok(entry.recipients[0].attempts >= 3);
    assert.equal(mailEvents(mta, "bounced").length, 0);
    assert.equal((await capture.transactions()).length, 0, "no DSN");
  },
});

Deno.test({
  name:
    "DLV-01/DLV-05: the first MX refuses (nothing listening, or a 421 or 554 greeting from smtp-sink): the second MX gets the mail",
  ignore: needs || requireTool("smtp-sink"),
  async fn(t) {
    const sinkFlags = {
      "closed": null,
      "421 greeting": ["-Q", "CONNECT"],
      "5xx greeting": ["-f", "CONNECT", "-B", "554 5.3.2 No service here (smtp-sink)"],
    };
    for (const [first, flags] of Object.entries(sinkFlags)) {
      await t.step(first, async () => {
        await using w = await deliveryWorld({
          zone: (net) => ({
            "dest.test": { MX: [[20, "mx2.dest.test"], [10, "mx1.dest.test"]] },
            "mx2.dest.test": { A: [net(3)] },
          }),
          mx: null,
        });
        const { net, port, mta } = w;
        await using _sink = flags && await SmtpSink.start(net(2), port, flags);
        await using mx2 = await FakeMx.start(net(3), port, { name: "mx2.dest.test" });
        const id = await submit(mta, { to: ["bob@dest.test"] });
        await waitFor("the message to leave the queue", () => isGone(mta, id));
        assert.equal((await mx2.accepted()).length, 1);
        const events = deliveryEvents(mta, id);
        assert.deepEqual(events.map((e) => [e.outcome, e.attempt, e.relay]), [
          ["delivered", 1, `mx2.dest.test[${net(3)}]`],
        ]);
        assert.equal(mailEvents(mta, "bounced").length, 0, `${first} does not bounce`);
      });
    }
  },
});

Deno.test({
  name: "DLV-07: connection dropped in the middle of DATA: deferred, then delivered exactly once",
  ignore: needs,
  async fn() {
    await using w = await deliveryWorld({
      mx: {
        drop_after_bytes: [300, null],
      },
    });
    const { mta, mx } = w;
    const body = Array.from({ length: 200 }, (_, i) => `line ${i} of a long body`).join("\r\n");
    const id = await submit(mta, { to: ["bob@dest.test"], body: `${body}\r\n` });
    await waitFor("the message to leave the queue", () => isGone(mta, id), 15_000);
    const txs = await mx.transactions();
    assert.equal(txs.length, 2);
    assert.ok(txs[0].dropped);
    assert.equal((await mx.accepted()).length, 1, "exactly one copy accepted");
    const events = deliveryEvents(mta, id);
    assert.deepEqual(events.map((e) => [e.outcome, e.attempt]), [
      ["transient", 1],
      ["delivered", 2],
    ]);
    assert.match(String(events[0].status), /^4\./);
    assert.match(new TextDecoder().decode(unstuff(txs[1].data)), /line 199 of a long body\r\n$/);
  },
});

Deno.test({
  name: "a DSN that cannot be delivered (sender domain NXDOMAIN) is dropped, not bounced again",
  ignore: needs,
  async fn() {
    await using w = await deliveryWorld({
      zone: { "ours.test": { rcode: "NXDOMAIN" } },
      mx: { rcpt_default: "550 5.1.1 No such user" },
    });
    const { mta } = w;
    const id = await submit(mta, { to: ["nobody@dest.test"] });
    await waitFor("the message to leave the queue", () => isGone(mta, id));
    await waitFor("the spool to be empty", async () => (await mta.spoolFiles("msg")).length === 0);
    await delay(2000);
    assert.deepEqual(await mta.spoolFiles("msg"), [], "nothing new queued");
    assert.equal(mailEvents(mta, "bounced").length, 1, "one DSN made, none for the DSN");
    const dsnId = mailEvents(mta, "bounced")[0].dsn_id;
    const dsnEvents = deliveryEvents(mta, String(dsnId));
    assert.deepEqual(dsnEvents.map((e) => [e.recipient, e.outcome]), [
      ["alice@ours.test", "permanent"],
    ]);
    assert.ok(
      mta.logs().some((e) => /undeliverable bounce/i.test(String(e.message))),
      "the drop is logged",
    );
  },
});

Deno.test({
  name:
    "DLV-08: a 550 sent while the body is still streaming (smtp-sink -A 0) is read, the body stops, and the sender gets one DSN with that 550",
  ignore: needs || requireTool("smtp-sink"),
  async fn() {
    await using w = await deliveryWorld({
      mx: null,
      capture: true,
      delivery: { retry_schedule: ["1h"] },
    });
    const { net, port, mta, capture } = w;
    // smtp-sink answers DATA with 354, then at once 550 and stops reading.
    await using _sink = await SmtpSink.start(net(2), port, ["-A", "0"]);
    // Small enough to fit the socket buffers at once, and large enough (4 MB) that the
    // server closing mid-body breaks the stream before the final dot is written.
    const line = "x".repeat(76) + "\r\n";
    const ids = [
      await submit(mta, { to: ["small@dest.test"] }),
      await submit(mta, { to: ["large@dest.test"], body: line.repeat(4 * 1024 * 1024 / 78) }),
    ];
    const dsns = await waitFor(
      "two DSNs",
      async () => {
        const txs = await capture.accepted();
        return txs.length >= 2 ? txs : null;
      },
      20_000,
      () => JSON.stringify(ids.map((id) => deliveryEvents(mta, id))),
    );
    for (const tx of dsns) {
      const dsn = await parseDsn(tx);
      const rcpt = dsn.blocks[1];
      assert.equal(header(rcpt, "Action"), "failed");
      assert.match(header(rcpt, "Status") ?? "", /^5\./);
      assert.match(
        header(rcpt, "Diagnostic-Code") ?? "",
        /^smtp; .*550 5\.0\.0 This violates SMTP/,
      );
    }
    for (const id of ids) {
      assert.ok(await isGone(mta, id));
      const events = deliveryEvents(mta, id);
      assert.deepEqual(
        events.map((e) => [e.attempt, e.outcome, e.code]),
        [[1, "permanent", 550]],
        JSON.stringify(events),
      );
    }
  },
});

Deno.test({
  name:
    "DLV-02: every MX refuses the connection: deferred 4.4.1, retried on schedule, never bounced",
  ignore: needs,
  async fn() {
    await using w = await deliveryWorld({
      zone: (net) => ({
        "dest.test": { MX: [[10, "mx1.dest.test"], [20, "mx2.dest.test"]] },
        "mx2.dest.test": { A: [net(3)] },
      }),
      mx: null,
      capture: true,
      delivery: { retry_schedule: ["1s"] },
    });
    const { mta, capture } = w;
    // Nothing listens on either MX.
    const id = await submit(mta, { to: ["bob@dest.test"] });
    await waitFor("three attempts", () => deliveryEvents(mta, id).length >= 3, 15_000);
    const events = deliveryEvents(mta, id);
    assert.ok(events.every((e) => e.outcome === "transient"), JSON.stringify(events));
    assert.ok(events.every((e) => e.status === "4.4.1"), JSON.stringify(events));
    assert.deepEqual(events.slice(0, 3).map((e) => e.attempt), [1, 2, 3]);
    const entry = (await mta.queueList()).find((m) => m.id === id);
    assert.ok(entry, "still queued");
    assert.equal(entry.state, "deferred");
    assert.equal(entry.recipients[0].status, "deferred");
    assert.match(
      entry.recipients[0].last_error ?? "",
      /4\.4\.1 Cannot connect to mx[12]\.dest\.test/,
    );
    assert.ok(Date.parse(entry.next_attempt_at) > Date.now() - 1000, "a next attempt is planned");
    assert.equal(mailEvents(mta, "bounced").length, 0);
    assert.equal((await capture.transactions()).length, 0, "no DSN");
  },
});

Deno.test({
  name:
    "DLV-03/DLV-04: an MX that never greets (greeting timeout) or drops the SYN (connect timeout) is left for the next MX",
  ignore: needs,
  async fn(t) {
    for (const first of ["tarpit", "blackhole"] as const) {
      await t.step(first, async () => {
        await using w = await deliveryWorld({
          zone: (net) => ({
            "dest.test": { MX: [[10, "mx1.dest.test"], [20, "mx2.dest.test"]] },
            "mx2.dest.test": { A: [net(3)] },
          }),
          mx: { [first]: true },
          delivery: { connect_timeout: "2s", command_timeout: "2s" },
        });
        const { net, port, mta, mx: mx1 } = w;
        await using mx2 = await FakeMx.start(net(3), port, { name: "mx2.dest.test" });
        // 2 s for the connection and for the greeting (RFC 5321 §4.5.3.2.1 says 5 min).
        const id = await submit(mta, { to: ["bob@dest.test"] });
        await waitFor("the message to leave the queue", () => isGone(mta, id), 15_000);
        assert.equal((await mx2.accepted()).length, 1);
        const events = deliveryEvents(mta, id);
        assert.deepEqual(events.map((e) => [e.outcome, e.attempt, e.relay]), [
          ["delivered", 1, `mx2.dest.test[${net(3)}]`],
        ]);
        const took = events[0].duration_ms as number;
        assert.ok(took >= 1900 && took < 8000, `the first MX held the attempt ${took} ms`);
        if (first === "tarpit") {
          await waitFor(
            "the tarpit connection to be closed by minimta",
            async () => (await mx1.events()).some((e) => e.event === "close"),
          );
        }
      });
    }
  },
});

Deno.test({
  name:
    "DLV-06: 421 and a disconnect after RCPT (smtp-sink -Q RCPT): temporary for every recipient, retried on a new connection, no bounce",
  ignore: needs || requireTool("smtp-sink"),
  async fn() {
    await using w = await deliveryWorld({ mx: null, capture: true });
    const { net, port, mta, capture } = w;
    await using _sink = await SmtpSink.start(net(2), port, ["-Q", "RCPT"]);
    const id = await submit(mta, { to: ["a@dest.test", "b@dest.test"] });
    await waitFor("two attempts each", () => deliveryEvents(mta, id).length >= 4, 15_000);
    const events = deliveryEvents(mta, id);
    assert.ok(events.every((e) => e.outcome === "transient"), JSON.stringify(events));
    assert.ok(events.every((e) => String(e.status).startsWith("4.")), JSON.stringify(events));
    assert.ok(events.some((e) => e.code === 421), JSON.stringify(events));
    const entry = (await mta.queueList()).find((m) => m.id === id);
    assert.ok(entry, "still queued");
    assert.deepEqual(entry.recipients.map((r) => r.status), ["deferred", "deferred"]);
    assert.match(entry.recipients[0].last_error ?? "", /421/);
    assert.equal(mailEvents(mta, "bounced").length, 0);
    assert.equal((await capture.transactions()).length, 0, "no DSN");
  },
});

Deno.test({
  name:
    "DLV-09: the connection drops after the final dot, before the reply: deferred, then sent again; two identical copies (DUP-5)",
  ignore: needs,
  async fn() {
    await using w = await deliveryWorld({
      mx: {
        data: ["DROP", "250 2.0.0 Ok"],
      },
    });
    const { mta, mx } = w;
    const id = await submit(mta, {
      to: ["bob@dest.test"],
      headers: ["Message-ID: <dup-5@ours.test>"],
    });
    await waitFor("the message to leave the queue", () => isGone(mta, id), 15_000);
    const txs = await mx.transactions();
    assert.equal(txs.length, 2, "exactly two copies: the unanswered one and the retry");
    assert.equal(txs[0].reply, "DROP");
    assert.notEqual(txs[0].conn, txs[1].conn, "the retry used a new connection");
    assert.deepEqual(txs[0].data, txs[1].data, "byte-identical (DUP-4)");
    assert.match(text(unstuff(txs[1].data)), /^Message-ID: <dup-5@ours\.test>\r$/m);
    const events = deliveryEvents(mta, id);
    assert.deepEqual(events.map((e) => [e.outcome, e.attempt]), [
      ["transient", 1],
      ["delivered", 2],
    ]);
    assert.match(String(events[0].status), /^4\./);
    assert.equal(mailEvents(mta, "bounced").length, 0);
  },
});

Deno.test({
  name:
    "DLV-10: 250, 450 and 550 for three recipients: one DATA for the first, the second retried alone and delivered, one DSN for the third only",
  ignore: needs,
  async fn() {
    await using w = await deliveryWorld({
      mx: {
        rcpt: {
          "r2@dest.test": ["450 4.2.1 <r2@dest.test>: Mailbox busy (fake_mx)", "250 2.1.5 OK"],
          "r3@dest.test": "550 5.1.1 <r3@dest.test>: Recipient address rejected: User unknown",
        },
      },
      capture: true,
    });
    const { mta, mx, capture } = w;
    const id = await submit(mta, { to: ["r1@dest.test", "r2@dest.test", "r3@dest.test"] });
    await waitFor("the message to leave the queue", () => isGone(mta, id), 15_000);
    const txs = await mx.accepted();
    assert.deepEqual(txs.map((t) => t.rcpts), [["r1@dest.test"], ["r2@dest.test"]]);
    const rcpts = (await mx.commands()).filter((c) => /^RCPT /i.test(c.line)).map((c) => c.line);
    assert.deepEqual(rcpts, [
      "RCPT TO:<r1@dest.test>",
      "RCPT TO:<r2@dest.test>",
      "RCPT TO:<r3@dest.test>",
      "RCPT TO:<r2@dest.test>",
    ]);
    const events = deliveryEvents(mta, id);
    assert.deepEqual(
      events.map((e) => [e.recipient, e.attempt, e.outcome]),
      [
        ["r1@dest.test", 1, "delivered"],
        ["r2@dest.test", 1, "transient"],
        ["r3@dest.test", 1, "permanent"],
        ["r2@dest.test", 2, "delivered"],
      ],
    );

    const dsn = await parseDsn(await oneDsn(capture));
    assert.equal(dsn.blocks.length, 2, "per-message fields and one recipient block");
    const r3 = block(dsn, "r3@dest.test");
    assert.equal(header(r3, "Status"), "5.1.1");
    assert.match(header(r3, "Diagnostic-Code") ?? "", /550 5\.1\.1 .*User unknown/);
    assert.doesNotMatch(dsn.human.text ?? "", /r[12]@dest\.test/);
    await delay(1500);
    assert.equal((await capture.accepted()).length, 1, "no further DSN after r2 was delivered");
  },
});

Deno.test({
  name:
    "DLV-11: every RCPT refused: no message body is sent (no DATA without PIPELINING), the connection ends with QUIT, one DSN",
  ignore: needs,
  async fn(t) {
    for (const pipelining of [true, false]) {
      await t.step(pipelining ? "PIPELINING" : "lock-step", async () => {
        await using w = await deliveryWorld({
          mx: {
            extensions: pipelining ? ["PIPELINING", "8BITMIME"] : ["8BITMIME"],
            rcpt_default: "550 5.1.1 No such user",
          },
          capture: true,
        });
        const { mta, mx, capture } = w;
        const id = await submit(mta, { to: ["x@dest.test", "y@dest.test"] });
        const dsn = await parseDsn(await oneDsn(capture));
        assert.equal(dsn.blocks.length, 3, "both recipients in the one DSN");
        assert.ok(await isGone(mta, id));
        assert.equal(await mta.stop(), 0);
        assert.deepEqual(await mx.transactions(), [], "no 354, no body");
        const verbs = (await mx.commands()).map((c) => c.line.split(/[ :]/)[0].toUpperCase());
        if (!pipelining) assert.ok(!verbs.includes("DATA"), verbs.join(" "));
        // RFC 2920 §3.1: a pipelined DATA is refused by the server, as no RCPT was accepted.
        else assert.equal(verbs.filter((v) => v === "DATA").length, 1, verbs.join(" "));
        assert.equal(verbs.at(-1), "QUIT", verbs.join(" "));
      });
    }
  },
});

Deno.test({
  name:
    "DLV-12: 452 4.5.3 after 50 RCPT: the other 10 recipients go in a second transaction at once, all delivered on the first attempt",
  ignore: needs,
  async fn() {
    await using w = await deliveryWorld({ mx: { rcpt_limit: 50 } });
    const { mta, mx } = w;
    const to = Array.from({ length: 60 }, (_, i) => `r${i}@dest.test`);
    const id = await submit(mta, { to });
    await waitFor("the message to leave the queue", () => isGone(mta, id), 15_000);
    const txs = await mx.accepted();
    assert.deepEqual(txs.map((t) => t.rcpts.length), [50, 10]);
    assert.equal(txs[0].conn, txs[1].conn, "the same connection");
    assert.deepEqual(txs.flatMap((t) => t.rcpts).sort(), [...to].sort());
    assert.deepEqual(txs[0].data, txs[1].data);
    const events = deliveryEvents(mta, id);
    assert.equal(events.length, 60);
    assert.ok(
      events.every((e) => e.outcome === "delivered" && e.attempt === 1),
      JSON.stringify(events.filter((e) => e.outcome !== "delivered")),
    );
  },
});

Deno.test({
  name:
    "DLV-13: larger than the MX's SIZE (not sent at all), or 552 5.3.4 after the dot: bounced at once with 5.3.4",
  ignore: needs,
  async fn(t) {
    const cases = {
      "SIZE 1000 advertised": { extensions: ["PIPELINING", "8BITMIME", "SIZE 1000"] },
      "552 after the dot": { data: ["552 5.3.4 Message size exceeds fixed limit (fake_mx)"] },
    };
    for (const [what, script] of Object.entries(cases)) {
      await t.step(what, async () => {
        await using w = await deliveryWorld({
          mx: script,
          capture: true,
          delivery: { retry_schedule: ["1h"] },
        });
        const { mta, mx, capture } = w;
        const id = await submit(mta, {
          to: ["big@dest.test"],
          body: ("y".repeat(76) + "\r\n").repeat(30),
        });
        const rcpt = block(await parseDsn(await oneDsn(capture)), "big@dest.test");
        assert.equal(header(rcpt, "Status"), "5.3.4");
        assert.ok(await isGone(mta, id));
        assert.deepEqual(deliveryEvents(mta, id).map((e) => [e.attempt, e.outcome, e.status]), [
          [1, "permanent", "5.3.4"],
        ]);
        const mails = (await mx.commands()).filter((c) => /^MAIL /i.test(c.line));
        if (what === "SIZE 1000 advertised") {
          assert.deepEqual(mails, [], "RFC 1870 §6: not even MAIL FROM");
          assert.match(header(rcpt, "Diagnostic-Code") ?? "", /exceeds the limit 1000/);
        } else {
          assert.equal((await mx.transactions()).length, 1, "sent once, not retried");
          assert.match(header(rcpt, "Diagnostic-Code") ?? "", /552 5\.3\.4 Message size exceeds/);
        }
      });
    }
  },
});

Deno.test({
  name:
    "DLV-15: an MX without 8BITMIME gets the 8-bit body as signed (DKIM verifies); one without SMTPUTF8 gets nothing for a UTF-8 address, which bounces 5.6.7",
  ignore: needs || requireTool("python3:dkim"),
  async fn() {
    await using w = await deliveryWorld({
      mx: {
        extensions: ["PIPELINING", "SIZE 50000000"],
      },
      capture: true,
      delivery: { retry_schedule: ["1h"] },
      mta: { noStart: true, dkim: ["rsa"] },
    });
    const { mta, mx, capture } = w;
    const utf8 = await spoolFixture(
      mta.spoolDir,
      new TextEncoder().encode("From: alice@ours.test\r\nSubject: utf8\r\n\r\nhi\r\n"),
      { from: "alice@ours.test", recipients: ["jörg@dest.test"] },
    );
    await mta.launch();
    const eightBit = await submit(mta, {
      to: ["bob@dest.test"],
      headers: ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"],
      body: "Grüße aus Köln, 10 € — naïve café\r\n",
    });
    await waitFor(
      "both messages to leave the queue",
      async () => (await isGone(mta, eightBit)) && (await isGone(mta, utf8)),
      15_000,
    );

    // RFC 6152 policy: sent as is (no conversion, which would break the signature).
    const [tx] = await mx.accepted();
    assert.deepEqual(tx.rcpts, ["bob@dest.test"]);
    const received = unstuff(tx.data);
    assert.ok(
      new TextDecoder().decode(received).includes("Grüße aus Köln, 10 € — naïve café\r\n"),
      "8-bit bytes unchanged",
    );
    const verdict = await dkimVerify(mta, received);
    assert.equal(verdict.code, 0, `dkim_verify: ${JSON.stringify(verdict)}`);
    const mails = (await mx.commands()).filter((c) => /^MAIL /i.test(c.line));
    assert.equal(mails.length, 1, "no MAIL FROM for the UTF-8 address");
    assert.doesNotMatch(
      mails[0].line,
      /BODY=8BITMIME|SMTPUTF8/,
      "no parameter the MX did not offer",
    );

    // RFC 6531 §3.2: no downgrade; a DSN to the sender.
    const rcpt = block(await parseDsn(await oneDsn(capture)), "j?rg@dest.test");
    assert.equal(header(rcpt, "Status"), "5.6.7");
    assert.match(header(rcpt, "Diagnostic-Code") ?? "", /SMTPUTF8/);
  },
});

Deno.test({
  name:
    "DLV-19: a TCP reset after the 250 to the dot, or instead of the reply to QUIT: delivered once, never retried",
  ignore: needs,
  async fn(t) {
    for (const reset of ["after_data", "on_quit"] as const) {
      await t.step(reset, async () => {
        await using w = await deliveryWorld({ mx: { reset } });
        const { mta, mx } = w;
        const first = await submit(mta, { to: ["one@dest.test"] });
        await waitFor("the first message to leave the queue", () => isGone(mta, first));
        // The next message finds the pooled connection reset (after_data) or reuses it.
        const second = await submit(mta, { to: ["two@dest.test"] });
        await waitFor("the second message to leave the queue", () => isGone(mta, second));
        // SIGTERM closes the pooled connection with QUIT (answered by a reset for on_quit).
        assert.equal(await mta.stop(), 0);
        await mta.launch();
        await delay(1500); // a retry would come within 1 s
        assert.deepEqual(await mta.queueList(), []);
        const txs = await mx.accepted();
        assert.deepEqual(txs.map((t) => t.rcpts), [["one@dest.test"], ["two@dest.test"]]);
        for (const id of [first, second]) {
          assert.deepEqual(deliveryEvents(mta, id).map((e) => [e.outcome, e.attempt]), [
            ["delivered", 1],
          ]);
        }
        if (reset === "on_quit") {
          const quits = (await mx.commands()).filter((c) => c.line === "QUIT");
          assert.ok(quits.length >= 1, "QUIT was sent and answered by a reset");
        }
      });
    }
  },
});
