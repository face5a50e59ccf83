import { deepStrictEqual as assertEquals, throws as assertThrows } from "node:assert/strict";
import { parseNameServer, parseResolvConf } from "./_name_servers.ts";

Deno.test("parseNameServer() reads IP and IP:PORT, IPv6 in brackets", () => {
  assertEquals(parseNameServer("127.0.0.1:5353"), { ipAddr: "127.0.0.1", port: 5353 });
  assertEquals(parseNameServer("192.0.2.53"), { ipAddr: "192.0.2.53", port: 53 });
  assertEquals(parseNameServer("[::1]:5353"), { ipAddr: "::1", port: 5353 });
  assertEquals(parseNameServer("2001:db8::53"), { ipAddr: "2001:db8::53", port: 53 });
  for (const bad of ["", "dns.test", "127.0.0.1:0", "127.0.0.1:70000", "[::1]:x"]) {
    assertThrows(() => parseNameServer(bad), TypeError, bad);
  }
});

Deno.test("parseResolvConf() lists nameserver lines and defaults to 127.0.0.1", () => {
  const text =
    "# c\nsearch example.com\nnameserver 192.0.2.53\nnameserver ::1 ; x\nnameserver fe80::1%eth0\n";
  assertEquals(parseResolvConf(text), [
    { ipAddr: "192.0.2.53", port: 53 },
    { ipAddr: "::1", port: 53 },
  ]);
  assertEquals(parseResolvConf("options ndots:2\n"), [{ ipAddr: "127.0.0.1", port: 53 }]);
});
