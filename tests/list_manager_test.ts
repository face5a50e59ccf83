/**
 * Closing the loop with the list manager (issue 12): bounce webhooks in
 * listmonk's and Postal's own formats, checked by a real HTTP receiver
 * (basic auth, bodies, Postal's RSA signatures verified with WebCrypto);
 * `server.bulk_lint`; delay warnings (`delivery.delay_warning`) received
 * by a real server for the sender's domain; per-user sending limits that
 * hold across a restart.
 */
import assert from "node:assert/strict";
import { hashPassword } from "../src/auth/mod.ts";
import {
  ALICE,
  delay,
  freePorts,
  Mta,
  requireTool,
  runMinimta,
  type SmtpDriver,
  waitFor,
} from "./_harness.ts";
import { deliveryConfig, isGone, mailEvents, submit } from "./_delivery.ts";
import { FakeDns, type Zone } from "./_dns.ts";
import { text } from "./_mime.ts";
import { FakeMx, loopbackNet } from "./_mx.ts";
import { httpBase, samples, startWebMta, value, WebhookReceiver } from "./_http.ts";

const needs = requireTool("python3:dns");
const CAMPAIGN = "9f86b50d-5711-41c8-ab03-bc91c43d711b";
const SUBSCRIBER = "0c1c5b43-2f57-4b8a-9d0e-6f2c7a1e9b44";

function zone(mx: string, ours = mx): Zone {
  return {
    "ok.test": { MX: [[10, "mx.ok.test"]] },
    "ours.test": { MX: [[10, "mx.ours.test"]] },
    "mx.ok.test": { A: [mx] },
    "mx.ours.test": { A: [ours] },
    "later.test": { rcode: "SERVFAIL" },
  };
}

/** An RSA key pair made with WebCrypto: PKCS#8 PEM for minimta, SPKI for verifying. */
async function rsaKey(): Promise<{ pem: string; spki: ArrayBuffer }> {
  const pair = await crypto.subtle.generateKey(
    {
      name: "RSASSA-PKCS1-v1_5",
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: "SHA-256",
    },
    true,
    ["sign", "verify"],
  );
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
  const b64 = btoa(String.fromCharCode(...pkcs8)).replace(/(.{64})/g, "$1\n");
  return {
    pem: `-----BEGIN PRIVATE KEY-----\n${b64}\n-----END PRIVATE KEY-----\n`,
    spki: await crypto.subtle.exportKey("spki", pair.publicKey),
  };
}

async function rsaVerifies(spki: ArrayBuffer, hash: string, sig: string, body: string) {
  const key = await crypto.subtle.importKey(
    "spki",
    spki,
    { name: "RSASSA-PKCS1-v1_5", hash },
    false,
    ["verify"],
  );
  const bytes = Uint8Array.from(atob(sig), (c) => c.charCodeAt(0));
  return await crypto.subtle.verify(
    "RSASSA-PKCS1-v1_5",
    key,
    bytes,
    new TextEncoder().encode(body),
  );
}

Deno.test({
  name:
    "webhooks: listmonk gets hard and soft bounces with basic auth and the campaign ids; Postal payloads are RSA-signed",
  ignore: needs,
  async fn() {
    const net = loopbackNet();
    const [mxPort] = freePorts(1);
    await using dns = await FakeDns.start(zone(net(2)));
    await using mx = await FakeMx.start(net(2), mxPort, {
      name: "mx.ok.test",
      rcpt: { "nobody@ok.test": "550 5.1.1 No such user" },
    });
    await using listmonk = WebhookReceiver.start();
    await using postal = WebhookReceiver.start();
    const key = await rsaKey();
    await using mta = await startWebMta({
      config: {
        delivery: deliveryConfig({
          dns,
          port: mxPort,
          retry_schedule: ["1s"],
          max_queue_lifetime: "3s",
        }),
      },
      webhooks: [
        {
          url: `${listmonk.url}/webhooks/bounce`,
          format: "listmonk",
          username: "minimta-api",
          password: "token-Zq81x",
        },
        {
          url: postal.url,
          format: "postal",
          events: ["delivered", "bounced", "expired"],
          signing_key_file: "postal.key",
        },
      ],
      prepare: (m) => Deno.writeTextFile(`${m.dir}/postal.key`, key.pem, { mode: 0o600 }),
    });
    const campaign = [`X-Listmonk-Campaign: ${CAMPAIGN}`, `X-Listmonk-Subscriber: ${SUBSCRIBER}`];
    const ok = await submit(mta, {
      to: ["bob@ok.test"],
      headers: [...campaign, "Subject: Hi Bob"],
    });
    const bad = await submit(mta, { to: ["nobody@ok.test"], headers: campaign });
    const late = await submit(mta, { to: ["carl@later.test"] });
    await waitFor("the deferred message to expire", () => isGone(mta, late), 20_000);
    await waitFor("both listmonk bounces", () => listmonk.received.length >= 2, 15_000);
    await waitFor("the Postal events", () => postal.received.length >= 3, 15_000);
    await delay(500); // nothing more should come

    // listmonk: bounces only (no delivered, no deferred), basic auth, its body.
    assert.equal(listmonk.received.length, 2, listmonk.received.map((r) => r.body).join("\n"));
    const byType = new Map(listmonk.received.map((r) => [JSON.parse(r.body).type, r]));
    for (const r of listmonk.received) {
      assert.equal(r.headers.authorization, `Basic ${btoa("minimta-api:token-Zq81x")}`);
      assert.equal(r.headers["content-type"], "application/json");
    }
    const hard = JSON.parse(byType.get("hard")!.body);
    assert.equal(hard.email, "nobody@ok.test");
    assert.equal(hard.source, "minimta");
    assert.equal(hard.campaign_uuid, CAMPAIGN);
    assert.equal(hard.subscriber_uuid, SUBSCRIBER);
    assert.equal(hard.meta.queue_id, bad);
    assert.equal(hard.meta.status, "5.1.1");
    assert.equal(typeof hard.meta, "object");
    const soft = JSON.parse(byType.get("soft")!.body);
    assert.equal(soft.email, "carl@later.test");
    assert.equal(soft.meta.status, "4.4.7");
    assert.ok(!("campaign_uuid" in soft), "no ids when the message had no listmonk headers");

    // Postal: the documented envelope and status payload, RSA-SHA1 and -SHA256 signed.
    // deno-lint-ignore no-explicit-any
    const events: any[] = [];
    for (const r of postal.received) {
      assert.ok(await rsaVerifies(key.spki, "SHA-1", r.headers["x-postal-signature"], r.body));
      assert.ok(
        await rsaVerifies(key.spki, "SHA-256", r.headers["x-postal-signature-256"], r.body),
      );
      assert.ok(
        !(await rsaVerifies(
          key.spki,
          "SHA-256",
          r.headers["x-postal-signature-256"],
          r.body + " ",
        )),
      );
      events.push(JSON.parse(r.body));
    }
    const of = (to: string) => events.find((e) => e.payload.message.to === to);
    const sent = of("bob@ok.test");
    assert.equal(sent.event, "MessageSent");
    assert.equal(sent.payload.status, "Sent");
    assert.match(sent.payload.output, /^250 /);
    assert.equal(typeof sent.payload.sent_with_ssl, "boolean");
    assert.equal(typeof sent.payload.time, "number");
    assert.equal(typeof sent.timestamp, "number");
    assert.match(sent.uuid, /^[0-9a-f-]{36}$/);
    const m = sent.payload.message;
    assert.equal(m.token, ok);
    assert.ok(Number.isSafeInteger(m.id));
    assert.equal(m.direction, "outgoing");
    assert.equal(m.from, ALICE.user);
    assert.equal(m.subject, "Hi Bob");
    assert.doesNotMatch(m.message_id, /[<>]/);
    for (const k of ["timestamp", "spam_status", "tag"]) assert.ok(k in m, `message.${k}`);
    const failed = of("nobody@ok.test");
    assert.equal(failed.event, "MessageDeliveryFailed");
    assert.equal(failed.payload.status, "HardFail");
    assert.match(failed.payload.output, /^550 5\.1\.1 /);
    const expired = of("carl@later.test");
    assert.equal(expired.event, "MessageDeliveryFailed");
    assert.ok(!events.some((e) => e.event === "MessageDelayed"), "deferred was not asked for");
    assert.equal((await mx.accepted()).filter((t) => t.rcpts.includes("bob@ok.test")).length, 1);
  },
});

const LIST = [
  "List-Id: News <news.ours.test>",
  "Precedence: bulk",
  `X-Listmonk-Campaign: ${CAMPAIGN}`,
];
const ONE_CLICK = [
  "List-Unsubscribe: <https://lists.ours.test/u/abc>, <mailto:u@ours.test>",
  "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
];

/** Sends one message as alice; returns the reply to the final dot. */
async function sendRaw(mta: Mta, headers: string[]): Promise<{ code: number; raw: string }> {
  const smtp = await mta.authed();
  try {
    await smtp.cmd(`MAIL FROM:<${ALICE.user}>`, 250);
    await smtp.cmd("RCPT TO:<bob@ok.test>", 250);
    await smtp.cmd("DATA", 354);
    await smtp.write(
      `From: Alice <${ALICE.user}>\r\nTo: bob@ok.test\r\nSubject: news\r\n${
        headers.map((h) => `${h}\r\n`).join("")
      }\r\nHello.\r\n.\r\n`,
    );
    return await smtp.reply();
  } finally {
    smtp.close();
  }
}

Deno.test({
  name:
    "bulk_lint: reject refuses list mail without one-click unsubscribe and accepts it with; warn accepts and counts",
  async fn() {
    {
      await using mta = await Mta.start({ config: { server: { bulk_lint: "reject" } } });
      const refused = await sendRaw(mta, LIST);
      assert.equal(refused.code, 550);
      assert.match(refused.raw, /5\.7\.9 Bulk mail needs one-click unsubscribe \(RFC 8058\)/);
      // An unsubscribe by mailto: only is not one-click.
      const mailto = await sendRaw(mta, [
        ...LIST,
        "List-Unsubscribe: <mailto:u@ours.test>",
        ONE_CLICK[1],
      ]);
      assert.equal(mailto.code, 550);
      assert.equal((await sendRaw(mta, [...LIST, ...ONE_CLICK])).code, 250);
      assert.equal((await sendRaw(mta, [])).code, 250, "not bulk mail: not checked");
      assert.equal((await mta.queueList()).length, 2);
      const lint = mailEvents(mta, "bulk_lint");
      assert.equal(lint.length, 2);
      assert.ok(lint.every((e) => e.result === "rejected" && e.signal === "List-Id"));
      assert.ok(
        mta.logs().some((e) => /not DKIM-signed/.test(String(e.message ?? ""))),
        "warns that bulk mail from a domain without a DKIM key is not signed",
      );
    }
    {
      await using mta = await startWebMta({});
      const res = await sendRaw(mta, ["X-Mailer: Mautic 5.1"]);
      assert.equal(res.code, 250);
      assert.equal((await sendRaw(mta, ["X-Mailer: Mautic 5.1", ...ONE_CLICK])).code, 250);
      const metrics = samples(await (await fetch(`${await httpBase(mta)}/metrics`)).text());
      assert.equal(value(metrics, "minimta_bulk_lint_total", { result: "warned" }), 1);
      const [event] = mailEvents(mta, "bulk_lint");
      assert.equal(event.signal, "X-Mailer: Mautic");
      assert.match(String(event.reason), /List-Unsubscribe-Post/);
    }
  },
});

Deno.test({
  name:
    "delay_warning: one Action: delayed DSN reaches the sender's server, once, also after a restart",
  ignore: needs,
  async fn() {
    const net = loopbackNet();
    const [mxPort] = freePorts(1);
    await using dns = await FakeDns.start(zone(net(2), net(3)));
    // The recipient's server always defers; the sender's accepts.
    await using mx = await FakeMx.start(net(2), mxPort, {
      name: "mx.ok.test",
      rcpt_default: "451 4.2.1 Mailbox busy, try later",
    });
    await using ours = await FakeMx.start(net(3), mxPort, { name: "mx.ours.test" });
    await using mta = await startWebMta({
      config: {
        delivery: deliveryConfig({
          dns,
          port: mxPort,
          retry_schedule: ["1s"],
          max_queue_lifetime: "1h",
          delay_warning: "3s",
        }),
      },
    });
    const id = await submit(mta, { to: ["bob@ok.test"] });
    await waitFor("the delay warning", async () => (await ours.accepted()).length >= 1, 20_000);
    await delay(3_000); // more retries, no second warning
    await mta.restart();
    await delay(3_000);
    const dsns = await ours.accepted();
    assert.equal(dsns.length, 1, "exactly one delay warning");
    assert.equal(dsns[0].mail_from, "", "from the null sender");
    assert.deepEqual(dsns[0].rcpts, [ALICE.user]);
    const dsn = text(dsns[0].data);
    assert.match(dsn, /report-type=delivery-status/);
    assert.match(dsn, /^Action: delayed$/m);
    assert.match(dsn, /^Status: 4\.2\.1$/m);
    assert.match(dsn, /^Will-Retry-Until: \w{3}, \d+ \w{3} \d{4} /m);
    assert.match(dsn, /^Final-Recipient: rfc822; bob@ok\.test$/m);
    assert.match(dsn, new RegExp(`Queue ID: ${id}`));
    const [entry] = (await mta.queueList()).filter((e) => e.id === id);
    assert.ok(entry.recipients[0].attempts >= 4, "still being retried");
    assert.equal(mailEvents(mta, "delayed").length, 1);
    assert.ok((await mx.transactions()).length === 0, "nothing got through to bob");
  },
});

Deno.test({
  name:
    "limits: the 6th recipient in an hour for a user with per_hour 5 gets 452, also after a restart",
  async fn() {
    await using mta = await Mta.start({ noStart: true });
    const users = [{
      username: ALICE.user,
      password: await hashPassword(ALICE.pass),
      email: ALICE.user,
      active: true,
      limits: { per_hour: 5, per_day: 50000 },
    }];
    await Deno.writeTextFile(`${mta.dir}/users.json`, JSON.stringify(users), { mode: 0o600 });
    await mta.launch();
    const rcpt = async (smtp: SmtpDriver, n: number) => await smtp.cmd(`RCPT TO:<r${n}@ok.test>`);
    {
      const smtp = await mta.authed();
      await smtp.cmd(`MAIL FROM:<${ALICE.user}>`, 250);
      for (let n = 1; n <= 3; n++) assert.equal((await rcpt(smtp, n)).code, 250);
      await smtp.cmd("DATA", 354);
      await smtp.write(`From: <${ALICE.user}>\r\nSubject: one\r\n\r\nHi.\r\n.\r\n`);
      await smtp.expect(250);
      await smtp.cmd(`MAIL FROM:<${ALICE.user}>`, 250);
      for (let n = 4; n <= 5; n++) assert.equal((await rcpt(smtp, n)).code, 250);
      const sixth = await rcpt(smtp, 6);
      assert.equal(sixth.code, 452);
      assert.match(
        sixth.raw,
        /4\.7\.1 sending limit of 5 per hour reached; try again after \d\d:\d\d/,
      );
      await smtp.cmd("DATA", 354);
      await smtp.write(`From: <${ALICE.user}>\r\nSubject: two\r\n\r\nHi.\r\n.\r\n`);
      await smtp.expect(250);
      smtp.close();
    }
    const queued = (await mta.queueList()).flatMap((e) => e.recipients.map((r) => r.address));
    assert.equal(queued.length, 5, "nothing over the limit was queued");
    await mta.restart();
    {
      const smtp = await mta.authed();
      await smtp.cmd(`MAIL FROM:<${ALICE.user}>`, 250);
      assert.equal((await rcpt(smtp, 7)).code, 452, "the count survived the restart");
      smtp.close();
    }
    const list = await runMinimta(["user", "list", "--config", mta.configPath]);
    assert.match(list.stdout, /sent 5\/5 this hour, 5\/50000 in 24 h/);
  },
});
