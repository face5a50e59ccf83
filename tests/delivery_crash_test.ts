/**
 * kill -9 of the daemon while a delivery waits for the reply to the final
 * dot (TESTPLAN D4 (b), D5, DUP): after a restart every recipient is
 * delivered at least once, none is lost, a domain already done is not sent
 * again, and any duplicate is byte-identical with the same Message-ID.
 */
import assert from "node:assert/strict";
import { freePorts, Mta, requireTool } from "./_harness.ts";
import {
  deliveryConfig,
  deliveryEvents,
  FakeDns,
  FakeMx,
  isGone,
  loopbackNet,
  sleep,
  submit,
  text,
  unstuff,
  waitFor,
} from "./_mx.ts";

Deno.test({
  name: "kill -9 while the MX delays its reply to the final dot: after restart nothing is lost",
  ignore: requireTool("python3:dns"),
  async fn() {
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start({
      "dest.test": { MX: [[10, "mx1.dest.test"]] },
      "mx1.dest.test": { A: [net(2)] },
      "other.test": { MX: [[10, "mx1.other.test"]] },
      "mx1.other.test": { A: [net(3)] },
    });
    // The first transaction's 250 comes 8 s after the dot; later ones at once.
    await using slow = await FakeMx.start(net(2), port, {
      name: "mx1.dest.test",
      delay_ms: [8000, 0],
    });
    await using fast = await FakeMx.start(net(3), port, { name: "mx1.other.test" });
    await using mta = await Mta.start({
      config: { delivery: deliveryConfig({ dns, port, data_timeout: "20s" }) },
    });
    const id = await submit(mta, {
      to: ["a@dest.test", "b@dest.test", "c@other.test"],
      headers: ["Message-ID: <crash-test-1@ours.test>"],
    });
    await waitFor(
      "the slow MX to have the whole message",
      async () => (await slow.transactions()).length === 1,
    );
    await waitFor(
      "other.test to be delivered",
      () =>
        deliveryEvents(mta, id).some((e) =>
          e.recipient === "c@other.test" && e.outcome === "delivered"
        ),
    );
    await sleep(300); // its state write follows the log line
    await mta.kill9();

    await mta.launch();
    await waitFor(
      "the message to leave the queue after the restart",
      () => isGone(mta, id),
      20_000,
    );

    const copies = await slow.accepted();
    assert.ok(copies.length >= 1 && copies.length <= 2, `${copies.length} copies at dest.test`);
    for (const rcpt of ["a@dest.test", "b@dest.test"]) {
      assert.ok(copies.some((t) => t.rcpts.includes(rcpt)), `${rcpt} delivered`);
    }
    const bodies = copies.map((t) => text(unstuff(t.data)));
    assert.ok(bodies.every((b) => b.includes("Message-ID: <crash-test-1@ours.test>")));
    assert.ok(bodies.every((b) => b === bodies[0]), "a duplicate is byte-identical (DUP-4)");
    assert.equal((await fast.accepted()).length, 1, "other.test was not sent again (D5)");
    const after = deliveryEvents(mta, id).filter((e) => e.recipient === "c@other.test");
    assert.equal(after.length, 1, "no attempt for the recipient already delivered");
  },
});
