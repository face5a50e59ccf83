/**
 * The envelope sender is never rewritten (issue 12, item 3): list managers
 * encode the subscriber in a VERP return path (`bounces+ID-HASH=domain@…`,
 * with `+` and `=`) and the campaign in `X-…` headers, and read both back
 * from the bounce. Pinned here against a real receiving server
 * (tests/fakes/fake_mx.py): MAIL FROM arrives byte for byte, and the DSN
 * goes to that address with the original headers in text/rfc822-headers.
 */
import assert from "node:assert/strict";
import { CAROL, freePorts, Mta, requireTool, waitFor } from "./_harness.ts";
import { deliveryConfig, submit } from "./_delivery.ts";
import { FakeDns } from "./_dns.ts";
import { header, parseMime, unstuff } from "./_mime.ts";
import { FakeMx, loopbackNet } from "./_mx.ts";

const needs = requireTool("python3:dns");
const VERP = "bounces+123-abc=example.org@ours.test";

Deno.test({
  name:
    "VERP: the sender with + and = arrives unchanged; its DSN carries the list manager's X- headers",
  ignore: needs,
  async fn() {
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start({
      "dest.test": { MX: [[10, "mx.dest.test"]] },
      "mx.dest.test": { A: [net(2)] },
      "ours.test": { MX: [[10, "mx.ours.test"]] },
      "mx.ours.test": { A: [net(9)] },
    });
    await using dest = await FakeMx.start(net(2), port, {
      name: "mx.dest.test",
      rcpt: { "gone@dest.test": "550 5.1.1 No such user" },
    });
    await using ours = await FakeMx.start(net(9), port, { name: "mx.ours.test" });
    await using mta = await Mta.start({
      config: { delivery: deliveryConfig({ dns, port, retry_schedule: ["1h"] }) },
    });
    const campaign = [
      "From: Newsletter <news@ours.test>",
      "X-Listmonk-Campaign: 42",
      "X-Listmonk-Subscriber: 7f3c2a90-1b2c-4d5e-8f90-abcdef012345",
      "List-Unsubscribe: <https://lists.ours.test/u/7f3c2a90>",
    ];
    // alice may use any address at ours.test (her email's domain), VERP ones included.
    await submit(mta, { from: VERP, to: ["ok@dest.test", "gone@dest.test"], headers: campaign });

    const [delivered] = await waitFor("the delivery", async () => {
      const txs = await dest.accepted();
      return txs.length > 0 && txs;
    });
    assert.equal(delivered.mail_from, VERP, "MAIL FROM unchanged");
    assert.deepEqual(delivered.rcpts, ["ok@dest.test"]);
    const mailLines = (await dest.commands()).filter((c) => /^MAIL FROM:/i.test(c.line));
    assert.ok(mailLines.every((c) => c.line.startsWith(`MAIL FROM:<${VERP}>`)), "on the wire too");

    const [dsn] = await waitFor("the DSN at the sender's MX", async () => {
      const txs = await ours.accepted();
      return txs.length > 0 && txs;
    });
    assert.equal(dsn.mail_from, "", "null reverse-path");
    assert.deepEqual(dsn.rcpts, [VERP], "the bounce goes back to the VERP address");
    const top = await parseMime(unstuff(dsn.data));
    assert.equal(header(top, "To"), `<${VERP}>`);
    const original = top.parts.find((p) => p.content_type === "text/rfc822-headers");
    assert.ok(original, `parts: ${top.parts.map((p) => p.content_type)}`);
    assert.match(original.text ?? "", /^X-Listmonk-Campaign: 42\r?$/m);
    assert.match(
      original.text ?? "",
      /^X-Listmonk-Subscriber: 7f3c2a90-1b2c-4d5e-8f90-abcdef012345\r?$/m,
    );
    assert.match(
      original.text ?? "",
      /^List-Unsubscribe: <https:\/\/lists\.ours\.test\/u\/7f3c2a90>\r?$/m,
    );
    const status = top.parts.find((p) => p.content_type === "message/delivery-status");
    const block = status?.parts.find((b) =>
      header(b, "Final-Recipient") === "rfc822; gone@dest.test"
    );
    assert.equal(block && header(block, "Status"), "5.1.1");
  },
});

Deno.test("VERP: a user allowed only its own address may not use a VERP sender", async () => {
  await using mta = await Mta.start();
  const smtp = await mta.authed(CAROL);
  try {
    const reply = await smtp.cmd(`MAIL FROM:<bounces+1-x=example.org@ours.test>`);
    assert.equal(reply.code, 553);
    await smtp.cmd("QUIT");
  } finally {
    smtp.close();
  }
});
