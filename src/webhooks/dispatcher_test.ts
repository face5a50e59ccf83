import assert from "node:assert/strict";
import type { MailEvent, RecipientEvent } from "../events/mod.ts";
import { type Pending, WebhookDispatcher } from "./dispatcher.ts";
import { toWebhookEvent } from "./formats.ts";

function attempt(type: RecipientEvent["type"]): RecipientEvent {
  return {
    type,
    queue_id: "Q1",
    recipient: "r@one.test",
    relay: "mx.one.test[192.0.2.1]",
    code: type === "delivered" ? 250 : type === "deferred" ? 451 : 550,
    status: "5.1.1",
    text: "no such user",
    attempt: 2,
    delay_s: 30,
    duration_ms: type === "expired" ? null : 12,
    from: "news@ours.test",
    message_id: "<m@ours.test>",
    tls: null,
  };
}

Deno.test("toWebhookEvent() names each recipient outcome as receivers know it", () => {
  const at = Date.parse("2026-12-02T10:00:00Z");
  const names = (["delivered", "deferred", "failed", "expired"] as const)
    .map((t) => toWebhookEvent(attempt(t), at)?.event);
  assert.deepEqual(names, ["delivered", "deferred", "bounced", "expired"]);
  const e = toWebhookEvent(attempt("failed"), at)!;
  assert.equal(e.queue_id, "Q1");
  assert.equal(e.sender, "news@ours.test");
  assert.equal(e.recipient, "r@one.test");
  assert.deepEqual(e.reply, {
    code: 550,
    status: "5.1.1",
    text: "no such user",
    remote: "mx.one.test[192.0.2.1]",
  });
  assert.equal(e.attempt, 2);
  assert.equal(e.occurred_at, "2026-12-02T10:00:00.000Z");
});

Deno.test("toWebhookEvent() ignores events that are not a recipient's outcome", () => {
  const others: MailEvent[] = [
    { type: "queued", queue_id: "Q1", from: "", recipients: 1, size: 1, message_id: null },
    { type: "bounced", queue_id: "Q1", dsn_id: "Q2", to: "a@b", recipients: ["r@one.test"] },
    { type: "message_expired", queue_id: "Q1", recipients: ["r@one.test"] },
  ];
  for (const e of others) assert.equal(toWebhookEvent(e, 0), null);
});

/**
 * An outbox in memory whose listing can be held while it is being read:
 * the real one reads a folder file by file, so a listing can see a record
 * that a drain running meanwhile posts and removes.
 */
class SlowListOutbox {
  records = new Map<string, Pending>();
  #n = 0;
  holdList: PromiseWithResolvers<void> | null = null;
  listing = Promise.withResolvers<void>();

  add(value: Pending): Promise<string> {
    const id = String(++this.#n).padStart(4, "0");
    this.records.set(id, structuredClone(value));
    return Promise.resolve(id);
  }
  put(id: string, value: Pending): Promise<void> {
    this.records.set(id, structuredClone(value));
    return Promise.resolve();
  }
  async list(): Promise<{ id: string; value: Pending }[]> {
    const snapshot = [...this.records].map(([id, value]) => ({ id, value }));
    if (this.holdList) {
      this.listing.resolve();
      await this.holdList.promise;
    }
    return snapshot;
  }
  remove(id: string): Promise<void> {
    this.records.delete(id);
    return Promise.resolve();
  }
}

Deno.test("WebhookDispatcher posts an event once even when a listing overlaps the drain that posts it", async () => {
  const outbox = new SlowListOutbox();
  const posted: string[] = [];
  let release!: () => void;
  const firstPostHeld = new Promise<void>((r) => (release = r));
  const fetch = (async (_url: string | URL | Request, init?: RequestInit) => {
    const body = JSON.parse(String(init?.body));
    posted.push(body.recipient);
    if (posted.length === 1) await firstPostHeld;
    return new Response(null, { status: 204 });
  }) as typeof globalThis.fetch;
  const dispatcher = new WebhookDispatcher({
    targets: [{ url: "http://hooks.invalid/", events: ["delivered"], secret: "s".repeat(16) }],
    // deno-lint-ignore no-explicit-any
    outbox: outbox as any,
    fetch,
  });
  dispatcher.start();
  try {
    dispatcher.record(attempt("delivered"));
    while (posted.length === 0) await new Promise((r) => setTimeout(r, 5));
    // A second event starts a listing while the first is still being posted; the
    // listing is held until the first post has ended and been removed.
    outbox.holdList = Promise.withResolvers<void>();
    dispatcher.record({ ...attempt("delivered"), recipient: "second@one.test" });
    await outbox.listing.promise;
    release();
    while (outbox.records.has("0001")) await new Promise((r) => setTimeout(r, 5));
    outbox.holdList.resolve();
    outbox.holdList = null;
    const deadline = Date.now() + 5_000;
    while (outbox.records.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(posted, ["r@one.test", "second@one.test"]);
  } finally {
    await dispatcher.stop();
  }
});
