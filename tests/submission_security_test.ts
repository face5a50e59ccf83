/**
 * TESTPLAN §1.3 (STARTTLS injection), §1.5 (no open relay), §1.6
 * (authentication) and §1.7 (sender spoofing by an authenticated user),
 * against the real daemon with a raw SMTP driver.
 */
import assert from "node:assert/strict";
import { ALICE, CAROL, Mta, plainBlob, type SmtpDriver } from "./_harness.ts";

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

  assert.deepEqual(await mta.spoolMetas(), []);
  assert.equal(await mta.stop(), 0);
});

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
