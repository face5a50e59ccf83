import assert from "node:assert/strict";
import { fromDomain } from "./from_domain.ts";

function domainOf(header: string): string | null {
  return fromDomain(
    new TextEncoder().encode(`To: b@x.test\r\n${header}\r\n\r\nFrom: z@body.test\r\n`),
  );
}

Deno.test("fromDomain() reads the first address of the first From: header", () => {
  const cases: [string, string | null][] = [
    ["From: alice@Example.COM", "example.com"],
    ["From: Alice <alice@example.com>", "example.com"],
    ['From: "Smith, Bob (Sales)" <bob@Sub.Example.com>', "sub.example.com"],
    ['From: "a@fake.test" <real@example.com>', "example.com"],
    ["From: (comment a@fake.test) alice@example.com (Alice)", "example.com"],
    ["From: a@one.test, b@two.test", "one.test"],
    ["From: Team: a@team.test, b@two.test;", "team.test"],
    ["From: alice@example.com\r\nFrom: eve@evil.test", "example.com"],
    ["fRoM :\r\n Alice\r\n <alice@folded.test>", "folded.test"],
    ["From: Jörg <j@bücher.example>", "xn--bcher-kva.example"],
    ["From: undisclosed-recipients:;", null],
    ["From: no-at-sign", null],
    ["From: <alice@[192.0.2.1]>", null],
    ["Sender: alice@example.com", null],
  ];
  for (const [header, want] of cases) assert.equal(domainOf(header), want, header);
});

Deno.test("fromDomain() ignores the body and an empty header section", () => {
  const enc = new TextEncoder();
  assert.equal(fromDomain(enc.encode("\r\nFrom: a@body.test\r\n")), null);
  assert.equal(fromDomain(enc.encode("Subject: x\n\nFrom: a@body.test\n")), null);
  assert.equal(fromDomain(enc.encode("From: a@lf.test\n\nbody\n")), "lf.test");
  assert.equal(fromDomain(new Uint8Array([0xff, 0x0d, 0x0a])), null);
  assert.equal(fromDomain(new Uint8Array()), null);
});
