import { deepStrictEqual as assertEquals, throws as assertThrows } from "node:assert/strict";
import { normaliseDomain } from "./mod.ts";

Deno.test("normaliseDomain() lowercases and drops one trailing dot (DNS-14)", () => {
  assertEquals(normaliseDomain("Example.COM."), "example.com");
  assertEquals(normaliseDomain("example.com"), "example.com");
});

Deno.test("normaliseDomain() converts IDN to punycode A-labels (DNS-13)", () => {
  assertEquals(normaliseDomain("bücher.test"), "xn--bcher-kva.test");
  assertEquals(normaliseDomain("BÜCHER.test."), "xn--bcher-kva.test");
  assertEquals(normaliseDomain("xn--bcher-kva.test"), "xn--bcher-kva.test");
});

Deno.test("normaliseDomain() accepts 253 characters and rejects 254 (DNS-14)", () => {
  const name = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(56)}.test`;
  assertEquals(name.length, 253);
  assertEquals(normaliseDomain(`${name}.`), name);
  assertThrows(() => normaliseDomain(`x${name}`), { name: "RangeError" });
});

Deno.test("normaliseDomain() rejects empty, over-long and malformed labels", () => {
  for (
    const bad of ["", ".", "a..b", `${"a".repeat(64)}.test`, "a b.test", "a/b.test", "192.0.2.1"]
  ) {
    assertThrows(() => normaliseDomain(bad), RangeError, bad);
  }
});

Deno.test("normaliseDomain() keeps address literals in canonical form", () => {
  assertEquals(normaliseDomain("[192.0.2.1]"), "[192.0.2.1]");
  assertEquals(normaliseDomain("[ipv6:2001:DB8:0:0::1]"), "[IPv6:2001:db8::1]");
  assertThrows(() => normaliseDomain("[2001:db8::1]"), RangeError);
  assertThrows(() => normaliseDomain("[300.0.0.1]"), RangeError);
});

Deno.test("normaliseDomain() does not reinterpret ASCII names as IPv4 numbers", () => {
  assertEquals(normaliseDomain("0x7f.example"), "0x7f.example");
});
