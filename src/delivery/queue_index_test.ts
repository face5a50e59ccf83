import assert from "node:assert/strict";
import type { MessageMeta, RecipientState } from "../spool/mod.ts";
import { QueueIndex } from "./queue_index.ts";

function rcpt(address: string, over: Partial<RecipientState> = {}): RecipientState {
  return {
    address,
    status: "pending",
    attempts: 0,
    last_error: null,
    last_status: null,
    remote: null,
    updated_at: null,
    ...over,
  };
}

function meta(id: string, over: Partial<MessageMeta> = {}): MessageMeta {
  return {
    version: 1,
    id,
    from: "news@ours.test",
    recipients: [rcpt("a@dest.test")],
    state: "queued",
    created_at: "2026-12-01T10:00:00.000Z",
    next_attempt_at: "2026-12-01T10:00:00.000Z",
    size: 1234,
    message_id: `<${id}@ours.test>`,
    auth_user: "alice",
    client_ip: "127.0.0.1",
    is_bounce: false,
    smtputf8: false,
    eight_bit: false,
    ...over,
  };
}

Deno.test("queue index: summaries give back the list --json fields exactly, in id order", () => {
  const index = new QueueIndex();
  const two = meta("0000000000000002", {
    state: "deferred",
    from: "",
    message_id: null,
    // Not canonical ISO 8601: kept as written.
    created_at: "2026-12-01T10:00:00Z",
    recipients: [
      rcpt("x@one.test", {
        status: "deferred",
        attempts: 3,
        last_error: "451 try later",
        history: [{
          at: "2026-12-01T10:00:00.000Z",
          outcome: "transient",
          status: "4.0.0",
          text: "451 try later",
          remote: null,
        }],
      }),
      rcpt("y@two.test", { status: "delivered", attempts: 1 }),
      rcpt("z@one.test", { status: "failed", attempts: 2, last_error: "550 no" }),
    ],
  });
  const one = meta("0000000000000001");
  index.set(two);
  index.set(one);
  const project = (m: MessageMeta) => ({
    id: m.id,
    from: m.from,
    state: m.state,
    created_at: m.created_at,
    next_attempt_at: m.next_attempt_at,
    size: m.size,
    message_id: m.message_id,
    recipients: m.recipients.map((r) => ({
      address: r.address,
      status: r.status,
      attempts: r.attempts,
      last_error: r.last_error,
    })),
  });
  assert.deepEqual([...index.summaries()], [project(one), project(two)]);
  assert.deepEqual(index.openDomains(two.id), ["one.test"]);
  const entry = index.get(two.id)!;
  assert.deepEqual(entry.open, ["x@one.test"]);
  assert.equal(entry.last_error, "451 try later");
  assert.equal(entry.recipients, 3);
  assert.deepEqual(index.topDeferredDomains(5), [
    { domain: "one.test", recipients: 1, last_error: "451 try later" },
  ]);
  assert.deepEqual(index.counts(), { queued: 1, deferred: 1, held: 0 });
});

Deno.test("queue index: search matches id, sender and recipients without case, newest first", () => {
  const index = new QueueIndex();
  index.set(meta("00000000000000AA", { from: "Boss@Ours.Test" }));
  index.set(meta("00000000000000AB", { recipients: [rcpt("Someone@Rare.Test")] }));
  index.set(meta("00000000000000AC", { state: "held" }));
  const ids = (q: string, state?: "held") => index.search({ q, state }).items.map((e) => e.id);
  assert.deepEqual(ids("boss@ours"), ["00000000000000AA"]);
  assert.deepEqual(ids("@rare.test"), ["00000000000000AB"]);
  assert.deepEqual(ids("00aB"), ["00000000000000AB"]);
  assert.deepEqual(ids("00000000000000a"), [
    "00000000000000AC",
    "00000000000000AB",
    "00000000000000AA",
  ]);
  assert.deepEqual(ids("", "held"), ["00000000000000AC"]);
  assert.deepEqual(ids("nowhere"), []);
});

/** Newline-ended text as the lines a snapshot file gives (fileLines). */
function linesOf(text: string): Uint8Array[] {
  return text.split("\n").slice(0, -1).map((l) => new TextEncoder().encode(l));
}

Deno.test("queue index: a snapshot read back gives the same summaries, counts and schedule", () => {
  const index = new QueueIndex();
  index.set(meta("0000000000000001"));
  index.set(meta("0000000000000003", {
    state: "held",
    from: "",
    message_id: null,
    created_at: "2026-12-01T10:00:00Z", // not canonical: kept as text
    recipients: [
      rcpt("x@one.test", { status: "deferred", attempts: 2, last_error: '451 "later"\n ü' }),
      rcpt("y@two.test", { status: "delivered", attempts: 1 }),
    ],
  }));
  index.set(meta("0000000000000002", {
    state: "deferred",
    recipients: [rcpt("z@one.test", { status: "deferred", attempts: 1, last_error: "421 busy" })],
  }));
  const lines = [...index.snapshot()];
  assert.equal(lines.length, 3);
  const back = QueueIndex.fromSnapshot(linesOf(lines.join("")));
  assert.deepEqual([...back.summaries()], [...index.summaries()]);
  assert.deepEqual(back.counts(), { queued: 1, deferred: 1, held: 1 });
  assert.deepEqual([...back.due()].sort(), [...index.due()].sort());
  assert.equal(back.size, 3);
  assert.ok(back.has("0000000000000003") && !back.has("0000000000000004"));
  assert.deepEqual(back.openDomains("0000000000000003"), ["one.test"]);
  assert.equal(QueueIndex.fromSnapshot([]).size, 0);
});

Deno.test("queue index: a snapshot with a bad line is refused, naming the line", () => {
  const good = [
    ...(() => {
      const index = new QueueIndex();
      index.set(meta("0000000000000001"));
      return index;
    })().snapshot(),
  ][0];
  const row = JSON.parse(good);
  const bad: [string, string][] = [
    ["not JSON", "{"],
    ["a path for an id", JSON.stringify(["../../etc/passwd", ...row.slice(1)])],
    ["state 7", JSON.stringify([row[0], 7, ...row.slice(2)])],
    ["a negative size", JSON.stringify([...row.slice(0, 5), -1, ...row.slice(6)])],
    [
      "codes that do not match the recipients",
      JSON.stringify([...row.slice(0, 7), ["a", "b"], [1], null]),
    ],
    ["a field missing", JSON.stringify(row.slice(0, 9))],
  ];
  for (const [what, line] of bad) {
    assert.throws(
      () => QueueIndex.fromSnapshot(linesOf(`${good}${line}\n`)),
      /line 2 is not a queued message/,
      what,
    );
  }
  assert.throws(() => QueueIndex.fromSnapshot(linesOf(good + good)), /line 2: .* twice/);
});
