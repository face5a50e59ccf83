/**
 * Delivery webhooks (issue 5): one signed JSON event per delivered,
 * deferred, bounced and expired recipient, posted to a receiver the test
 * runs (Deno.serve); the signature is recomputed over the raw body with
 * WebCrypto. Events for a receiver that is down wait in the durable outbox
 * (<spool>/webhooks/), survive kill -9, and arrive after the restart; and
 * delivery goes on meanwhile.
 */
import assert from "node:assert/strict";
import { freePorts, requireTool, waitFor } from "./_harness.ts";
import { deliveryConfig, deliveryEvents, isGone, mailEvents, submit } from "./_delivery.ts";
import { FakeDns, type Zone } from "./_dns.ts";
import { FakeMx, loopbackNet } from "./_mx.ts";
import { hmacHex, type Received, startWebMta, WebhookReceiver } from "./_http.ts";
import { type Pending, WebhookDispatcher, type WebhookEvent } from "../src/webhooks/mod.ts";
import type { RecipientEvent } from "../src/events/mod.ts";
import { Spool } from "../src/spool/mod.ts";

const needs = requireTool("python3:dns");
const SECRET = "whsec-" + crypto.randomUUID();
const BOUNCE_SECRET = "other-secret-" + crypto.randomUUID();

function zone(mx: string): Zone {
  return {
    "ok.test": { MX: [[10, "mx.ok.test"]] },
    "bad.test": { MX: [[10, "mx.ok.test"]] },
    "ours.test": { MX: [[10, "mx.ok.test"]] }, // DSNs to alice are delivered too
    "mx.ok.test": { A: [mx] },
    "later.test": { rcode: "SERVFAIL" },
  };
}

/** What the dispatcher makes of one `delivery` mail-log event. */
function expectedType(e: Record<string, unknown>): string {
  return e.outcome === "delivered"
    ? "delivered"
    : e.outcome === "transient"
    ? "deferred"
    : e.expired
    ? "expired"
    : "bounced";
}

function key(e: Record<string, unknown> | WebhookEvent): string {
  return `${e.event}|${e.queue_id}|${e.recipient}|${e.attempt}`;
}

/** The logged delivery events as webhook keys, by type. */
function produced(events: Record<string, unknown>[]): string[] {
  return events.map((e) => key({ ...e, event: expectedType(e) })).sort();
}

/** Checks headers and signature of each POST; returns the parsed bodies. */
async function verified(received: Received[], secret: string): Promise<WebhookEvent[]> {
  const out: WebhookEvent[] = [];
  for (const r of received) {
    assert.equal(r.headers["content-type"], "application/json");
    const sig = r.headers["x-minimta-signature"];
    assert.match(sig, /^sha256=[0-9a-f]{64}$/);
    assert.equal(sig, `sha256=${await hmacHex(secret, r.body)}`, "signature over the raw body");
    assert.notEqual(sig, `sha256=${await hmacHex(secret + "x", r.body)}`);
    const body = JSON.parse(r.body);
    assert.equal(r.headers["x-minimta-event"], body.event);
    assert.ok(!Number.isNaN(Date.parse(body.occurred_at)), "occurred_at is a date");
    out.push(body);
  }
  return out;
}

/** A typed `delivered` event for recipient n, as the engine emits it. */
function deliveredEvent(n: number): RecipientEvent {
  return {
    type: "delivered",
    queue_id: `Q${n}`,
    recipient: `r${n}@live.test`,
    relay: null,
    code: 250,
    status: "2.0.0",
    text: "ok",
    attempt: 1,
    delay_s: 0,
    duration_ms: 1,
    from: "",
    message_id: null,
    tls: null,
  };
}

Deno.test({
  name: "webhooks: signed events for delivered, deferred, bounced and expired recipients",
  ignore: needs,
  async fn() {
    const net = loopbackNet();
    const [mxPort] = freePorts(1);
    await using dns = await FakeDns.start(zone(net(2)));
    await using mx = await FakeMx.start(net(2), mxPort, {
      name: "mx.ok.test",
      rcpt: { "nobody@bad.test": "550 5.1.1 No such user" },
    });
    await using hooks = WebhookReceiver.start();
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
        { url: hooks.url, events: ["delivered", "deferred", "bounced", "expired"], secret: SECRET },
        { url: `${hooks.url}/bounces`, events: ["bounced"], secret: BOUNCE_SECRET },
      ],
    });
    const ok = await submit(mta, { to: ["bob@ok.test"] });
    const bad = await submit(mta, { to: ["nobody@bad.test"] });
    const late = await submit(mta, { to: ["carl@later.test"] });
    await waitFor("the deferred message to expire and leave", () => isGone(mta, late), 20_000);
    await waitFor(
      "every message and both DSNs to be done",
      async () => (await mta.spoolFiles("msg")).length === 0 && (await mx.accepted()).length === 3,
      15_000,
    );
    assert.equal(mailEvents(mta, "expired").length, 1);
    const logged = deliveryEvents(mta);
    const all = produced(logged);
    const bounces = produced(logged.filter((e) => expectedType(e) === "bounced"));
    assert.deepEqual(
      [...new Set(all.map((k) => k.split("|")[0]))].sort(),
      ["bounced", "deferred", "delivered", "expired"],
    );

    await waitFor(
      "every event at the receiver",
      () => hooks.received.length >= all.length + bounces.length,
      15_000,
      () => `${hooks.received.length} of ${all.length + bounces.length}`,
    );
    await new Promise((r) => setTimeout(r, 300)); // nothing more should come

    // The receiver does not record paths; tell the targets apart by their secrets.
    const first: Received[] = [];
    const second: Received[] = [];
    for (const r of hooks.received) {
      const sig = r.headers["x-minimta-signature"];
      if (sig === `sha256=${await hmacHex(SECRET, r.body)}`) first.push(r);
      else if (sig === `sha256=${await hmacHex(BOUNCE_SECRET, r.body)}`) second.push(r);
      else assert.fail(`POST with a signature under neither secret: ${r.body}`);
    }
    const events = await verified(first, SECRET);
    assert.deepEqual(events.map(key).sort(), all, "each event exactly once, nothing else");
    const bounceEvents = await verified(second, BOUNCE_SECRET);
    assert.deepEqual(bounceEvents.map(key).sort(), bounces, "second target: bounced only");

    const of = (id: string, type: string) =>
      events.filter((e) => e.queue_id === id && e.event === type);
    const [delivered] = of(ok, "delivered");
    assert.equal(delivered.recipient, "bob@ok.test");
    assert.equal(delivered.sender, "alice@ours.test");
    assert.equal(delivered.reply.code, 250);
    assert.match(delivered.reply.status, /^2\./);
    assert.match(delivered.reply.remote ?? "", /mx\.ok\.test/);
    assert.equal(delivered.attempt, 1);
    assert.match(delivered.message_id ?? "", /^<.+@.+>$/);
    const [bounced] = of(bad, "bounced");
    assert.equal(bounced.recipient, "nobody@bad.test");
    assert.equal(bounced.reply.code, 550);
    assert.equal(bounced.reply.status, "5.1.1");
    assert.match(bounced.reply.text, /No such user/);
    const deferrals = of(late, "deferred");
    assert.ok(deferrals.length >= 2, `at least two deferrals, got ${deferrals.length}`);
    assert.deepEqual(
      deferrals.map((e) => e.attempt).sort((a, b) => a - b),
      deferrals.map((_, i) => i + 1),
    );
    for (const d of deferrals) {
      assert.equal(d.recipient, "carl@later.test");
      assert.equal(d.reply.status, "4.4.3");
    }
    const [expired] = of(late, "expired");
    assert.equal(expired.reply.status, "4.4.7");
    assert.equal(expired.attempt, deferrals.length + 1);
    // The two DSNs (for nobody@ and for carl@) were delivered to alice.
    const dsns = events.filter((e) => e.event === "delivered" && e.recipient === "alice@ours.test");
    assert.equal(dsns.length, 2);
    assert.ok(dsns.every((e) => e.sender === ""), "DSNs have the null sender");
    assert.equal(await outboxCount(mta.spoolDir), 0, "outbox empty once all were accepted");
  },
});

async function outbox(spoolDir: string): Promise<Pending[]> {
  const out: Pending[] = [];
  try {
    for await (const e of Deno.readDir(`${spoolDir}/webhooks`)) {
      if (!e.name.endsWith(".json")) continue;
      try {
        out.push(JSON.parse(await Deno.readTextFile(`${spoolDir}/webhooks/${e.name}`)));
      } catch {
        // Being replaced right now.
      }
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return out;
}

async function outboxCount(spoolDir: string): Promise<number> {
  return (await outbox(spoolDir)).length;
}

Deno.test({
  name: "webhooks: a receiver that is down gets every event after kill -9 and restart",
  ignore: needs,
  async fn() {
    const net = loopbackNet();
    const [mxPort, hookPort] = freePorts(2);
    const url = `http://127.0.0.1:${hookPort}/hook`;
    await using dns = await FakeDns.start(zone(net(2)));
    await using mx = await FakeMx.start(net(2), mxPort, {
      name: "mx.ok.test",
      rcpt: { "nobody@bad.test": "550 5.1.1 No such user" },
    });
    await using mta = await startWebMta({
      config: { delivery: deliveryConfig({ dns, port: mxPort, retry_schedule: ["1h"] }) },
      webhooks: [{ url, secret: SECRET }],
    });
    // The receiver is down (nothing listens on hookPort).
    const ok = await submit(mta, { to: ["bob@ok.test"] });
    const bad = await submit(mta, { to: ["nobody@bad.test"] });
    await submit(mta, { to: ["carl@later.test"] });
    // Delivery does not wait for the webhooks.
    await waitFor(
      "delivery while the receiver is down",
      async () =>
        (await isGone(mta, ok)) && (await isGone(mta, bad)) && (await mx.accepted()).length === 2,
    );
    await waitFor(
      "the DSN to be delivered",
      async () => (await mta.spoolFiles("msg")).length === 1,
    );
    const logged = produced(deliveryEvents(mta));
    assert.equal(logged.length, 4, "delivered, bounced, deferred, DSN delivered");
    // Every event is in the outbox, and the receiver was tried (events that came while it
    // was backing off wait for its retry instead of each costing a refused request).
    const stored = await waitFor(
      "all events stored and the receiver tried",
      async () => {
        const o = await outbox(mta.spoolDir);
        return o.length === logged.length && o.some((p) => p.attempts >= 1) && o;
      },
      15_000,
      async () => JSON.stringify(await outbox(mta.spoolDir)),
    );
    assert.deepEqual(stored.map((p) => key({ ...JSON.parse(p.body) })).sort(), logged);

    const dueIn = Math.max(...(await outbox(mta.spoolDir)).map((p) => p.next_at - Date.now()));
    await mta.kill9();
    assert.equal(await outboxCount(mta.spoolDir), logged.length, "outbox survives kill -9");

    await using hooks = WebhookReceiver.start(hookPort);
    const restarted = Date.now();
    await mta.launch();
    await waitFor(
      "every stored event at the receiver after the restart",
      () => hooks.received.length >= logged.length,
      45_000,
      () => `${hooks.received.length} of ${logged.length}`,
    );
    const waited = Date.now() - restarted;
    await waitFor("the outbox to empty", async () => (await outboxCount(mta.spoolDir)) === 0);
    await new Promise((r) => setTimeout(r, 500)); // nothing more should come
    const events = await verified(hooks.received, SECRET);
    assert.deepEqual(events.map(key).sort(), logged, "each produced event exactly once");
    // The stored backoff (dispatcher retryBaseMs, 10 s, not configurable) still applies after a
    // restart: the drain at start posts what is due, the rest when it falls due.
    // deno-lint-ignore no-console
    console.log(
      `webhook outbox: last retry was due ${(dueIn / 1000).toFixed(1)} s after kill -9; ` +
        `all events at the receiver ${(waited / 1000).toFixed(1)} s after the restart began`,
    );
  },
});

Deno.test("webhooks (in process): a receiver in backoff does not hold back events for another", async () => {
  const dir = await Deno.makeTempDir({ prefix: "minimta-webhooks-" });
  const spool = await Spool.open(dir, { fsync: false });
  const posted: { url: string; body: string }[] = [];
  let gate: PromiseWithResolvers<void> | null = null;
  const fakeFetch = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = String(input);
    if (url.includes("dead")) throw new TypeError("connection refused");
    if (gate) await gate.promise;
    posted.push({ url, body: String(init?.body) });
    return new Response(null, { status: 204 });
  }) as typeof fetch;
  const dispatcher = new WebhookDispatcher({
    targets: [
      { url: "http://dead.invalid/hook", events: ["delivered"], secret: SECRET },
      { url: "http://live.invalid/hook", events: ["delivered"], secret: SECRET },
    ],
    outbox: await spool.outbox<Pending>("webhooks"),
    fetch: fakeFetch,
    retryBaseMs: 60_000,
  });
  const event = (n: number) => dispatcher.record(deliveredEvent(n));
  const liveGot = (n: number) =>
    posted.some((p) => p.url.includes("live") && JSON.parse(p.body).queue_id === `Q${n}`);
  dispatcher.start();
  try {
    event(1);
    await waitFor("event 1 at the live receiver", () => liveGot(1), 5_000);
    // Event 2's drain is slow at the live receiver; event 3 comes in meanwhile.
    gate = Promise.withResolvers<void>();
    event(2);
    await new Promise((r) => setTimeout(r, 300));
    event(3);
    await new Promise((r) => setTimeout(r, 300));
    gate.resolve();
    gate = null;
    // The drain ends with the dead target's retry a minute away; event 3 must not wait for it.
    await waitFor("event 3 at the live receiver", () => liveGot(3), 5_000);
    assert.ok(liveGot(2));
  } finally {
    await dispatcher.stop();
    spool.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("webhooks (in process): a receiver that hangs holds back only its own events; a down one costs one request per retry", async () => {
  const dir = await Deno.makeTempDir({ prefix: "minimta-webhooks-" });
  const spool = await Spool.open(dir, { fsync: false });
  // A real HTTP server that reads each request and never answers.
  const hung = Promise.withResolvers<void>();
  let hungRequests = 0;
  const hanging = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async () => {
    hungRequests++;
    await hung.promise;
    return new Response(null, { status: 503 });
  });
  // A port where nothing listens: connection refused.
  const [downPort] = freePorts(1);
  let downRequests = 0;
  const countingFetch = ((input: string | URL | Request, init?: RequestInit) => {
    if (String(input).includes(`:${downPort}/`)) downRequests++;
    return fetch(input, init);
  }) as typeof fetch;
  await using live = WebhookReceiver.start();
  const dispatcher = new WebhookDispatcher({
    targets: [
      { url: `http://127.0.0.1:${hanging.addr.port}/hook`, events: ["delivered"], secret: SECRET },
      { url: `http://127.0.0.1:${downPort}/hook`, events: ["delivered"], secret: SECRET },
      { url: live.url, events: ["delivered"], secret: SECRET },
    ],
    outbox: await spool.outbox<Pending>("webhooks"),
    fetch: countingFetch,
    timeoutMs: 30_000,
    retryBaseMs: 60_000,
  });
  dispatcher.start();
  try {
    for (let n = 1; n <= 20; n++) {
      dispatcher.record(deliveredEvent(n));
    }
    await waitFor("20 events at the live receiver", () => live.received.length >= 20, 10_000);
    assert.ok(
      hungRequests >= 1 && hungRequests <= 4,
      `requests in flight to the hung one: ${hungRequests}`,
    );
    assert.ok(
      downRequests >= 1 && downRequests <= 4,
      `one round of refused requests (at most 4 in flight) puts the down receiver's other events off: ${downRequests}`,
    );
    const outbox = (await (await spool.outbox<Pending>("webhooks")).list()).map((e) => e.value);
    assert.equal(
      outbox.filter((p) => p.url.includes(`:${downPort}/`)).length,
      20,
      "kept for later",
    );
  } finally {
    hung.resolve();
    await dispatcher.stop();
    await hanging.shutdown();
    spool.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "webhooks: events whose POST hung at kill -9 are posted as soon as the daemon is back",
  ignore: needs,
  async fn() {
    const net = loopbackNet();
    const [mxPort, hookPort] = freePorts(2);
    await using dns = await FakeDns.start(zone(net(2)));
    await using _mx = await FakeMx.start(net(2), mxPort, { name: "mx.ok.test" });
    // A receiver that accepts connections and never answers.
    const hung = Deno.listen({ hostname: "127.0.0.1", port: hookPort });
    const held: Deno.Conn[] = [];
    const accepting = (async () => {
      try {
        for await (const conn of hung) held.push(conn);
      } catch {
        // Closed.
      }
    })();
    await using mta = await startWebMta({
      config: { delivery: deliveryConfig({ dns, port: mxPort, retry_schedule: ["1h"] }) },
      webhooks: [{ url: `http://127.0.0.1:${hookPort}/hook`, secret: SECRET }],
    });
    const ids = [
      await submit(mta, { to: ["a@ok.test"] }),
      await submit(mta, { to: ["b@ok.test"] }),
    ];
    await waitFor(
      "both delivered while the receiver hangs",
      async () => (await isGone(mta, ids[0])) && (await isGone(mta, ids[1])),
    );
    await waitFor("the first POST to be hanging", () => held.length >= 1);
    const stored = await outbox(mta.spoolDir);
    assert.equal(stored.length, 2);
    assert.ok(stored.every((p) => p.attempts === 0), "no attempt has finished");
    await mta.kill9();
    hung.close();
    for (const c of held) c.close();
    await accepting;

    await using hooks = WebhookReceiver.start(hookPort);
    const restarted = Date.now();
    await mta.launch();
    await waitFor("both events right after the restart", () => hooks.received.length >= 2, 10_000);
    const waited = Date.now() - restarted;
    assert.ok(waited < 8_000, `posted ${waited} ms after the restart began (no backoff to wait)`);
    const events = await verified(hooks.received, SECRET);
    assert.deepEqual(events.map((e) => e.queue_id).sort(), [...ids].sort());
    assert.ok(events.every((e) => e.event === "delivered"));
  },
});
