/**
 * TESTPLAN §1.3 (STARTTLS injection), §1.5 (no open relay, routing after
 * AUTH), §1.6 (authentication), §1.7 (sender spoofing by an authenticated
 * user) and §1.8 (injection through addresses and PTR names), against the
 * real daemon with a raw SMTP driver; routing is checked against a fake DNS
 * and capture MXs.
 */
import assert from "node:assert/strict";
import {
  ALICE,
  CAROL,
  freePorts,
  Mta,
  plainBlob,
  PYTHON,
  queuedId,
  requireTool,
  run,
  type SmtpDriver,
  waitFor,
} from "./_harness.ts";
import { deliveryConfig, deliveryEvents, isGone } from "./_delivery.ts";
import { FakeDns } from "./_dns.ts";
import { text, unstuff } from "./_mime.ts";
import { FakeMx, loopbackNet } from "./_mx.ts";

async function greeted(mta: Mta): Promise<SmtpDriver> {
  const smtp = await mta.connect();
  await smtp.expect(220);
  return smtp;
}

Deno.test("STARTTLS and relay: injected plaintext is dropped, nothing relays without AUTH", async (t) => {
  await using mta = await Mta.start();

  await t.step("TLS-S-01: RSET pipelined after STARTTLS gets no reply inside TLS", async () => {
    using smtp = await greeted(mta);
    await smtp.write("EHLO t.test\r\nSTARTTLS\r\nRSET\r\n");
    await smtp.expect(250);
    await smtp.expect(220);
    await smtp.upgrade();
    // The first reply inside TLS must be the EHLO's multi-line 250, not
    // the one-line 250 an injected RSET would have produced.
    const ehlo = await smtp.cmd("EHLO t.test", 250);
    assert.ok(ehlo.lines.length > 1, `first TLS reply is not the EHLO reply: ${ehlo.raw}`);
    assert.match(ehlo.lines[0], /mx\.ours\.test/);
  });

  await t.step(
    "TLS-S-02: commands and valid credentials injected before TLS leave no state",
    async () => {
      using smtp = await greeted(mta);
      await smtp.cmd("EHLO t.test", 250);
      await smtp.write(
        "STARTTLS\r\nEHLO injected.test\r\n" +
          `AUTH PLAIN ${plainBlob("", ALICE.user, ALICE.pass)}\r\n` +
          "MAIL FROM:<alice@ours.test>\r\nRCPT TO:<attacker@x.test>\r\nDATA\r\n",
      );
      await smtp.expect(220);
      await smtp.upgrade();
      const mail = await smtp.cmd("MAIL FROM:<alice@ours.test>");
      assert.equal(mail.code, 503, `MAIL right after TLS: ${mail.raw}`);
      await smtp.cmd("EHLO real.test", 250);
      assert.equal((await smtp.cmd("MAIL FROM:<alice@ours.test>")).code, 530);
    },
  );

  const D = "relay.test";
  const I = "[127.0.0.1]";
  const S = "mx.ours.test";
  // nmap smtp-open-relay's 16 classic pairs (TESTPLAN §1.5).
  const pairs: [string, string][] = [
    ["<>", `<relaytest@${D}>`],
    [`<antispam@${D}>`, `<relaytest@${D}>`],
    [`<antispam@${S}>`, `<relaytest@${D}>`],
    [`<antispam@${I}>`, `<relaytest@${D}>`],
    ...[
      `<relaytest%${D}@${I}>`,
      `<relaytest%${D}@${S}>`,
      `<"relaytest@${D}">`,
      `<"relaytest%${D}">`,
      `<relaytest@${D}@${I}>`,
      `<"relaytest@${D}"@${I}>`,
      `<relaytest@${D}@${S}>`,
      `<@${I}:relaytest@${D}>`,
      `<@${S}:relaytest@${D}>`,
      `<${D}!relaytest>`,
      `<${D}!relaytest@${I}>`,
      `<${D}!relaytest@${S}>`,
    ].map((rcpt): [string, string] => [`<antispam@${I}>`, rcpt]),
  ];
  for (const tls of [false, true]) {
    await t.step(
      `no relay without AUTH ${tls ? "after STARTTLS" : "on plaintext"}: MAIL gets 530`,
      async () => {
        for (const [from, to] of pairs) {
          using smtp = await greeted(mta);
          await smtp.cmd("EHLO t.test", 250);
          if (tls) {
            await smtp.startTls();
            await smtp.cmd("EHLO t.test", 250);
          }
          const mail = await smtp.cmd(`MAIL FROM:${from}`);
          assert.equal(mail.code, 530, `MAIL FROM:${from} -> ${mail.raw}`);
          const rcpt = await smtp.cmd(`RCPT TO:${to}`);
          assert.ok(rcpt.code >= 500, `RCPT TO:${to} -> ${rcpt.raw}`);
          assert.ok((await smtp.cmd("DATA")).code >= 500);
        }
      },
    );
  }

  await t.step("RELAY-06: domain-literal recipients are refused even after AUTH", async () => {
    using smtp = await mta.authed();
    await smtp.cmd("MAIL FROM:<alice@ours.test>", 250);
    for (const rcpt of ["u@[127.0.0.1]", "u@[10.0.0.1]", "u@[IPv6:::1]", "u@[169.254.1.1]"]) {
      const reply = await smtp.cmd(`RCPT TO:<${rcpt}>`);
      assert.ok(reply.code >= 500 && reply.code < 600, `RCPT TO:<${rcpt}> -> ${reply.raw}`);
    }
    assert.ok((await smtp.cmd("DATA")).code >= 500, "DATA without a recipient");
  });

  await t.step(
    "RELAY-04/05: a quoted local part holding an @, and a second @, get 501 even after AUTH",
    async () => {
      using smtp = await mta.authed();
      await smtp.cmd("MAIL FROM:<alice@ours.test>", 250);
      for (const rcpt of ['"user@victim.test"@dest.test', "user@victim.test@dest.test"]) {
        const reply = await smtp.cmd(`RCPT TO:<${rcpt}>`);
        assert.equal(reply.code, 501, `RCPT TO:<${rcpt}> -> ${reply.raw}`);
      }
      assert.ok((await smtp.cmd("DATA")).code >= 500, "DATA without a recipient");
    },
  );

  await t.step(
    "INJ-02: NUL or CR LF inside an address gets 501; what follows the CR LF is a separate, unknown command",
    async () => {
      using smtp = await mta.authed();
      await smtp.cmd("MAIL FROM:<alice@ours.test>", 250);
      const nul = await smtp.cmd("RCPT TO:<v\0@c.test>");
      assert.equal(nul.code, 501, nul.raw);
      await smtp.write('RCPT TO:<"x\r\ny"@c.test>\r\n');
      const head = await smtp.reply();
      assert.equal(head.code, 501, head.raw);
      const tail = await smtp.reply();
      assert.equal(tail.code, 500, `'y"@c.test>' as a command: ${tail.raw}`);
      assert.ok((await smtp.cmd("DATA")).code >= 500, "no recipient was taken");
    },
  );

  await t.step(
    "RELAY-08: a message with 60 Received: fields gets 554 5.4.6 (mail loop) and is not stored",
    async () => {
      using smtp = await mta.authed();
      await smtp.cmd("MAIL FROM:<alice@ours.test>", 250);
      await smtp.cmd("RCPT TO:<loop@remote.test>", 250);
      await smtp.cmd("DATA", 354);
      const hops = Array.from(
        { length: 60 },
        (_, i) =>
          `Received: from hop${i}.test by hop${i + 1}.test; Sun, 22 Nov 2026 00:00:00 +0000`,
      );
      const reply = await smtp.cmd(
        `${hops.join("\r\n")}\r\nFrom: alice@ours.test\r\nSubject: loop\r\n\r\nround again\r\n.`,
      );
      assert.equal(reply.code, 554, reply.raw);
      assert.match(reply.raw, /5\.4\.6/);
      assert.deepEqual(await mta.spoolFiles("msg"), []);
    },
  );

  await t.step(
    "RELAY-10: the daemon listens on the two submission ports and nothing else (no port 25)",
    async () => {
      assert.deepEqual(
        await listeningPorts(mta.pid),
        [mta.port, mta.tlsPort].sort((a, b) => a - b),
      );
    },
  );

  assert.deepEqual(await mta.spoolMetas(), []);
  assert.equal(await mta.stop(), 0);
});

/** TCP ports process `pid` listens on, from /proc (no ss needed). */
async function listeningPorts(pid: number): Promise<number[]> {
  const inodes = new Set<string>();
  for await (const fd of Deno.readDir(`/proc/${pid}/fd`)) {
    const target = await Deno.readLink(`/proc/${pid}/fd/${fd.name}`).catch(() => "");
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m) inodes.add(m[1]);
  }
  const ports = new Set<number>();
  for (const table of ["tcp", "tcp6"]) {
    const rows = (await Deno.readTextFile(`/proc/${pid}/net/${table}`)).trim().split("\n").slice(1);
    for (const row of rows) {
      // sl local_address rem_address st ... uid timeout inode
      const cols = row.trim().split(/\s+/);
      if (cols[3] === "0A" && inodes.has(cols[9])) ports.add(parseInt(cols[1].split(":")[1], 16));
    }
  }
  return [...ports].sort((a, b) => a - b);
}

Deno.test("AUTH: only over TLS, failures answered alike, throttled, never logged", async (t) => {
  await using mta = await Mta.start();
  const blobs: string[] = [];
  const secrets = [ALICE.pass, "wrong-Password-1", "wrong-Password-2"];
  const blob = (authzid: string, user: string, pass: string) => {
    const b = plainBlob(authzid, user, pass);
    blobs.push(b);
    return b;
  };

  await t.step("AUTH-02: EHLO before TLS does not offer AUTH; after TLS it does", async () => {
    using smtp = await greeted(mta);
    const before = await smtp.cmd("EHLO t.test", 250);
    assert.ok(!before.lines.some((l) => /^AUTH\b/i.test(l)), before.raw);
    assert.ok(before.lines.includes("STARTTLS"), before.raw);
    await smtp.startTls();
    const after = await smtp.cmd("EHLO t.test", 250);
    assert.ok(after.lines.some((l) => /^AUTH\b.*PLAIN/.test(l) && /LOGIN/.test(l)), after.raw);
  });

  await t.step("AUTH-01: AUTH before TLS is refused, even with valid credentials", async () => {
    using smtp = await greeted(mta);
    await smtp.cmd("EHLO t.test", 250);
    const auth = await smtp.cmd(`AUTH PLAIN ${blob("", ALICE.user, ALICE.pass)}`);
    assert.ok(auth.code >= 500, auth.raw);
    assert.equal((await smtp.cmd("MAIL FROM:<alice@ours.test>")).code, 530);
  });

  let wrongPassword = "";
  await t.step("wrong password gets 535 and no session", async () => {
    using smtp = await mta.authedOrNot();
    const reply = await smtp.cmd(`AUTH PLAIN ${blob("", ALICE.user, secrets[1])}`);
    assert.equal(reply.code, 535, reply.raw);
    wrongPassword = reply.raw;
    assert.equal((await smtp.cmd("MAIL FROM:<alice@ours.test>")).code, 530);
  });

  await t.step(
    "AUTH-09: an unknown user gets the very same reply as a wrong password",
    async () => {
      using smtp = await mta.authedOrNot();
      const reply = await smtp.cmd(`AUTH PLAIN ${blob("", "nobody@ours.test", secrets[1])}`);
      assert.equal(reply.raw, wrongPassword);
    },
  );

  await t.step("AUTH LOGIN with a wrong password gets the same 535", async () => {
    using smtp = await mta.authedOrNot();
    await smtp.cmd("AUTH LOGIN", 334);
    await smtp.cmd(btoa(ALICE.user), 334);
    const reply = await smtp.cmd(btoa(secrets[2]));
    assert.equal(reply.raw, wrongPassword);
  });

  await t.step("AUTH-05: an authzid other than the login is refused with 535", async () => {
    using smtp = await mta.authedOrNot();
    const reply = await smtp.cmd(`AUTH PLAIN ${blob("bob@ours.test", ALICE.user, ALICE.pass)}`);
    assert.equal(reply.code, 535, reply.raw);
    assert.equal((await smtp.cmd("MAIL FROM:<bob@ours.test>")).code, 530);
    // The same credentials without the authzid do log in.
    await smtp.cmd(`AUTH PLAIN ${blob(ALICE.user, ALICE.user, ALICE.pass)}`, 235);
  });

  await t.step("AUTH-03: the third failure on one connection gets 421 and a close", async () => {
    using smtp = await mta.authedOrNot();
    const user = "guess@ours.test";
    assert.equal((await smtp.cmd(`AUTH PLAIN ${blob("", user, "g1")}`)).code, 535);
    assert.equal((await smtp.cmd(`AUTH PLAIN ${blob("", user, "g2")}`)).code, 535);
    const third = await smtp.cmd(`AUTH PLAIN ${blob("", user, "g3")}`);
    assert.equal(third.code, 421, third.raw);
    assert.equal(await smtp.readToEnd(5_000), "");
    assert.ok(smtp.eof);
  });

  await t.step(
    "AUTH-06: not base64, a cancelled LOGIN, empty PLAIN fields get 501/501/535; no session",
    async () => {
      using smtp = await mta.authedOrNot();
      const garbage = await smtp.cmd("AUTH PLAIN !!!notbase64");
      assert.equal(garbage.code, 501, garbage.raw);
      await smtp.cmd("AUTH LOGIN", 334);
      const cancelled = await smtp.cmd("*");
      assert.equal(cancelled.code, 501, cancelled.raw);
      const empty = await smtp.cmd(`AUTH PLAIN ${blob("", "", "")}`);
      assert.equal(empty.code, 535, empty.raw);
      assert.equal((await smtp.cmd("MAIL FROM:<alice@ours.test>")).code, 530);
    },
  );

  await t.step(
    "AUTH-06: a 20 KB AUTH blob gets 421 and a close; the daemon serves on",
    async () => {
      {
        using smtp = await mta.authedOrNot();
        const huge = await smtp.cmd(`AUTH PLAIN ${blob("", ALICE.user, "p".repeat(15_000))}`);
        assert.equal(huge.code, 421, huge.raw);
        assert.equal(await smtp.readToEnd(5_000), "");
      }
      using smtp = await mta.authedOrNot();
      await smtp.cmd(`AUTH PLAIN ${plainBlob("", ALICE.user, ALICE.pass)}`, 235);
    },
  );

  await t.step(
    "AUTH-07: a second AUTH after success gets 503; the session stays alice's",
    async () => {
      using smtp = await mta.authed();
      const again = await smtp.cmd(`AUTH PLAIN ${plainBlob("", CAROL.user, CAROL.pass)}`);
      assert.equal(again.code, 503, again.raw);
      // Still alice, who may send as any @ours.test address carol may not.
      await smtp.cmd("MAIL FROM:<news@ours.test>", 250);
    },
  );

  await t.step("AUTH-08: CRAM-MD5 and XOAUTH2 (not offered) get 504", async () => {
    using smtp = await mta.authedOrNot();
    for (const line of ["AUTH CRAM-MD5", `AUTH XOAUTH2 ${btoa("user=alice@ours.test\x01\x01")}`]) {
      const reply = await smtp.cmd(line);
      assert.equal(reply.code, 504, `${line} -> ${reply.raw}`);
    }
    assert.equal((await smtp.cmd("MAIL FROM:<alice@ours.test>")).code, 530);
  });

  await t.step(
    "AUTH-10: CR or NUL in the user name gets 501, U+202E gets 535; never a session",
    async () => {
      const utf8 = (s: string) => String.fromCharCode(...new TextEncoder().encode(s));
      const cases: [string, string, number][] = [
        ["PLAIN, CR", btoa(`\0ali\rce@ours.test\0${ALICE.pass}`), 501],
        ["PLAIN, NUL", btoa(`\0ali\0ce@ours.test\0${ALICE.pass}`), 501],
        ["PLAIN, U+202E", btoa(utf8(`\0ali\u202ece@ours.test\0${ALICE.pass}`)), 535],
      ];
      for (const [what, b64, code] of cases) {
        using smtp = await mta.authedOrNot();
        blobs.push(b64);
        const reply = await smtp.cmd(`AUTH PLAIN ${b64}`);
        assert.equal(reply.code, code, `${what}: ${reply.raw}`);
        assert.equal((await smtp.cmd("MAIL FROM:<alice@ours.test>")).code, 530, what);
      }
      using smtp = await mta.authedOrNot();
      await smtp.cmd("AUTH LOGIN", 334);
      const login = await smtp.cmd(btoa("alice@ours.test\r"));
      assert.equal(login.code, 501, `LOGIN, CR: ${login.raw}`);
      assert.equal((await smtp.cmd("MAIL FROM:<alice@ours.test>")).code, 530);
    },
  );

  assert.equal(await mta.stop(), 0);

  await t.step("AUTH-11: no password and no AUTH blob in the logs", () => {
    const logs = mta.stdout + mta.stderr;
    assert.ok(logs.includes("auth_failure"), "the failures were not logged at all");
    for (const s of [...secrets, ...blobs, btoa(secrets[2]), btoa(ALICE.user)]) {
      assert.ok(!logs.includes(s), `logs contain ${JSON.stringify(s)}`);
    }
  });
});

Deno.test("AUTH-04: an IP with too many failures is refused AUTH while blocked", async () => {
  await using mta = await Mta.start({ config: { auth: { max_failures_per_ip: 4 } } });
  {
    using smtp = await mta.authedOrNot();
    for (const n of [1, 2]) {
      assert.equal((await smtp.cmd(`AUTH PLAIN ${plainBlob("", `u${n}@x.test`, "x")}`)).code, 535);
    }
    assert.equal((await smtp.cmd(`AUTH PLAIN ${plainBlob("", "u3@x.test", "x")}`)).code, 421);
  }
  {
    using smtp = await mta.authedOrNot();
    const fourth = await smtp.cmd(`AUTH PLAIN ${plainBlob("", "u4@x.test", "x")}`);
    assert.ok([421, 454].includes(fourth.code), fourth.raw);
  }
  // Blocked now: even the right password is refused from this address.
  using smtp = await mta.authedOrNot();
  const reply = await smtp.cmd(`AUTH PLAIN ${plainBlob("", ALICE.user, ALICE.pass)}`);
  assert.ok([421, 454].includes(reply.code), reply.raw);
  if (reply.code === 454) assert.equal((await smtp.cmd("MAIL FROM:<alice@ours.test>")).code, 530);
  else assert.equal(await smtp.readToEnd(5_000), "");
  smtp.close();
  assert.equal(await mta.stop(), 0);
});

Deno.test("SPOOF: senders a user does not own are refused at MAIL and at the From: header", async (t) => {
  await using mta = await Mta.start();

  await t.step("SPOOF-01/02: MAIL FROM not owned gets 553", async () => {
    {
      using smtp = await mta.authed();
      assert.equal((await smtp.cmd("MAIL FROM:<ceo@other.test>")).code, 553);
    }
    using smtp = await mta.authed(CAROL);
    assert.equal((await smtp.cmd("MAIL FROM:<bob@ours.test>")).code, 553);
    await smtp.cmd("MAIL FROM:<carol@ours.test>", 250);
  });

  await t.step(
    "SPOOF-03: the README's policy: any case matches, user+tag@ matches user@, nothing more",
    async () => {
      for (const from of ["CAROL@OURS.TEST", "Carol@Ours.Test", "carol+tag@ours.test"]) {
        using smtp = await mta.authed(CAROL);
        await smtp.cmd(`MAIL FROM:<${from}>`, 250);
      }
      for (const from of ["carolx@ours.test", "x+carol@ours.test", "carol@sub.ours.test"]) {
        using smtp = await mta.authed(CAROL);
        assert.equal((await smtp.cmd(`MAIL FROM:<${from}>`)).code, 553, from);
      }
      using smtp = await mta.authed();
      await smtp.cmd("MAIL FROM:<ALICE@OURS.TEST>", 250);
    },
  );

  await t.step(
    "SPOOF-07: a homograph of the user's domain (Cyrillic о), in UTF-8 or punycode, gets 553",
    async () => {
      for (const from of ["alice@\u043eurs.test", "alice@xn--urs-red.test"]) {
        for (const params of ["", " SMTPUTF8"]) {
          using smtp = await mta.authed();
          const reply = await smtp.cmd(`MAIL FROM:<${from}>${params}`);
          assert.equal(reply.code, 553, `${from}${params}: ${reply.raw}`);
          assert.match(reply.raw, /not owned/);
        }
      }
    },
  );

  await t.step("SPOOF-04: the null sender is refused to users", async () => {
    using smtp = await mta.authed();
    const reply = await smtp.cmd("MAIL FROM:<>");
    assert.ok(reply.code >= 500, reply.raw);
  });

  await t.step(
    "SPOOF-06: a From: header not owned gets 550 after the dot, nothing stored",
    async () => {
      using smtp = await mta.authed(CAROL);
      await smtp.cmd("MAIL FROM:<carol@ours.test>", 250);
      await smtp.cmd("RCPT TO:<victim@remote.test>", 250);
      await smtp.cmd("DATA", 354);
      const reply = await smtp.cmd("From: ceo@ours.test\r\nSubject: hi\r\n\r\nPay this.\r\n.");
      assert.equal(reply.code, 550, reply.raw);
      assert.match(reply.raw, /5\.7\.1/);
    },
  );

  await t.step("two From: fields are refused", async () => {
    using smtp = await mta.authed();
    await smtp.cmd("MAIL FROM:<alice@ours.test>", 250);
    await smtp.cmd("RCPT TO:<victim@remote.test>", 250);
    await smtp.cmd("DATA", 354);
    const reply = await smtp.cmd(
      "From: alice@ours.test\r\nFrom: ceo@other.test\r\nSubject: hi\r\n\r\nx\r\n.",
    );
    assert.ok(reply.code >= 500, reply.raw);
  });

  assert.deepEqual(await mta.spoolMetas(), []);
  assert.deepEqual(await mta.spoolFiles("msg"), []);
  assert.equal(await mta.stop(), 0);
});

// ---------------------------------------------------------------- routing after AUTH

const needsDns = requireTool("python3:dns", "python3:smtplib");

/** Submits one message as alice over the raw driver; the RCPT replies must all be `rcptCode`. */
async function submitRaw(
  mta: Mta,
  opts: { mail: string; rcpts: string[]; subject: string },
): Promise<string> {
  using smtp = await mta.authed();
  await smtp.cmd(opts.mail, 250);
  for (const rcpt of opts.rcpts) {
    const reply = await smtp.cmd(`RCPT TO:${rcpt}`);
    assert.equal(reply.code, 250, `RCPT TO:${rcpt} -> ${reply.raw}`);
  }
  await smtp.cmd("DATA", 354);
  const reply = await smtp.cmd(
    `From: alice@ours.test\r\nSubject: ${opts.subject}\r\n\r\nrouting test\r\n.`,
    250,
  );
  return queuedId(reply.raw);
}

Deno.test({
  name:
    "RELAY-01/02/03/09, SPOOF-05, INJ-03: after AUTH, mail goes only to the domain after the last @",
  ignore: needsDns,
  async fn(t) {
    const net = loopbackNet();
    const [port] = freePorts(1);
    // "evil\r\nX-Injected: 1.test" as the PTR name of 127.0.0.5 (RFC 1035 \DDD escapes).
    const evilPtr = "evil\\013\\010X-Injected:\\0321.test";
    const routed = (name: string) => ({ MX: [[10, `mx.${name}`]] });
    await using dns = await FakeDns.start({
      "dest.test": routed("dest.test"),
      "mx.dest.test": { A: [net(2)] },
      // Every domain an address merely mentions leads to one trap MX.
      ...Object.fromEntries(
        ["victim.test", "relay.test", "a.test", "b.test"].map((d) => [d, routed("trap.test")]),
      ),
      "mx.trap.test": { A: [net(3)] },
      "ours.test": routed("ours.test"),
      "mx.ours.test": { A: [net(4)] },
      "5.0.0.127.in-addr.arpa": { PTR: [evilPtr] },
    });
    await using dest = await FakeMx.start(net(2), port, { name: "mx.dest.test" });
    await using trap = await FakeMx.start(net(3), port, { name: "mx.trap.test" });
    await using ours = await FakeMx.start(net(4), port, { name: "mx.ours.test" });
    await using mta = await Mta.start({ config: { delivery: deliveryConfig({ dns, port }) } });
    const gone = (id: string) => waitFor(`${id} to leave the queue`, () => isGone(mta, id));

    await t.step(
      "RELAY-01/02/03: %, ! and source routes go to dest.test only, the RCPT byte-identical",
      async () => {
        const id = await submitRaw(mta, {
          mail: "MAIL FROM:<alice@ours.test>",
          rcpts: [
            "<user%victim.test@dest.test>",
            "<victim.test!user@dest.test>",
            "<@relay.test:route1@dest.test>",
            "<@a.test,@b.test:route2@dest.test>",
          ],
          subject: "relay",
        });
        await gone(id);
        assert.deepEqual(
          deliveryEvents(mta, id).map((e) => [e.recipient, e.outcome]).sort(),
          [
            ["route1@dest.test", "delivered"],
            ["route2@dest.test", "delivered"],
            ["user%victim.test@dest.test", "delivered"],
            ["victim.test!user@dest.test", "delivered"],
          ],
        );
        const rcpts = (await dest.commands()).map((c) => c.line).filter((l) => /^RCPT/i.test(l));
        assert.deepEqual(rcpts.sort(), [
          "RCPT TO:<route1@dest.test>",
          "RCPT TO:<route2@dest.test>",
          "RCPT TO:<user%victim.test@dest.test>",
          "RCPT TO:<victim.test!user@dest.test>",
        ]);
      },
    );

    await t.step(
      "RELAY-09: <postmaster> and <user@localhost> get 553; <user@ours.test> goes to ours.test's MX, once",
      async () => {
        {
          using smtp = await mta.authed();
          await smtp.cmd("MAIL FROM:<alice@ours.test>", 250);
          for (const rcpt of ["<postmaster>", "<Postmaster>", "<user@localhost>"]) {
            const reply = await smtp.cmd(`RCPT TO:${rcpt}`);
            assert.equal(reply.code, 553, `RCPT TO:${rcpt} -> ${reply.raw}`);
          }
        }
        const id = await submitRaw(mta, {
          mail: "MAIL FROM:<alice@ours.test>",
          rcpts: ["<user@ours.test>"],
          subject: "own domain",
        });
        await gone(id);
        const txs = await ours.accepted();
        assert.deepEqual(txs.map((tx) => tx.rcpts), [["user@ours.test"]]);
        assert.deepEqual(await mta.spoolMetas(), [], "nothing came back into the queue");
      },
    );

    await t.step(
      "SPOOF-05: MAIL FROM:<alice@ours.test> AUTH=<bob@ours.test> is not passed on or recorded",
      async () => {
        const id = await submitRaw(mta, {
          mail: "MAIL FROM:<alice@ours.test> AUTH=<bob@ours.test>",
          rcpts: ["<spoof5@dest.test>"],
          subject: "auth param",
        });
        await gone(id);
        const mails = (await dest.commands()).map((c) => c.line).filter((l) => /^MAIL/i.test(l));
        assert.ok(mails.length > 0);
        for (const line of mails) {
          assert.match(line, /^MAIL FROM:<alice@ours\.test>/, line);
          assert.doesNotMatch(line, /AUTH=|bob/i, line);
        }
        const [tx] = (await dest.accepted()).filter((x) => x.rcpts.includes("spoof5@dest.test"));
        assert.doesNotMatch(text(unstuff(tx.data)), /bob@ours\.test/);
        const event = deliveryEvents(mta, id)[0];
        assert.equal(event.from, "alice@ours.test");
      },
    );

    await t.step(
      "INJ-03: a client at 127.0.0.5 with a PTR holding CR LF is named [127.0.0.5] in Received:",
      async () => {
        const script = `
import smtplib, ssl, sys
port, cafile, user, password = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=cafile)
with smtplib.SMTP("localhost", int(port), timeout=20, source_address=("127.0.0.5", 0)) as s:
    s.ehlo("python.test")
    s.starttls(context=ctx)
    s.ehlo("python.test")
    s.login(user, password)
    s.mail(user)
    s.rcpt("inj3@dest.test")
    code, text = s.data(b"From: alice@ours.test\\r\\nSubject: ptr\\r\\n\\r\\nhello\\r\\n")
    print(code, text.decode())
`;
        // The trap is armed: the DNS the daemon is given does answer with CR LF.
        const ptr = await run(PYTHON, [
          "-c",
          "import dns.resolver, sys; r = dns.resolver.Resolver(configure=False); " +
          "r.nameservers = ['127.0.0.1']; r.port = int(sys.argv[1]); " +
          "print(repr(r.resolve('5.0.0.127.in-addr.arpa', 'PTR')[0].target.labels[0]))",
          `${dns.port}`,
        ]);
        assert.equal(ptr.stdout.trim(), "b'evil\\r\\nX-Injected: 1'", ptr.stderr);
        const r = await run(PYTHON, [
          "-c",
          script,
          `${mta.port}`,
          `${mta.dir}/cert.pem`,
          ALICE.user,
          ALICE.pass,
        ]);
        assert.equal(r.code, 0, r.stdout + r.stderr);
        await gone(queuedId(r.stdout));
        const [tx] = (await dest.accepted()).filter((x) => x.rcpts.includes("inj3@dest.test"));
        const message = text(unstuff(tx.data));
        const head = message.slice(0, message.indexOf("\r\n\r\n"));
        assert.match(
          head,
          /^Received: from python\.test \(\[127\.0\.0\.5\]\)\r\n\tby mx\.ours\.test /,
        );
        assert.doesNotMatch(head, /evil|X-Injected/i);
      },
    );

    assert.equal(await trap.connections(), 0, "an MX of victim/relay/a/b.test was contacted");
    assert.equal(await mta.stop(), 0);
  },
});

Deno.test({
  name:
    "RELAY-07: an MX on loopback or on our own address bounces 5.4.6 at once and is never contacted",
  ignore: needsDns,
  async fn() {
    const [port] = freePorts(1);
    // A non-loopback address of this host, if it has one.
    const own = Deno.networkInterfaces().find((i) =>
      i.family === "IPv4" && !i.address.startsWith("127.")
    )?.address;
    await using dns = await FakeDns.start({
      "loop.test": { MX: [[10, "mx.loop.test"]] },
      "mx.loop.test": { A: ["127.0.0.1"] },
      ...(own ? { "self.test": { MX: [[10, "mx.self.test"]] }, "mx.self.test": { A: [own] } } : {}),
      // Our own domain's MX is this host too: its mail (and the DSN) must not loop.
      "ours.test": { MX: [[10, "mx.ours.test"]] },
      "mx.ours.test": { A: ["127.0.0.1"] },
    });
    // Listeners where a looping delivery would land, to prove none arrives.
    await using loopMx = await FakeMx.start("127.0.0.1", port, { name: "loop" });
    await using ownMx = own ? await FakeMx.start(own, port, { name: "self" }) : null;
    await using mta = await Mta.start({
      config: { delivery: deliveryConfig({ dns, port, allow_loopback: false }) },
    });
    const rcpts = ["loop@loop.test", "user@ours.test", ...(own ? ["self@self.test"] : [])];
    const id = await submitRaw(mta, {
      mail: "MAIL FROM:<alice@ours.test>",
      rcpts: rcpts.map((r) => `<${r}>`),
      subject: "loop",
    });
    await waitFor("the message to bounce", () => isGone(mta, id), 10_000);
    const events = deliveryEvents(mta, id);
    assert.deepEqual(events.map((e) => e.recipient).sort(), [...rcpts].sort());
    for (const e of events) {
      assert.equal(e.outcome, "permanent", JSON.stringify(e));
      assert.equal(e.status, "5.4.6", JSON.stringify(e));
      assert.match(String(e.text), /loops back to myself/);
      assert.equal(e.attempt, 1);
    }
    assert.equal(await loopMx.connections(), 0, "delivered to 127.0.0.1");
    if (ownMx) assert.equal(await ownMx.connections(), 0, `delivered to our own ${own}`);
    else {
      // deno-lint-ignore no-console
      console.warn("RELAY-07: no non-loopback IPv4 address here; only loopback checked");
    }
    assert.equal(await mta.stop(), 0);
  },
});
