import assert from "node:assert/strict";
import type { MailEvent, RecipientEvent } from "../events/mod.ts";
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
