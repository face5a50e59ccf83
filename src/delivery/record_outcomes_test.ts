import assert from "node:assert/strict";
import type { MailEvent } from "../events/mod.ts";
import { local, type RecipientOutcome } from "./outcome.ts";
import { recordOutcomes } from "./record_outcomes.ts";
import { testMeta } from "./_test_meta.ts";

const NOW = new Date("2026-12-02T10:00:00Z");

const meta = (addresses: string[]) => testMeta(addresses);

function reply(address: string, kind: RecipientOutcome["kind"], code: number): RecipientOutcome {
  return {
    address,
    kind,
    code,
    status: `${String(code)[0]}.0.0`,
    text: "text",
    remote: "mx.one.test[192.0.2.1]",
    tls: { used: true, version: "TLSv1.3", verified: false },
  };
}

Deno.test("recordOutcomes() sets each recipient's state and emits one typed event per recipient", () => {
  const m = meta(["a@one.test", "b@one.test", "c@one.test"]);
  const events: MailEvent[] = [];
  recordOutcomes(m, [
    reply("a@one.test", "delivered", 250),
    reply("b@one.test", "temporary", 451),
    reply("c@one.test", "permanent", 550),
  ], { now: NOW, durationMs: 42, expired: false, emit: (e) => events.push(e) });
  assert.deepEqual(m.recipients.map((r) => [r.status, r.attempts]), [
    ["delivered", 1],
    ["deferred", 1],
    ["failed", 1],
  ]);
  assert.equal(m.recipients[0].last_error, null);
  assert.equal(m.recipients[2].last_error, "mx.one.test[192.0.2.1] said: 550 5.0.0 text");
  assert.deepEqual(events.map((e) => e.type), ["delivered", "deferred", "failed"]);
  const first = events[0];
  assert.ok(first.type === "delivered");
  assert.equal(first.queue_id, "Q1");
  assert.equal(first.recipient, "a@one.test");
  assert.equal(first.delay_s, 60);
  assert.equal(first.duration_ms, 42);
  assert.deepEqual(first.tls, { used: true, version: "TLSv1.3", verified: false });
});

Deno.test("recordOutcomes() marks expiry as `expired` events with no duration", () => {
  const m = meta(["a@one.test"]);
  const events: MailEvent[] = [];
  recordOutcomes(m, [local("a@one.test", "permanent", "4.4.7", "Message expired")], {
    now: NOW,
    durationMs: null,
    expired: true,
    emit: (e) => events.push(e),
  });
  assert.equal(m.recipients[0].status, "failed");
  assert.equal(events.length, 1);
  assert.equal(events[0].type, "expired");
  assert.ok(events[0].type === "expired" && events[0].duration_ms === null);
});

Deno.test("recordOutcomes() ignores recipients already finished and outcomes for unknown addresses", () => {
  const m = meta(["a@one.test"]);
  m.recipients[0].status = "delivered";
  const events: MailEvent[] = [];
  const emit = (e: MailEvent) => events.push(e);
  recordOutcomes(
    m,
    [reply("a@one.test", "permanent", 550), reply("x@one.test", "delivered", 250)],
    {
      now: NOW,
      durationMs: 1,
      expired: false,
      emit,
    },
  );
  assert.equal(m.recipients[0].status, "delivered");
  assert.deepEqual(events, []);
});

Deno.test("recordOutcomes() keeps a bounded attempt history per recipient", () => {
  const m = meta(["a@one.test"]);
  for (let i = 0; i < 50; i++) {
    recordOutcomes(m, [reply("a@one.test", "temporary", 451)], {
      now: NOW,
      durationMs: 1,
      expired: false,
      emit: () => {},
    });
  }
  assert.equal(m.recipients[0].attempts, 50);
  assert.ok((m.recipients[0].history ?? []).length <= 20);
});
