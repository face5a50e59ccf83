import { deepStrictEqual as assertEquals, throws as assertThrows } from "node:assert/strict";
import {
  canonicalIp,
  formatAddressLiteral,
  isLoopbackOrUnspecified,
  isOwnAddress,
  isPublicAddress,
  parseAddressLiteral,
  reverseName,
} from "./address.ts";

Deno.test("canonicalIp() compresses IPv6 per RFC 5952 and unmaps IPv4-mapped addresses", () => {
  assertEquals(canonicalIp("2001:DB8:0:0:0:0:0:1"), "2001:db8::1");
  assertEquals(canonicalIp("2001:db8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
  assertEquals(canonicalIp("0:0:0:0:0:0:0:0"), "::");
  assertEquals(canonicalIp("::ffff:7f00:1"), "127.0.0.1");
  assertEquals(canonicalIp("::ffff:192.0.2.1"), "192.0.2.1");
  assertEquals(canonicalIp("fe80::1%eth0"), "fe80::1");
  for (const bad of ["", "1.2.3", "1.2.3.256", "01.2.3.4", "1::2::3", "12345::", "mx.test"]) {
    assertEquals(canonicalIp(bad), null, bad);
  }
});

Deno.test("parseAddressLiteral() reads RFC 5321 §4.1.3 literals only", () => {
  assertEquals(parseAddressLiteral("[192.0.2.1]"), "192.0.2.1");
  assertEquals(parseAddressLiteral("[IPv6:2001:db8::1]"), "2001:db8::1");
  assertEquals(parseAddressLiteral("[ipv6:::1]"), "::1");
  for (const bad of ["192.0.2.1", "[2001:db8::1]", "[IPv6:192.0.2.1x]", "[mx.test]", "[]"]) {
    assertEquals(parseAddressLiteral(bad), null, bad);
  }
  assertEquals(formatAddressLiteral("2001:0db8::1"), "[IPv6:2001:db8::1]");
  assertEquals(formatAddressLiteral("192.0.2.1"), "[192.0.2.1]");
  assertThrows(() => formatAddressLiteral("mx.test"), TypeError);
});

Deno.test("isLoopbackOrUnspecified() covers 127/8, 0/8, ::1, :: and mapped forms", () => {
  for (const ip of ["127.0.0.1", "127.255.0.9", "0.0.0.0", "::1", "::", "::ffff:127.0.0.1"]) {
    assertEquals(isLoopbackOrUnspecified(ip), true, ip);
  }
  for (const ip of ["192.0.2.1", "10.0.0.1", "2001:db8::1", "::2", "mx.test"]) {
    assertEquals(isLoopbackOrUnspecified(ip), false, ip);
  }
});

Deno.test("isOwnAddress() matches own addresses in any spelling", () => {
  assertEquals(isOwnAddress("2001:db8::0:7", ["2001:DB8::7"]), true);
  assertEquals(isOwnAddress("198.51.100.7", ["198.51.100.7"]), true);
  assertEquals(isOwnAddress("198.51.100.8", ["198.51.100.7"]), false);
  assertEquals(isOwnAddress("127.0.0.2"), true);
});

Deno.test("reverseName() gives the in-addr.arpa and ip6.arpa names of PTR records", () => {
  assertEquals(reverseName("192.0.2.10"), "10.2.0.192.in-addr.arpa");
  assertEquals(
    reverseName("2001:db8::1"),
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
  );
  assertThrows(() => reverseName("mx.test"), TypeError);
});

Deno.test("isPublicAddress() refuses private, shared, link-local and loopback addresses", () => {
  for (const ip of ["203.0.113.5", "8.8.8.8", "2001:4860::8888", "172.32.0.1"]) {
    assertEquals(isPublicAddress(ip), true, ip);
  }
  for (
    const ip of ["10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "169.254.1.1", "127.0.0.1"]
  ) {
    assertEquals(isPublicAddress(ip), false, ip);
  }
  for (const ip of ["fd00::1", "fe80::1", "::1", "::", "not an ip"]) {
    assertEquals(isPublicAddress(ip), false, ip);
  }
});
