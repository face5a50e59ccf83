import assert from "node:assert/strict";
import { EventStream, type MailEvent } from "./mod.ts";

const held: MailEvent = { type: "held", queue_id: "Q1", by: "operator" };

Deno.test("EventStream sends every event to every listener, in order", () => {
  const stream = new EventStream();
  const a: string[] = [];
  const b: string[] = [];
  stream.on((e) => a.push(e.type));
  stream.on((e) => b.push(e.type));
  stream.emit(held);
  stream.emit({ type: "released", queue_id: "Q1", by: "operator" });
  assert.deepEqual(a, ["held", "released"]);
  assert.deepEqual(b, ["held", "released"]);
});

Deno.test("EventStream: a listener that throws does not keep the event from the others", () => {
  const stream = new EventStream();
  const seen: string[] = [];
  stream.on(() => {
    throw new Error("broken metrics");
  });
  stream.on((e) => seen.push(e.type));
  const { emit } = stream; // passed around unbound, as components receive it
  emit(held);
  assert.deepEqual(seen, ["held"]);
});

Deno.test("EventStream.on() returns a function that stops the listener", () => {
  const stream = new EventStream();
  const seen: string[] = [];
  const off = stream.on((e) => seen.push(e.type));
  stream.emit(held);
  off();
  stream.emit(held);
  assert.equal(seen.length, 1);
});
