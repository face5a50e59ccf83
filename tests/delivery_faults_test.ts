/**
 * Remote faults and DNS faults (TESTPLAN §4): temporary replies are retried
 * on schedule, permanent ones bounce with an RFC 3464 DSN that is itself
 * delivered to the sender's MX, DNS outages never bounce, the next MX is
 * tried when the first refuses, and a dropped DATA ends in exactly one copy.
 */
import assert from "node:assert/strict";
import { freePorts, Mta, requireTool } from "./_harness.ts";
import {
  deliveryConfig,
  deliveryEvents,
  FakeDns,
  FakeMx,
  header,
  isGone,
  loopbackNet,
  mailEvents,
  type MimePart,
  type MxTransaction,
  parseMime,
  sleep,
  SmtpSink,
  submit,
  unstuff,
  waitFor,
  type Zone,
} from "./_mx.ts";

const needs = requireTool("python3:dns");

/** The test's world: recipient domain dest.test on MX net(2), our domain ours.test on net(9). */
function zone(net: (n: number) => string, extra: Zone = {}): Zone {
  return {
    "dest.test": { MX: [[10, "mx1.dest.test"]] },
    "mx1.dest.test": { A: [net(2)] },
    "ours.test": { MX: [[10, "mx.ours.test"]] },
    "mx.ours.test": { A: [net(9)] },
    ...extra,
  };
}

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
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start(zone(net));
    await using mx = await FakeMx.start(net(2), port, {
      name: "mx1.dest.test",
      data: ["451 4.3.0 Temporary local problem (fake_mx)", "250 2.0.0 Ok"],
    });
    await using mta = await Mta.start({
      config: { delivery: deliveryConfig({ dns, port, retry_schedule: ["4s"] }) },
    });
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
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start(zone(net));
    await using mx = await FakeMx.start(net(2), port, {
      name: "mx1.dest.test",
      rcpt: {
        "bad@dest.test": "550 5.1.1 <bad@dest.test>: Recipient address rejected: User unknown",
      },
    });
    await using capture = await FakeMx.start(net(9), port, { name: "mx.ours.test" });
    await using mta = await Mta.start({ config: { delivery: deliveryConfig({ dns, port }) } });
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
      async () => (await mta.spoolFiles("meta")).length === 0,
    );
    assert.equal(mailEvents(mta, "bounced").length, 1);
  },
});

Deno.test({
  name:
    "a recipient still deferred after max_queue_lifetime bounces with the last remote diagnostic",
  ignore: needs || requireTool("smtp-sink"),
  async fn() {
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start(zone(net));
    // Real Postfix smtp-sink answering every RCPT with a 4xx.
    await using _sink = await SmtpSink.start(net(2), port, [
      "-r",
      "RCPT",
      "-b",
      "450 4.2.1 Mailbox busy, try later (smtp-sink)",
    ]);
    await using capture = await FakeMx.start(net(9), port, { name: "mx.ours.test" });
    await using mta = await Mta.start({
      config: { delivery: deliveryConfig({ dns, port, max_queue_lifetime: "3s" }) },
    });
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
    await sleep(1500);
    assert.equal((await capture.accepted()).length, 1, "exactly one DSN");
  },
});

Deno.test({
  name: "null MX and NXDOMAIN recipient domains bounce on the first attempt, in one DSN",
  ignore: needs,
  async fn() {
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start(zone(net, {
      "null.test": { MX: [[0, "."]] },
      "nx.test": { rcode: "NXDOMAIN" },
    }));
    await using capture = await FakeMx.start(net(9), port, { name: "mx.ours.test" });
    await using mta = await Mta.start({
      config: { delivery: deliveryConfig({ dns, port, retry_schedule: ["1h"] }) },
    });
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
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start(zone(net, { "sf.test": { rcode: "SERVFAIL" } }));
    await using capture = await FakeMx.start(net(9), port, { name: "mx.ours.test" });
    await using mta = await Mta.start({ config: { delivery: deliveryConfig({ dns, port }) } });
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
    "the first MX refuses (nothing listening, or a 5xx greeting from smtp-sink): the second MX gets the mail",
  ignore: needs || requireTool("smtp-sink"),
  async fn(t) {
    for (const first of ["closed", "5xx greeting"] as const) {
      await t.step(first, async () => {
        const net = loopbackNet();
        const [port] = freePorts(1);
        await using dns = await FakeDns.start(zone(net, {
          "dest.test": { MX: [[20, "mx2.dest.test"], [10, "mx1.dest.test"]] },
          "mx2.dest.test": { A: [net(3)] },
        }));
        await using _sink = first === "closed" ? null : await SmtpSink.start(net(2), port, [
          "-f",
          "CONNECT",
          "-B",
          "554 5.3.2 No service here (smtp-sink)",
        ]);
        await using mx2 = await FakeMx.start(net(3), port, { name: "mx2.dest.test" });
        await using mta = await Mta.start({ config: { delivery: deliveryConfig({ dns, port }) } });
        const id = await submit(mta, { to: ["bob@dest.test"] });
        await waitFor("the message to leave the queue", () => isGone(mta, id));
        assert.equal((await mx2.accepted()).length, 1);
        const events = deliveryEvents(mta, id);
        assert.deepEqual(events.map((e) => [e.outcome, e.attempt, e.relay]), [
          ["delivered", 1, `mx2.dest.test[${net(3)}]`],
        ]);
        assert.equal(mailEvents(mta, "bounced").length, 0, "a 5xx greeting does not bounce");
      });
    }
  },
});

Deno.test({
  name: "connection dropped in the middle of DATA: deferred, then delivered exactly once",
  ignore: needs,
  async fn() {
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start(zone(net));
    await using mx = await FakeMx.start(net(2), port, {
      name: "mx1.dest.test",
      drop_after_bytes: [300, null],
    });
    await using mta = await Mta.start({ config: { delivery: deliveryConfig({ dns, port }) } });
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
    const net = loopbackNet();
    const [port] = freePorts(1);
    const world = zone(net);
    delete world["ours.test"];
    await using dns = await FakeDns.start(world);
    await using _mx = await FakeMx.start(net(2), port, {
      name: "mx1.dest.test",
      rcpt_default: "550 5.1.1 No such user",
    });
    await using mta = await Mta.start({ config: { delivery: deliveryConfig({ dns, port }) } });
    const id = await submit(mta, { to: ["nobody@dest.test"] });
    await waitFor("the message to leave the queue", () => isGone(mta, id));
    await waitFor("the spool to be empty", async () => (await mta.spoolFiles("meta")).length === 0);
    await sleep(2000);
    assert.deepEqual(await mta.spoolFiles("meta"), [], "nothing new queued");
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
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start(zone(net));
    // smtp-sink answers DATA with 354, then at once 550 and stops reading.
    await using _sink = await SmtpSink.start(net(2), port, ["-A", "0"]);
    await using capture = await FakeMx.start(net(9), port, { name: "mx.ours.test" });
    await using mta = await Mta.start({
      config: { delivery: deliveryConfig({ dns, port, retry_schedule: ["1h"] }) },
    });
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
