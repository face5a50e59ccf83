/**
 * SMTP smuggling, outbound (TESTPLAN §1.2 SMUG-OUT-01/02/03/04/05): messages
 * with bare LF, bare CR, `\n.\r\n`, NUL before or after a dot, a lone `.`
 * line or no final line break are written straight into the spool (as
 * legacy or corrupt content would be), then delivered. On the wire every CR
 * and LF is part of a CRLF, there is no NUL, every line starting with a dot
 * is stuffed, and each message is exactly one transaction ended by the only
 * `CRLF . CRLF`. SMUG-OUT-07: the same payloads submitted through the intake
 * (bare_newline: normalize) are DKIM-signed as they are sent, so the
 * signatures verify on the bytes the MX received.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { dkimVerify as dkimVerifyMailauth } from "mailauth/lib/dkim/verify.js";
import { bareLineEnds, freePorts, Mta, requireTool, spoolFixture, waitFor } from "./_harness.ts";
import { deliveryConfig } from "./_delivery.ts";
import { dkimVerify } from "./_dkim.ts";
import { FakeDns, mxZone } from "./_dns.ts";
import { text, unstuff } from "./_mime.ts";
import { FakeMx, loopbackNet } from "./_mx.ts";

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
    // The intake refuses NUL (554, tests/submission_smuggling_test.ts); spooled anyway,
    // it is dropped, so a receiver that strips NUL never sees CRLF . CRLF early.
    name: "SMUG-OUT-03 NUL before a dot (<CR><LF><NUL>.<CR><LF>), after one, and inside a line",
    rcpt: "nul@dest.test",
    body: "SMUGGLINGSTART\r\n\0.\r\nMAIL FROM:<admin@ours.test>\r\n.\0\r\nx\0y\r\nSMUGGLINGEND\r\n",
    wire:
      "SMUGGLINGSTART\r\n..\r\nMAIL FROM:<admin@ours.test>\r\n..\r\nxy\r\nSMUGGLINGEND\r\n.\r\n",
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
  name:
    "SMUG-OUT-01/02/03/04/05: spooled bare CR/LF, NUL and dot lines go out as CRLF-only, NUL-free, dot-stuffed, one transaction each",
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
      async () => (await mta.spoolFiles("msg")).length === 0,
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
      assert.deepEqual(bareLineEnds(tx.data), [], `${c.name}: bare CR or LF on the wire`);
      assert.ok(!tx.data.includes(0), `${c.name}: NUL on the wire`);
      assert.equal(
        data.indexOf("\r\n.\r\n"),
        data.length - 5,
        `${c.name}: one terminator, at the end`,
      );
      assert.equal(data.slice(HEAD.length), c.wire, c.name);
    }
  },
});

/** The EOD_X sequences of TESTPLAN §1.1 that the intake stores (NUL is refused). */
const EODS = [
  "\n.\n",
  "\n.\r\n",
  "\r\n.\n",
  "\r.\r\n",
  "\r.\r",
  "\r.\n",
  "\n.\r",
  "\r\n.\r",
  "\r\r\n.\r\r\n",
  "\r\n.\r\r\n",
  "\n..\r\n",
];

/** DKIM key records for mailauth's resolver: name → TXT strings. */
function mailauthResolver(mta: Mta) {
  const txt = new Map(mta.dkim.map((d) => [`${d.selector}._domainkey.${d.domain}`, d.dnsTxt]));
  return (name: string, type: string) => {
    const record = type === "TXT" ? txt.get(name) : undefined;
    if (record === undefined) {
      return Promise.reject(Object.assign(new Error(`${name} not found`), { code: "ENOTFOUND" }));
    }
    return Promise.resolve([[record]]);
  };
}

Deno.test({
  name:
    "SMUG-OUT-07: smuggling payloads submitted with bare_newline: normalize are signed as sent: DKIM verifies on the received bytes (python3-dkim and mailauth)",
  ignore: requireTool("python3:dns", "python3:dkim"),
  async fn() {
    // opendkim-testmsg (the TESTPLAN's other verifier) is not used: the Debian 12 build
    // (2.11.0~beta2) answers "dkim_chunk(): Syntax error" to any message, even unsigned.
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start(mxZone("dest.test", "mx1.dest.test", net(2)));
    await using mx = await FakeMx.start(net(2), port, { name: "mx1.dest.test" });
    await using mta = await Mta.start({
      dkim: ["rsa", "ed25519"],
      config: {
        server: { bare_newline: "normalize" },
        delivery: deliveryConfig({ dns, port }),
      },
    });
    for (const [i, eod] of EODS.entries()) {
      using smtp = await mta.authed();
      await smtp.cmd("MAIL FROM:<alice@ours.test>", 250);
      await smtp.cmd(`RCPT TO:<eod${i}@dest.test>`, 250);
      await smtp.cmd("DATA", 354);
      await smtp.write(
        `From: alice@ours.test\r\nTo: eod${i}@dest.test\r\nSubject: signed ${i}\r\n\r\n` +
          `SMUGGLINGSTART${eod}MAIL FROM:<admin@ours.test>\r\n..lone dot follows\r\n..\r\n` +
          `SMUGGLINGEND\r\n.\r\n`,
      );
      await smtp.expect(250);
      await smtp.cmd("QUIT", 221);
    }
    await waitFor(
      "every message to leave the queue",
      async () => (await mta.spoolFiles("msg")).length === 0,
      20_000,
    );
    const txs = await mx.accepted();
    assert.equal(txs.length, EODS.length, "one transaction per message");
    const resolver = mailauthResolver(mta);
    for (const tx of txs) {
      const what = `${tx.rcpts[0]} (${JSON.stringify(EODS[Number(tx.rcpts[0].slice(3, -10))])})`;
      assert.deepEqual(bareLineEnds(tx.data), [], `${what}: bare CR or LF on the wire`);
      const data = text(tx.data);
      assert.equal(data.indexOf("\r\n.\r\n"), data.length - 5, `${what}: one terminator`);
      const received = unstuff(tx.data);
      const dkimpy = await dkimVerify(mta, received);
      assert.equal(dkimpy.code, 0, `${what}: python3-dkim ${JSON.stringify(dkimpy)}`);
      assert.equal(dkimpy.results.length, 2);
      const byMailauth = await dkimVerifyMailauth(Buffer.from(received), { resolver });
      assert.deepEqual(
        byMailauth.results.map((r) => r.status.result),
        ["pass", "pass"],
        `${what}: mailauth ${JSON.stringify(byMailauth.results.map((r) => r.status))}`,
      );
    }
  },
});
