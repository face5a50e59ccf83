import assert from "node:assert/strict";
import type { RecipientEvent } from "../events/mod.ts";
import { Metrics } from "./metrics.ts";

function attempt(type: RecipientEvent["type"], status: string): RecipientEvent {
  return {
    type,
    queue_id: "Q1",
    recipient: "r@one.test",
    relay: null,
    code: null,
    status,
    text: "",
    attempt: 1,
    delay_s: 0,
    duration_ms: type === "expired" ? null : 1500,
    from: "",
    message_id: null,
    tls: null,
  };
}

Deno.test("Metrics counts typed mail events by outcome and status class", () => {
  const m = new Metrics();
  m.record(attempt("delivered", "2.0.0"));
  m.record(attempt("deferred", "4.4.1"));
  m.record(attempt("failed", "5.1.1"));
  m.record(attempt("expired", "4.4.7"));
  m.record({ type: "queued", queue_id: "Q1", from: "", recipients: 1, size: 1, message_id: null });
  m.record({ type: "signed", queue_id: "Q1", domains: ["a.test", "b.test"] });
  m.record({
    type: "rejected",
    session: "s",
    client_ip: "::1",
    stage: "rcpt_to",
    code: 550,
    reason: "x",
  });
  const c = (outcome: string, status_class: string) =>
    m.counter("minimta_deliveries_total", { outcome, status_class });
  assert.equal(c("delivered", "2"), 1);
  assert.equal(c("deferred", "4"), 1);
  assert.equal(c("bounced", "5"), 1);
  assert.equal(c("expired", "4"), 1);
  assert.equal(m.counter("minimta_messages_received_total"), 1);
  assert.equal(m.counter("minimta_dkim_signatures_total"), 2);
  assert.equal(m.counter("minimta_messages_rejected_total", { stage: "rcpt_to" }), 1);
  const minute = m.series(1)[0];
  assert.deepEqual(minute, { received: 1, delivered: 1, deferred: 1, bounced: 2 });
});
