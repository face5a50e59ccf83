import assert from "node:assert/strict";
import { DueQueue } from "./due_queue.ts";

Deno.test("DueQueue pops ids in due order and only once due", () => {
  const q = new DueQueue();
  q.set("c", 30);
  q.set("a", 10);
  q.set("b", 20);
  assert.equal(q.popDue(5), null);
  assert.equal(q.popDue(25), "a");
  assert.equal(q.popDue(25), "b");
  assert.equal(q.popDue(25), null);
  assert.equal(q.peek(), 30);
  assert.equal(q.size, 1);
});

Deno.test("DueQueue re-scheduling and deleting drop the stale entries", () => {
  const q = new DueQueue();
  q.set("a", 10);
  q.set("b", 20);
  q.set("a", 50);
  q.delete("b");
  assert.equal(q.popDue(40), null);
  assert.equal(q.peek(), 50);
  assert.equal(q.popDue(50), "a");
  assert.equal(q.size, 0);
});

Deno.test("DueQueue keeps order over many random entries", () => {
  const q = new DueQueue();
  const dues = Array.from(
    { length: 1000 },
    (_, i) => ({ id: `m${i}`, due: Math.floor(Math.random() * 10_000) }),
  );
  for (const { id, due } of dues) q.set(id, due);
  let last = -1;
  let count = 0;
  for (let id = q.popDue(Infinity); id !== null; id = q.popDue(Infinity)) {
    const due = dues.find((d) => d.id === id)!.due;
    assert.ok(due >= last);
    last = due;
    count++;
  }
  assert.equal(count, 1000);
});
