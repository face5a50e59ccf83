import assert from "node:assert/strict";
import { addressList, extractAddress, parseMessage, serializeMessage } from "./headers.ts";

Deno.test("headers round-trip byte for byte, UTF-8 (RFC 6532) and invalid bytes included", () => {
  const utf8 = new TextEncoder().encode("Subject: €uro ‚quote‚ 日本\r\nX-Raw: ");
  const raw = new Uint8Array([0x80, 0x9f, 0xff, 0x0d, 0x0a]);
  const rest = new TextEncoder().encode("From: a@b.test\r\n\r\nbody \x80\r\n");
  const src = new Uint8Array([...utf8, ...raw, ...rest]);
  const { fields, body } = parseMessage(src);
  assert.deepEqual(fields.map((f) => f.name), ["subject", "x-raw", "from"]);
  const out = serializeMessage(fields, body);
  assert.deepEqual(new Uint8Array([...out[0], ...out[1]]), src);
});

Deno.test("address helpers read From: and address lists as RFC 5322 writes them", () => {
  assert.equal(extractAddress('"Doe, John" <John@Example.TEST>'), "John@example.test");
  assert.deepEqual(addressList('a@x.test, "b, c" <b@y.test>, team: d@z.test, e@z.test;'), [
    "a@x.test",
    "b@y.test",
    "d@z.test",
    "e@z.test",
  ]);
});
