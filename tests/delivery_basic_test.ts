/**
 * The happy path against a scripted receiver: the mail arrives DKIM-signed
 * and the signature verifies on the bytes the receiver got; recipients at
 * one domain share one transaction; two messages to one host share one
 * connection; and the mail log tells the operator what happened.
 */
import assert from "node:assert/strict";
import { Mta, requireTool, waitFor } from "./_harness.ts";
import { deliveryConfig, deliveryEvents, isGone, submit } from "./_delivery.ts";
import { dkimVerify } from "./_dkim.ts";
import { FakeDns, mxZone } from "./_dns.ts";
import { text, unstuff } from "./_mime.ts";
import { FakeMx, loopbackNet } from "./_mx.ts";
import { freePorts } from "./_harness.ts";

const needs = requireTool("python3:dkim", "python3:dns");

Deno.test({
  name: "delivered mail carries a DKIM signature that verifies on the bytes the MX received",
  ignore: needs,
  async fn() {
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start(mxZone("dest.test", "mx1.dest.test", net(2)));
    await using mx = await FakeMx.start(net(2), port, { name: "mx1.dest.test" });
    await using mta = await Mta.start({
      dkim: ["rsa", "ed25519"],
      config: { delivery: deliveryConfig({ dns, port }) },
    });
    const id = await submit(mta, {
      to: ["bob@dest.test"],
      headers: ["From: Alice <alice@ours.test>", "Subject: signed =?utf-8?q?caf=C3=A9?="],
      body: "Line one\r\n.leading dot line\r\n\r\nLast line with trailing spaces   \r\n",
    });
    const [tx] = await waitFor(
      "the MX to accept the message",
      () => mx.accepted().then((t) => t.length > 0 && t),
    );
    assert.equal(tx.mail_from, "alice@ours.test");
    assert.deepEqual(tx.rcpts, ["bob@dest.test"]);
    const received = unstuff(tx.data);
    assert.match(text(received), /^\.leading dot line\r$/m, "dot-stuffing undone by the receiver");
    const verdict = await dkimVerify(mta, received);
    assert.equal(verdict.code, 0, `dkim_verify: ${JSON.stringify(verdict)}`);
    assert.deepEqual(
      verdict.results.map((r) => [r.d, r.a, r.ok]).sort(),
      [["ours.test", "ed25519-sha256", true], ["ours.test", "rsa-sha256", true]],
    );
    await waitFor("the message to leave the queue", () => isGone(mta, id));
  },
});

Deno.test({
  name: "three recipients at one domain go in one transaction: one MAIL, three RCPT, one DATA",
  ignore: needs,
  async fn() {
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start(mxZone("dest.test", "mx1.dest.test", net(2)));
    await using mx = await FakeMx.start(net(2), port, { name: "mx1.dest.test" });
    await using mta = await Mta.start({ config: { delivery: deliveryConfig({ dns, port }) } });
    const to = ["a@dest.test", "b@dest.test", "c@dest.test"];
    const id = await submit(mta, { to });
    await waitFor("the message to leave the queue", () => isGone(mta, id));
    const txs = await mx.transactions();
    assert.equal(txs.length, 1, "exactly one transaction");
    assert.deepEqual([...txs[0].rcpts].sort(), to);
    const verbs = (await mx.commands()).map((c) => c.line.split(/[ :]/)[0].toUpperCase());
    assert.deepEqual(verbs.filter((v) => ["MAIL", "RCPT", "DATA"].includes(v)), [
      "MAIL",
      "RCPT",
      "RCPT",
      "RCPT",
      "DATA",
    ]);
    const events = deliveryEvents(mta, id);
    assert.deepEqual(events.map((e) => e.recipient).sort(), to);
    assert.ok(
      events.every((e) => e.outcome === "delivered" && e.code === 250),
      JSON.stringify(events),
    );
  },
});

/** Submits one message to `to` and waits until it has left the queue. */
async function deliver(mta: Mta, to: string): Promise<void> {
  const id = await submit(mta, { to: [to] });
  await waitFor(`the message to ${to} to leave the queue`, () => isGone(mta, id));
}

Deno.test({
  name: "two messages to one MX host reuse one connection",
  ignore: needs,
  async fn() {
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start(mxZone("dest.test", "mx1.dest.test", net(2)));
    await using mx = await FakeMx.start(net(2), port, { name: "mx1.dest.test" });
    await using mta = await Mta.start({ config: { delivery: deliveryConfig({ dns, port }) } });
    await deliver(mta, "one@dest.test");
    await deliver(mta, "two@dest.test");
    const txs = await mx.transactions();
    assert.deepEqual(txs.map((t) => t.rcpts), [["one@dest.test"], ["two@dest.test"]]);
    assert.equal(await mx.connections(), 1, "the second message went over the first connection");
    assert.equal(txs[0].conn, txs[1].conn);
  },
});

Deno.test({
  name: "mail for two domains with the same MX host goes over one connection",
  ignore: needs,
  async fn() {
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start({
      "shop.test": { MX: [[10, "mx.hosting.test"]] },
      "club.test": { MX: [[10, "mx.hosting.test"]] },
      "mx.hosting.test": { A: [net(2)] },
    });
    await using mx = await FakeMx.start(net(2), port, { name: "mx.hosting.test" });
    await using mta = await Mta.start({ config: { delivery: deliveryConfig({ dns, port }) } });
    await deliver(mta, "ann@shop.test");
    await deliver(mta, "bob@club.test");
    const txs = await mx.transactions();
    assert.deepEqual(txs.map((t) => t.rcpts), [["ann@shop.test"], ["bob@club.test"]]);
    assert.equal(await mx.connections(), 1, "club.test's message went over shop.test's connection");
  },
});

Deno.test({
  name:
    "a connection is shared by MX host name, and one to a backup MX only with the domain that used it",
  ignore: needs,
  async fn() {
    const net = loopbackNet();
    const [port] = freePorts(1);
    // Both names lead to the same address: with delivery.tls verify the
    // certificate is checked against the name, so they are not one host.
    // backup.test's best MX does not answer; its backup is mx.hosting.test.
    await using dns = await FakeDns.start({
      "shop.test": { MX: [[10, "mx.hosting.test"]] },
      "alias.test": { MX: [[10, "other-name.hosting.test"]] },
      "backup.test": { MX: [[10, "down.backup.test"], [20, "mx.hosting.test"]] },
      "mx.hosting.test": { A: [net(2)] },
      "other-name.hosting.test": { A: [net(2)] },
      "down.backup.test": { A: [net(3)] },
    });
    await using mx = await FakeMx.start(net(2), port, { name: "mx.hosting.test" });
    await using mta = await Mta.start({ config: { delivery: deliveryConfig({ dns, port }) } });
    await deliver(mta, "ann@shop.test");
    await deliver(mta, "bob@alias.test");
    assert.equal(await mx.connections(), 2, "another host name opens its own connection");
    // To backup.test: its best MX refuses, so mx.hosting.test takes it over a
    // new connection (shop.test's is not used for a backup MX) ...
    await deliver(mta, "cat@backup.test");
    assert.equal(await mx.connections(), 3);
    // ... and that one carries backup.test's next message.
    await deliver(mta, "dan@backup.test");
    assert.equal(await mx.connections(), 3, "backup.test's second message reused its connection");
    const txs = await mx.transactions();
    assert.equal(txs[2].conn, txs[3].conn);
  },
});

Deno.test({
  name:
    "the delivery log event has queue id, recipient, relay, code, status, text, outcome, attempt, delay and tls",
  ignore: needs,
  async fn() {
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start(mxZone("dest.test", "mx1.dest.test", net(2)));
    await using _mx = await FakeMx.start(net(2), port, {
      name: "mx1.dest.test",
      data: ["250 2.0.0 Ok: queued as FAKE123"],
    });
    await using mta = await Mta.start({ config: { delivery: deliveryConfig({ dns, port }) } });
    const id = await submit(mta, { to: ["bob@dest.test"] });
    await waitFor("the message to leave the queue", () => isGone(mta, id));
    const [event] = deliveryEvents(mta, id);
    assert.ok(event, "a delivery event was logged");
    assert.equal(event.queue_id, id);
    assert.equal(event.recipient, "bob@dest.test");
    assert.equal(event.relay, `mx1.dest.test[${net(2)}]`);
    assert.equal(event.code, 250);
    assert.equal(event.status, "2.0.0");
    assert.match(String(event.text), /Ok: queued as FAKE123/);
    assert.equal(event.outcome, "delivered");
    assert.equal(event.attempt, 1);
    assert.equal(typeof event.delay_s, "number");
    assert.ok((event.delay_s as number) >= 0 && (event.delay_s as number) < 30);
    assert.deepEqual(event.tls, { used: false, version: null, verified: false });
  },
});
