import assert from "node:assert/strict";
import { type Clock, install } from "@sinonjs/fake-timers";
import { DEFAULTS } from "../config/mod.ts";
import { EventStream } from "../events/mod.ts";
import { type Pending, WebhookDispatcher } from "../webhooks/mod.ts";
import { Spool } from "../spool/mod.ts";
import { DeliveryEngine, type DeliveryEngineOptions, type DeliveryTransport } from "./engine.ts";
import type { RecipientOutcome } from "./outcome.ts";
import type { AttemptRequest } from "./smtp_transport.ts";

type Script = (req: AttemptRequest, call: number) => RecipientOutcome["kind"];

// A transport scripted per test: the engine's decisions are what is under
// test here; the real SMTP transport is covered by tests/delivery_*.
function scripted(script: Script): DeliveryTransport & { calls: AttemptRequest[] } {
  const calls: AttemptRequest[] = [];
  return {
    calls,
    attempt(req) {
      calls.push(req);
      const kind = script(req, calls.length);
      return Promise.resolve(outcomes(req, kind));
    },
    close: () => Promise.resolve(),
  };
}

/** One outcome of `kind` for every recipient of `req`, as a scripted MX of the domain replies. */
function outcomes(req: AttemptRequest, kind: RecipientOutcome["kind"]): RecipientOutcome[] {
  return req.recipients.map((address) => ({
    address,
    kind,
    code: kind === "delivered" ? 250 : kind === "temporary" ? 451 : 550,
    status: kind === "delivered" ? "2.0.0" : kind === "temporary" ? "4.3.0" : "5.1.1",
    text: kind === "permanent" ? "No such user" : "scripted",
    remote: `mx.${req.domain}[192.0.2.1]`,
    tls: null,
  }));
}

async function withSpool(fn: (spool: Spool) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  const spool = await Spool.open(dir);
  try {
    await fn(spool);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const body = new TextEncoder().encode("From: a@ours.test\r\nSubject: t\r\n\r\nhello\r\n");

function message(from: string, recipients: string[]) {
  return {
    from,
    recipients,
    message_id: "<t@ours.test>",
    auth_user: "a",
    client_ip: "127.0.0.1",
    is_bounce: false,
    smtputf8: false,
    eight_bit: false,
  };
}

/** An engine with the default config's delivery settings, but for `options`. */
function testEngine(
  spool: Spool,
  transport: DeliveryTransport,
  options: Partial<DeliveryEngineOptions> = {},
): DeliveryEngine {
  const d = DEFAULTS.delivery;
  return new DeliveryEngine({
    spool,
    transport,
    hostname: "mx.ours.test",
    emit: () => {},
    concurrency: d.concurrency,
    delayWarningMs: d.delay_warning,
    perDomainConcurrency: d.per_domain_concurrency,
    retrySchedule: d.retry_schedule,
    maxQueueLifetimeMs: d.max_queue_lifetime,
    ...options,
  });
}

/** An engine retrying every 300 ms. */
function fastRetries(
  spool: Spool,
  transport: DeliveryTransport,
  options: Partial<DeliveryEngineOptions> = {},
): DeliveryEngine {
  return testEngine(spool, transport, { retrySchedule: [300], ...options });
}

// Captured before any fake clock is installed: polling waits for real I/O.
const realSetTimeout = globalThis.setTimeout;
const pause = (ms: number) => new Promise((r) => realSetTimeout(r, ms));

/**
 * Polls `check` until it holds. With a `clock`, each round also moves the
 * fake time on by `stepMs`, so retry timers fire only as the test lets them.
 */
async function until(
  check: () => Promise<boolean>,
  ms = 3000,
  fake?: { clock: Clock; stepMs: number },
): Promise<void> {
  const end = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > end) throw new Error("condition not reached in time");
    await pause(10);
    if (fake) await fake.clock.tickAsync(fake.stepMs);
  }
}

/**
 * Runs `fn` with a fake clock for `Date` and the timers (the engine's retry
 * timers and the spool's and engine's default `now`); the spool's file I/O
 * stays real. Time moves only when the test ticks it.
 */
async function withClock(fn: (clock: Clock) => Promise<void>): Promise<void> {
  const clock = install({
    now: new Date("2026-12-02T10:00:00Z"),
    toFake: ["Date", "setTimeout", "clearTimeout"],
  });
  try {
    await fn(clock);
  } finally {
    clock.uninstall();
  }
}

Deno.test("engine sends one transaction per domain and removes a fully delivered message", async () => {
  await withSpool(async (spool) => {
    const transport = scripted(() => "delivered");
    const engine = testEngine(spool, transport);
    await engine.start();
    await spool.create([body], message("a@ours.test", ["x@one.test", "y@one.test", "z@two.test"]));
    await until(async () => (await spool.ids()).length === 0);
    await engine.stop();
    const domains = transport.calls.map((c) => `${c.domain}:${c.recipients.length}`).sort();
    assert.deepEqual(domains, ["one.test:2", "two.test:1"]);
  });
});

Deno.test("engine defers a temporary failure, records it, and retries on schedule", async () => {
  await withClock((clock) =>
    withSpool(async (spool) => {
      const transport = scripted((_req, call) => (call === 1 ? "temporary" : "delivered"));
      const engine = fastRetries(spool, transport);
      await engine.start();
      const meta = await spool.create([body], message("a@ours.test", ["x@one.test"]));
      await until(async () => (await spool.get(meta.id)).state === "deferred");
      const deferred = await spool.get(meta.id);
      assert.equal(deferred.recipients[0].status, "deferred");
      assert.equal(deferred.recipients[0].attempts, 1);
      assert.match(deferred.recipients[0].last_error ?? "", /451 4\.3\.0 scripted/);
      assert.ok(Date.parse(deferred.next_attempt_at) > Date.now());
      // The retry waits for its time (the 300 ms step, jittered) and no longer.
      await clock.tickAsync(Date.parse(deferred.next_attempt_at) - Date.now() - 1);
      await pause(50);
      assert.equal(transport.calls.length, 1, "no retry before next_attempt_at");
      await clock.tickAsync(1);
      await until(async () => (await spool.ids()).length === 0);
      await engine.stop();
      assert.equal(transport.calls.length, 2);
    })
  );
});

Deno.test("engine keeps retrying when the next retry is due before the attempt's metadata write ends", async () => {
  await withSpool(async (spool) => {
    // A 0 ms step: the retry is due while the message is still in flight.
    const transport = scripted((_req, call) => (call <= 3 ? "temporary" : "delivered"));
    const engine = fastRetries(spool, transport, { retrySchedule: [0] });
    await engine.start();
    await spool.create([body], message("a@ours.test", ["x@one.test"]));
    await until(async () => (await spool.ids()).length === 0);
    await engine.stop();
    assert.equal(transport.calls.length, 4, "three deferrals, then delivered");
  });
});

Deno.test("engine bounces permanent failures with one DSN to the sender", async () => {
  await withSpool(async (spool) => {
    const transport = scripted((
      req,
    ) => (req.recipients[0].startsWith("bad") ? "permanent" : "delivered"));
    const engine = testEngine(spool, transport);
    await engine.start();
    const original = await spool.create(
      [body],
      message("a@ours.test", ["bad1@one.test", "bad2@two.test", "good@three.test"]),
    );
    await until(() => Promise.resolve(transport.calls.some((c) => c.from === "")));
    await until(async () => (await spool.ids()).length === 0);
    await engine.stop();
    const dsn = transport.calls.filter((c) => c.from === "");
    assert.equal(dsn.length, 1, "exactly one DSN");
    assert.deepEqual(dsn[0].recipients, ["a@ours.test"]);
    const text = new TextDecoder().decode(dsn[0].body);
    assert.match(text, /report-type=delivery-status/);
    assert.match(text, /Final-Recipient: rfc822; bad1@one\.test/);
    assert.match(text, /Final-Recipient: rfc822; bad2@two\.test/);
    assert.doesNotMatch(text, /Final-Recipient: rfc822; good@three\.test/);
    assert.match(text, new RegExp(`X-Minimta-Queue-ID: ${original.id}`));
  });
});

Deno.test("engine never bounces a message with the null sender", async () => {
  await withSpool(async (spool) => {
    const transport = scripted(() => "permanent");
    const engine = testEngine(spool, transport);
    await engine.start();
    await spool.create([body], { ...message("", ["bad@one.test"]), is_bounce: true });
    await until(async () => (await spool.ids()).length === 0);
    await new Promise((r) => setTimeout(r, 50));
    await engine.stop();
    assert.equal(transport.calls.length, 1);
  });
});

Deno.test("engine fails recipients still deferred after the queue lifetime", async () => {
  await withClock((clock) =>
    withSpool(async (spool) => {
      const transport = scripted((req) => (req.from === "" ? "delivered" : "temporary"));
      const engine = testEngine(spool, transport, {
        retrySchedule: [100],
        maxQueueLifetimeMs: 250,
      });
      await engine.start();
      await spool.create([body], message("a@ours.test", ["slow@one.test"]));
      const fake = { clock, stepMs: 50 };
      await until(() => Promise.resolve(transport.calls.some((c) => c.from === "")), 3000, fake);
      await until(async () => (await spool.ids()).length === 0);
      await engine.stop();
      const dsn = transport.calls.find((c) => c.from === "")!;
      assert.match(new TextDecoder().decode(dsn.body), /Status: 4\.4\.7/);
      assert.ok(transport.calls.filter((c) => c.from !== "").length >= 2);
    })
  );
});

Deno.test("engine rebuilds its schedule from the spool and skips held messages", async () => {
  await withSpool(async (spool) => {
    const held = await spool.create([body], message("a@ours.test", ["h@one.test"]));
    await spool.writeMeta({ ...held, state: "held" });
    await spool.create([body], message("a@ours.test", ["q@two.test"]));
    const transport = scripted(() => "delivered");
    const engine = testEngine(spool, transport);
    await engine.start();
    await until(async () => (await spool.ids()).length === 1);
    await new Promise((r) => setTimeout(r, 50));
    await engine.stop();
    assert.deepEqual(await spool.ids(), [held.id]);
    assert.deepEqual(transport.calls.map((c) => c.domain), ["two.test"]);
  });
});

Deno.test("engine keeps a small domain moving behind a large backlog to one domain", async () => {
  await withSpool(async (spool) => {
    const order: string[] = [];
    const transport: DeliveryTransport = {
      async attempt(req) {
        await new Promise((r) => setTimeout(r, req.domain === "big.test" ? 30 : 1));
        order.push(req.domain);
        return outcomes(req, "delivered");
      },
      close: () => Promise.resolve(),
    };
    for (let i = 0; i < 60; i++) {
      await spool.create([body], message("a@ours.test", [`u${i}@big.test`]));
    }
    await spool.create([body], message("a@ours.test", ["reset@small.test"]));
    const engine = testEngine(spool, transport, {
      concurrency: 10,
      perDomainConcurrency: 2,
    });
    await engine.start();
    await until(async () => (await spool.ids()).length === 0, 10_000);
    await engine.stop();
    const small = order.indexOf("small.test");
    assert.ok(
      small >= 0 && small < 10,
      `small.test delivered at position ${small} of ${order.length}`,
    );
  });
});

const TWO_DAYS = 2 * 86_400_000;

Deno.test("D15: retries written under a clock two days ahead are not left waiting two days after a restart", async () => {
  await withClock((clock) =>
    withSpool(async (spool) => {
      const meta = await spool.create([body], message("a@ours.test", ["x@one.test"]));
      meta.state = "deferred";
      meta.next_attempt_at = new Date(Date.now() + TWO_DAYS).toISOString();
      await spool.writeMeta(meta);
      const transport = scripted(() => "delivered");
      const engine = fastRetries(spool, transport);
      await engine.start();
      await until(async () => (await spool.ids()).length === 0, 5000, { clock, stepMs: 100 });
      await engine.stop();
      assert.equal(transport.calls.length, 1);
    })
  );
});

Deno.test("D15: a clock that goes back two days while running does not stall the next retry", async () => {
  await withClock((clock) =>
    withSpool(async (spool) => {
      let offset = TWO_DAYS;
      const transport = scripted((_req, call) => (call === 1 ? "temporary" : "delivered"));
      const engine = fastRetries(spool, transport, { now: () => new Date(Date.now() + offset) });
      await engine.start();
      const meta = await spool.create([body], message("a@ours.test", ["x@one.test"]));
      await until(async () => (await spool.get(meta.id)).state === "deferred");
      offset = 0; // the clock is set right after the retry was scheduled
      await until(async () => (await spool.ids()).length === 0, 5000, { clock, stepMs: 100 });
      await engine.stop();
      assert.equal(transport.calls.length, 2);
    })
  );
});

Deno.test("D15: after a jump two days forward, an over-age message gets one last attempt and exactly one DSN", async () => {
  await withClock((clock) =>
    withSpool(async (spool) => {
      const meta = await spool.create([body], message("a@ours.test", ["x@one.test", "y@one.test"]));
      meta.state = "deferred";
      meta.next_attempt_at = new Date(Date.now() + 3_600_000).toISOString();
      await spool.writeMeta(meta);
      const transport = scripted((req) => (req.domain === "one.test" ? "temporary" : "delivered"));
      const engine = fastRetries(spool, transport, {
        maxQueueLifetimeMs: 86_400_000,
        now: () => new Date(Date.now() + TWO_DAYS),
      });
      await engine.start();
      await until(async () => (await spool.ids()).length === 0, 5000, { clock, stepMs: 100 });
      await clock.tickAsync(700); // two retry steps: nothing more happens
      await pause(50);
      await engine.stop();
      const calls = transport.calls.map((c) => `${c.domain}:${c.recipients.join()}`);
      assert.deepEqual(calls, ["one.test:x@one.test,y@one.test", "ours.test:a@ours.test"]);
    })
  );
});

/**
 * One domain, one connection: A is in its attempt until `letA()`, B waits
 * for the domain's slot and C waits aside in the domain gate. Returns once
 * all three are placed so.
 */
async function gateScene(spool: Spool) {
  let letA!: () => void;
  const aMayFinish = new Promise<void>((r) => (letA = r));
  const calls: string[] = [];
  const transport: DeliveryTransport = {
    async attempt(req) {
      calls.push(req.recipients[0]);
      if (req.recipients[0] === "a@one.test") await aMayFinish;
      return outcomes(req, "delivered");
    },
    close: () => Promise.resolve(),
  };
  const engine = testEngine(spool, transport, {
    perDomainConcurrency: 1,
  });
  await engine.start();
  const a = await spool.create([body], message("s@ours.test", ["a@one.test"]));
  await until(() => Promise.resolve(calls.includes("a@one.test")));
  const b = await spool.create([body], message("s@ours.test", ["b@one.test"]));
  const c = await spool.create([body], message("s@ours.test", ["c@one.test"]));
  return { engine, calls, letA, a, b, c };
}

/** Waits up to `ms` for `check`, then goes on either way (for "must not happen" checks). */
async function awhile(check: () => boolean, ms = 500): Promise<void> {
  const end = Date.now() + ms;
  while (!check() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
}

Deno.test("engine: a hold of a message waiting in the domain gate wins over the gate releasing it meanwhile", async () => {
  await withSpool(async (spool) => {
    const { engine, calls, letA, b, c } = await gateScene(spool);
    // The gate releases C (A ends) while the operator's hold is still being
    // written: the attempt must not start from the metadata read before it.
    const write = spool.writeMeta.bind(spool);
    spool.writeMeta = async (meta) => {
      if (meta.id === c.id && meta.state === "held") {
        letA();
        await awhile(() => calls.includes("c@one.test"));
      }
      await write(meta);
    };
    assert.equal(await engine.operate(c.id, "hold"), `${c.id}: held`);
    await until(async () => (await spool.ids()).length === 1);
    assert.deepEqual(await spool.ids(), [c.id]);
    await awhile(() => calls.includes("c@one.test"), 200);
    assert.deepEqual(calls, ["a@one.test", "b@one.test"], "the held message was delivered");
    assert.equal((await spool.get(c.id)).state, "held");
    assert.equal(engine.index.get(c.id)?.state, "held");
    assert.ok(!(await spool.ids()).includes(b.id));
    assert.equal(await engine.operate(c.id, "release"), `${c.id}: released`);
    await until(async () => (await spool.ids()).length === 0);
    await engine.stop();
    assert.deepEqual(calls, ["a@one.test", "b@one.test", "c@one.test"]);
  });
});

Deno.test("engine: a delete of a message waiting in the domain gate wins over the gate releasing it meanwhile", async () => {
  await withSpool(async (spool) => {
    const { engine, calls, letA, c } = await gateScene(spool);
    const remove = spool.remove.bind(spool);
    spool.remove = async (id, options) => {
      if (id === c.id && options?.durable) {
        letA();
        await awhile(() => calls.includes("c@one.test"));
      }
      await remove(id, options);
    };
    assert.equal(await engine.operate(c.id, "delete"), `${c.id}: deleted`);
    await until(async () => (await spool.ids()).length === 0);
    await awhile(() => calls.includes("c@one.test"), 200);
    await engine.stop();
    assert.deepEqual(calls, ["a@one.test", "b@one.test"], "the deleted message was delivered");
    assert.equal(engine.index.get(c.id), undefined);
  });
});

Deno.test("engine: hold, release and retry of a message in the domain gate deliver it exactly once", async () => {
  await withSpool(async (spool) => {
    const { engine, calls, letA, c } = await gateScene(spool);
    await engine.operate(c.id, "hold");
    await engine.operate(c.id, "release");
    await engine.operate(c.id, "retry");
    assert.equal(engine.queued, 3);
    letA();
    await until(async () => (await spool.ids()).length === 0);
    await awhile(() => calls.length > 3, 200);
    await engine.stop();
    assert.deepEqual(calls, ["a@one.test", "b@one.test", "c@one.test"]);
  });
});

Deno.test("engine: a message leaves the spool only once its outcomes' webhook events are stored", async () => {
  await withSpool(async (spool) => {
    // The real outbox on a slow disk: each event takes 300 ms to be kept.
    const real = await spool.outbox<Pending>("webhooks");
    const slow = {
      add: async (value: Pending) => {
        await pause(300);
        return await real.add(value);
      },
      put: (id: string, value: Pending) => real.put(id, value),
      list: () => real.list(),
      remove: (id: string) => real.remove(id),
    } as unknown as typeof real;
    const events = new EventStream();
    const webhooks = new WebhookDispatcher({
      targets: [{
        url: "http://hooks.invalid/",
        events: ["delivered", "bounced"],
        secret: "s".repeat(16),
      }],
      outbox: slow,
    });
    events.on(webhooks.record, webhooks.stored);
    const transport = scripted((req) => req.domain === "one.test" ? "delivered" : "permanent");
    const engine = testEngine(spool, transport, { emit: events.emit, eventsStored: events.stored });
    await engine.start();
    const { id } = await spool.create([body], message("a@ours.test", ["x@one.test", "y@two.test"]));
    await until(async () => !(await spool.ids()).includes(id));
    // A kill -9 now must still find both outcomes waiting to be posted.
    // (The DSN to a@ours.test, failing in turn, may add its own event.)
    const kept = (await real.list()).filter((e) => JSON.parse(e.value.body).queue_id === id)
      .map((e) => e.value.event);
    await engine.stop();
    await webhooks.stop();
    assert.deepEqual(kept.sort(), ["bounced", "delivered"]);
  });
});
