import assert from "node:assert/strict";
import { clipText, MAX_OUTCOME_TEXT_BYTES } from "./outcome.ts";

const bytes = (s: string) => new TextEncoder().encode(s).length;

Deno.test("clipText() keeps short text, cuts long text at a character and marks it", () => {
  assert.equal(clipText("450 4.2.0 busy"), "450 4.2.0 busy");
  const exact = "a".repeat(MAX_OUTCOME_TEXT_BYTES);
  assert.equal(clipText(exact), exact);
  const long = "é".repeat(5_000);
  const clipped = clipText(long);
  assert.ok(bytes(clipped) <= MAX_OUTCOME_TEXT_BYTES, `${bytes(clipped)} bytes`);
  assert.match(clipped, /^é+ \[truncated\]$/);
  assert.equal(clipText(clipped), clipped, "clipping twice changes nothing");
});
