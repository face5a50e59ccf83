import assert from "node:assert/strict";
import { DomainGate } from "./domain_gate.ts";

Deno.test("DomainGate parks messages for a busy domain and lets other domains through", () => {
  const gate = new DomainGate(2);
  assert.equal(gate.admit("a1", ["big.test"]), true);
  assert.equal(gate.admit("a2", ["big.test"]), true);
  assert.equal(gate.admit("a3", ["big.test"]), false, "big.test is busy");
  assert.equal(gate.admit("a4", ["big.test"]), false);
  assert.equal(gate.admit("b1", ["small.test"]), true, "another domain is not held up");
  assert.equal(gate.admit("c1", ["big.test", "small.test"]), true, "one free domain is enough");
  assert.equal(gate.parked, 2);
  assert.deepEqual(gate.release(["big.test"]), ["a3"], "oldest parked first");
  assert.deepEqual(gate.release(["big.test"]), ["a4"]);
  assert.deepEqual(gate.release(["big.test"]), []);
  assert.equal(gate.parked, 0);
});

Deno.test("DomainGate.forget() takes a parked message out, so it is never resumed", () => {
  const gate = new DomainGate(1);
  assert.equal(gate.admit("a1", ["big.test"]), true);
  assert.equal(gate.admit("a2", ["big.test"]), false);
  assert.equal(gate.admit("a3", ["big.test"]), false);
  gate.forget("a2");
  gate.forget("unknown");
  assert.equal(gate.parked, 1);
  assert.deepEqual(gate.release(["big.test"]), ["a3"]);
  gate.forget("a3");
  assert.equal(gate.parked, 0);
});
