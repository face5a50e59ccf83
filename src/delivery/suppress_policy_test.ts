import assert from "node:assert/strict";
import { local, type RecipientOutcome } from "./outcome.ts";
import { suppressible } from "./suppress_policy.ts";

function reply(kind: RecipientOutcome["kind"], code: number, status: string): RecipientOutcome {
  return { address: "a@b.test", kind, code, status, text: "x", remote: "mx[192.0.2.1]", tls: null };
}

Deno.test("suppressible() takes permanent X.1.x address failures, never policy refusals", () => {
  assert.equal(suppressible(reply("permanent", 550, "5.1.1")), true);
  assert.equal(suppressible(local("a@b.test", "permanent", "5.1.2", "NXDOMAIN")), true);
  assert.equal(suppressible(local("a@b.test", "permanent", "5.1.10", "null MX")), true);
  assert.equal(suppressible(reply("permanent", 550, "5.7.1")), false);
  assert.equal(suppressible(reply("permanent", 550, "5.0.0")), false);
  assert.equal(suppressible(reply("permanent", 553, "5.1.8")), false, "the sender's domain");
  assert.equal(suppressible(reply("permanent", 553, "5.1.7")), false, "the sender's syntax");
  assert.equal(suppressible(reply("temporary", 450, "4.1.1")), false);
  assert.equal(suppressible(local("a@b.test", "permanent", "4.4.7", "expired")), false);
});
