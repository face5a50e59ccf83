import assert from "node:assert/strict";
import type { MessageMeta, RecipientState } from "../spool/mod.ts";
import { formatAge, nextStep, type NextStepOptions } from "./next_step.ts";

const NOW = new Date("2026-12-02T10:00:00Z");
const HOUR = 3_600_000;

function rcpt(address: string, status: RecipientState["status"], attempts = 1): RecipientState {
  return {
    address,
    status,
    attempts,
    last_error: status === "deferred" ? "mx.one.test[192.0.2.1] said: 451 4.3.0 busy" : null,
    last_status: null,
    remote: status === "deferred" ? "mx.one.test[192.0.2.1]" : null,
    updated_at: null,
  };
}

function meta(recipients: RecipientState[], ageMs = 60_000): MessageMeta {
  return {
    version: 1,
    id: "Q1",
    from: "news@ours.test",
    recipients,
    state: "queued",
    created_at: new Date(NOW.getTime() - ageMs).toISOString(),
    next_attempt_at: NOW.toISOString(),
    size: 100,
    message_id: null,
    auth_user: null,
    client_ip: null,
    is_bounce: false,
    smtputf8: false,
    eight_bit: false,
  };
}

const OPTIONS: NextStepOptions = {
  now: NOW,
  maxQueueLifetimeMs: 5 * 24 * HOUR,
  retrySchedule: [60_000, 600_000, HOUR],
  jitter: 0.1,
  random: () => 0.5, // no jitter
};

Deno.test("nextStep: an operator's delete wins over everything, even open recipients", () => {
  const m = meta([rcpt("a@one.test", "deferred")], 10 * 24 * HOUR);
  assert.deepEqual(nextStep(m, { ...OPTIONS, op: "delete" }), { kind: "delete" });
});

Deno.test("nextStep: open recipients are deferred by the schedule step of the most attempts", () => {
  const m = meta([rcpt("a@one.test", "deferred", 1), rcpt("b@one.test", "pending", 2)]);
  const step = nextStep(m, OPTIONS);
  assert.deepEqual(step, { kind: "defer", nextAttemptAt: new Date(NOW.getTime() + 600_000) });
  // Past the end the last step repeats.
  const late = nextStep(meta([rcpt("a@one.test", "deferred", 9)]), OPTIONS);
  assert.deepEqual(late, { kind: "defer", nextAttemptAt: new Date(NOW.getTime() + HOUR) });
});

Deno.test("nextStep: the retry delay has the jitter asked for, and nothing is changed in meta", () => {
  const m = meta([rcpt("a@one.test", "deferred", 1)]);
  const before = structuredClone(m);
  const low = nextStep(m, { ...OPTIONS, random: () => 0 });
  const high = nextStep(m, { ...OPTIONS, random: () => 1 });
  assert.equal(low.kind === "defer" && low.nextAttemptAt.getTime() - NOW.getTime(), 54_000);
  assert.equal(high.kind === "defer" && high.nextAttemptAt.getTime() - NOW.getTime(), 66_000);
  assert.deepEqual(m, before);
});

Deno.test("nextStep: a hold keeps open recipients held, but not a message with none open", () => {
  const open = meta([rcpt("a@one.test", "deferred")]);
  assert.deepEqual(nextStep(open, { ...OPTIONS, op: "hold" }), { kind: "hold" });
  const done = meta([rcpt("a@one.test", "delivered"), rcpt("b@one.test", "failed")]);
  assert.deepEqual(nextStep(done, { ...OPTIONS, op: "hold" }), { kind: "bounce" });
});

Deno.test("nextStep: no open recipient left means bounce (DSN for the failed, if any) and remove", () => {
  assert.deepEqual(nextStep(meta([rcpt("a@one.test", "delivered")]), OPTIONS), {
    kind: "bounce",
  });
  assert.deepEqual(nextStep(meta([rcpt("a@one.test", "failed")]), OPTIONS), { kind: "bounce" });
});

Deno.test("nextStep: past max_queue_lifetime the open recipients fail with 4.4.7 and their last error, before a hold", () => {
  const m = meta([
    rcpt("a@one.test", "deferred", 7),
    rcpt("b@one.test", "delivered"),
    rcpt("c@one.test", "pending", 0),
  ], 5 * 24 * HOUR);
  for (const op of [undefined, "hold"] as const) {
    const step = nextStep(m, { ...OPTIONS, op });
    assert.equal(step.kind, "expire");
    assert.ok(step.kind === "expire");
    assert.deepEqual(step.outcomes.map((o) => [o.address, o.kind, o.status, o.remote]), [
      ["a@one.test", "permanent", "4.4.7", "mx.one.test[192.0.2.1]"],
      ["c@one.test", "permanent", "4.4.7", null],
    ]);
    assert.equal(
      step.outcomes[0].text,
      "Message expired after 5 days in the queue; last error: mx.one.test[192.0.2.1] said: 451 4.3.0 busy",
    );
    assert.match(step.outcomes[1].text, /; last error: none$/);
  }
  // One millisecond younger: still deferred.
  const young = meta([rcpt("a@one.test", "deferred")], 5 * 24 * HOUR - 1);
  assert.equal(nextStep(young, OPTIONS).kind, "defer");
});

Deno.test("formatAge: days, hours, minutes, seconds", () => {
  assert.equal(formatAge(5 * 24 * HOUR), "5 days");
  assert.equal(formatAge(36 * HOUR), "1.5 days");
  assert.equal(formatAge(2 * HOUR), "2 hours");
  assert.equal(formatAge(90_000), "1.5 minutes");
  assert.equal(formatAge(4_000), "4 seconds");
});
