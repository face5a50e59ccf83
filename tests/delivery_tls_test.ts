/**
 * Outbound TLS against scripted receivers (DESIGN "Delivery behaviour",
 * TESTPLAN §1.4): `opportunistic` encrypts when STARTTLS is offered even with
 * a self-signed certificate and falls back to plaintext when it is not;
 * `required` and `verify` defer instead of sending in the clear or to an
 * unverified host; bytes injected after the STARTTLS 220 abort the attempt.
 */
import assert from "node:assert/strict";
import { delay, type Mta, requireTool, waitFor } from "./_harness.ts";
import { makeCerts, type TestCerts } from "./_certs.ts";
import { deliveryEvents, type DeliveryWorld, deliveryWorld, isGone, submit } from "./_delivery.ts";
import type { MxScript } from "./_mx.ts";

const needs = requireTool("python3:dns", "openssl");

let certs: Promise<TestCerts> | null = null;
function sharedCerts(): Promise<TestCerts> {
  certs ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "minimta-certs-" });
    globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
    return await makeCerts(dir, "mx1.dest.test");
  })();
  return certs;
}

/** dest.test → mx1.dest.test (a fake MX scripted by `script`), and a daemon with `delivery`. */
function world(script: MxScript, delivery: Record<string, unknown>): Promise<DeliveryWorld> {
  return deliveryWorld({ mx: script, delivery });
}

/** The delivery log of one message, for failure messages. */
function events(mta: Mta, id: string): string {
  return deliveryEvents(mta, id).map((e) => JSON.stringify(e)).join("\n");
}

/** Waits for two attempts and checks the message is deferred with nothing accepted. */
async function assertDeferredTwice(w: DeliveryWorld, id: string, error: RegExp): Promise<void> {
  await waitFor("two attempts", () => deliveryEvents(w.mta, id).length >= 2, 15_000);
  const entry = (await w.mta.queueList()).find((m) => m.id === id);
  assert.ok(entry, "still queued");
  assert.equal(entry.recipients[0].status, "deferred");
  assert.match(entry.recipients[0].last_error ?? "", error);
  assert.ok(deliveryEvents(w.mta, id).every((e) => e.outcome === "transient"));
  assert.deepEqual(await w.mx.transactions(), [], "nothing reached DATA");
  const mails = (await w.mx.commands()).filter((c) => /^MAIL /i.test(c.line));
  assert.deepEqual(mails, [], "no MAIL FROM was sent at all");
}

Deno.test({
  name:
    "opportunistic: a self-signed receiver gets the mail over TLS, logged as used and unverified",
  ignore: needs,
  async fn() {
    const c = await sharedCerts();
    await using w = await world({ starttls: { cert: c.selfCert, key: c.selfKey } }, {
      tls: "opportunistic",
    });
    const id = await submit(w.mta, { to: ["bob@dest.test"] });
    await waitFor("delivery", () => isGone(w.mta, id), 15_000, () => events(w.mta, id));
    const [tx] = await w.mx.accepted();
    assert.equal(tx.tls, true, "the receiver saw the transaction inside TLS");
    const plainMail = (await w.mx.commands()).filter((c) => !c.tls && /^MAIL /i.test(c.line));
    assert.deepEqual(plainMail, [], "no MAIL FROM in plaintext");
    const [event] = deliveryEvents(w.mta, id);
    const tls = event.tls as Record<string, unknown>;
    assert.equal(tls.used, true);
    assert.equal(tls.verified, false);
    assert.match(String(tls.version), /^TLSv1\.[23]$/);
  },
});

Deno.test({
  name: "verify: a self-signed receiver gets nothing and the message is deferred",
  ignore: needs,
  async fn() {
    const c = await sharedCerts();
    await using w = await world({ starttls: { cert: c.selfCert, key: c.selfKey } }, {
      tls: "verify",
    });
    const id = await submit(w.mta, { to: ["bob@dest.test"] });
    await assertDeferredTwice(w, id, /TLS|certificate/i);
  },
});

Deno.test({
  name:
    "verify with tls_ca_file: a receiver with a CA-signed certificate for its MX name gets it, verified",
  ignore: needs,
  async fn() {
    const c = await sharedCerts();
    await using w = await world({ starttls: { cert: c.leafCert, key: c.leafKey } }, {
      tls: "verify",
      tls_ca_file: c.caCert,
    });
    const id = await submit(w.mta, { to: ["bob@dest.test"] });
    await waitFor("delivery", () => isGone(w.mta, id), 15_000, () => events(w.mta, id));
    const [tx] = await w.mx.accepted();
    assert.equal(tx.tls, true);
    const [event] = deliveryEvents(w.mta, id);
    assert.equal((event.tls as Record<string, unknown>).used, true);
    assert.equal((event.tls as Record<string, unknown>).verified, true);
  },
});

Deno.test({
  name: "TLS-C-06: no STARTTLS offered: plaintext under opportunistic, deferred under required",
  ignore: needs,
  async fn(t) {
    await t.step("opportunistic delivers in plaintext", async () => {
      await using w = await world({}, { tls: "opportunistic" });
      const id = await submit(w.mta, { to: ["bob@dest.test"] });
      await waitFor("delivery", () => isGone(w.mta, id), 15_000, () => events(w.mta, id));
      const [tx] = await w.mx.accepted();
      assert.equal(tx.tls, false);
      const [event] = deliveryEvents(w.mta, id);
      assert.equal((event.tls as Record<string, unknown>).used, false);
    });
    await t.step("required defers", async () => {
      await using w = await world({}, { tls: "required" });
      const id = await submit(w.mta, { to: ["bob@dest.test"] });
      await assertDeferredTwice(w, id, /STARTTLS|TLS/);
    });
  },
});

Deno.test({
  name: "bytes injected after the STARTTLS 220 abort the attempt and are never read as replies",
  ignore: needs,
  async fn() {
    const c = await sharedCerts();
    await using w = await world({
      starttls: {
        cert: c.selfCert,
        key: c.selfKey,
        inject: "250-injected.example\r\n250 AUTH PLAIN\r\n",
      },
    }, { tls: "opportunistic" });
    const id = await submit(w.mta, { to: ["bob@dest.test"] });
    await assertDeferredTwice(w, id, /after its 220|STARTTLS/);
    await delay(200);
    const tlsEvents = (await w.mx.events()).filter((e) => e.event === "tls");
    assert.ok(tlsEvents.every((e) => e.ok === false), "no TLS session was completed");
    assert.ok(!w.mta.stdout.includes("injected.example"), "the injected reply never surfaced");
  },
});

Deno.test({
  name:
    "DLV-20: a TLS session reset without close_notify: before the 250 to the dot a temporary failure, after it delivered once",
  ignore: needs,
  async fn() {
    const c = await sharedCerts();
    // The first transaction is cut mid-DATA; the second is answered 250 and then reset.
    await using w = await world({
      starttls: { cert: c.selfCert, key: c.selfKey },
      drop_after_bytes: [300, null],
      reset: "after_data",
    }, { tls: "opportunistic" });
    const body = Array.from({ length: 100 }, (_, i) => `line ${i} inside TLS`).join("\r\n");
    const id = await submit(w.mta, { to: ["bob@dest.test"], body: `${body}\r\n` });
    await waitFor("delivery", () => isGone(w.mta, id), 15_000, () => events(w.mta, id));
    const txs = await w.mx.transactions();
    assert.equal(txs.length, 2);
    assert.ok(txs.every((t) => t.tls), "both inside TLS");
    assert.ok(txs[0].dropped);
    assert.equal((await w.mx.accepted()).length, 1);
    await delay(1500); // a retry would come within 1 s
    assert.deepEqual(deliveryEvents(w.mta, id).map((e) => [e.outcome, e.attempt]), [
      ["transient", 1],
      ["delivered", 2],
    ]);
    assert.equal((await w.mx.transactions()).length, 2, "not sent again after the reset");
  },
});
