/**
 * SMTP smuggling, outbound (TESTPLAN §1.2 SMUG-OUT-01/02/04/05): messages
 * with bare LF, bare CR, `\n.\r\n`, a lone `.` line or no final line break
 * are written straight into the spool (as legacy or corrupt content would
 * be), then delivered. On the wire every CR and LF is part of a CRLF, every
 * line starting with a dot is stuffed, and each message is exactly one
 * transaction ended by the only `CRLF . CRLF`.
 */
import assert from "node:assert/strict";
import { freePorts, Mta, requireTool } from "./_harness.ts";
import {
  bareCrLf,
  deliveryConfig,
  FakeDns,
  FakeMx,
  loopbackNet,
  mxZone,
  spoolFixture,
  text,
  waitFor,
} from "./_mx.ts";

const encoder = new TextEncoder();
const HEAD = "From: alice@ours.test\r\nTo: r@dest.test\r\nSubject: smuggling\r\n\r\n";

/** Spooled body → the exact DATA bytes expected on the wire (terminator included). */
const CASES: { name: string; rcpt: string; body: string; wire: string }[] = [
  {
    name: "SMUG-OUT-01 bare LF and <LF>.<LF>",
    rcpt: "lf@dest.test",
    body: "SMUGGLINGSTART\nx\n.\nMAIL FROM:<admin@ours.test>\nSMUGGLINGEND\r\n",
    wire: "SMUGGLINGSTART\r\nx\r\n..\r\nMAIL FROM:<admin@ours.test>\r\nSMUGGLINGEND\r\n.\r\n",
  },
  {
    name: "SMUG-OUT-01 <LF>.<CR><LF>",
    rcpt: "lfcrlf@dest.test",
    body: "SMUGGLINGSTART\r\nx\n.\r\nRCPT TO:<evil@x.test>\r\nSMUGGLINGEND\r\n",
    wire: "SMUGGLINGSTART\r\nx\r\n..\r\nRCPT TO:<evil@x.test>\r\nSMUGGLINGEND\r\n.\r\n",
  },
  {
    name: "SMUG-OUT-02 bare CR alone and <CR>.<CR><LF>",
    rcpt: "cr@dest.test",
    body: "SMUGGLINGSTART\r\na\rb\r.\r\nDATA\r\nSMUGGLINGEND\r\n",
    wire: "SMUGGLINGSTART\r\na\r\nb\r\n..\r\nDATA\r\nSMUGGLINGEND\r\n.\r\n",
  },
  {
    name: "SMUG-OUT-04 a body line that is just a dot, and a body starting with a dot line",
    rcpt: "dot@dest.test",
    body: ".\r\nmiddle\r\n.\r\n",
    wire: "..\r\nmiddle\r\n..\r\n.\r\n",
  },
  {
    name: "SMUG-OUT-05 no final line break",
    rcpt: "noeol@dest.test",
    body: "last line without a line break",
    wire: "last line without a line break\r\n.\r\n",
  },
];

/** Puts every case in the spool of a daemon that is not yet running; returns id → case. */
async function seed(mta: Mta): Promise<Map<string, (typeof CASES)[number]>> {
  const ids = new Map<string, (typeof CASES)[number]>();
  for (const c of CASES) {
    const id = await spoolFixture(mta.spoolDir, encoder.encode(HEAD + c.body), {
      from: "alice@ours.test",
      recipients: [c.rcpt],
    });
    ids.set(id, c);
  }
  return ids;
}

Deno.test({
  name: "spooled bare CR/LF and dot lines go out as CRLF-only, dot-stuffed, one transaction each",
  ignore: requireTool("python3:dns"),
  async fn() {
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start(mxZone("dest.test", "mx1.dest.test", net(2)));
    await using mx = await FakeMx.start(net(2), port, { name: "mx1.dest.test" });
    await using mta = await Mta.start({
      noStart: true,
      config: { delivery: deliveryConfig({ dns, port }) },
    });
    await seed(mta);
    await mta.launch();
    await waitFor(
      "every message to leave the queue",
      async () => (await mta.spoolFiles("meta")).length === 0,
      15_000,
    );

    const txs = await mx.accepted();
    assert.equal(txs.length, CASES.length, "one transaction per message, no smuggled extra");
    const mails = (await mx.commands()).filter((c) => /^MAIL /i.test(c.line));
    assert.equal(mails.length, CASES.length);
    assert.ok(mails.every((m) => m.line.startsWith("MAIL FROM:<alice@ours.test>")));
    for (const c of CASES) {
      const tx = txs.find((t) => t.rcpts[0] === c.rcpt);
      assert.ok(tx, `${c.name}: not received`);
      assert.deepEqual(tx.rcpts, [c.rcpt]);
      const data = text(tx.data);
      assert.deepEqual(bareCrLf(tx.data), [], `${c.name}: bare CR or LF on the wire`);
      assert.equal(
        data.indexOf("\r\n.\r\n"),
        data.length - 5,
        `${c.name}: one terminator, at the end`,
      );
      assert.equal(data.slice(HEAD.length), c.wire, c.name);
    }
  },
});
