import assert from "node:assert/strict";
import { checkRecipient, checkSender } from "./envelope_address.ts";

Deno.test("checkRecipient() takes local@dotted.domain, RFC 5321 local parts and UTF-8", () => {
  for (
    const ok of [
      "bob@dest.test",
      "a+tag@sub.dest.test",
      "o'brien@dest.test",
      "user%victim.test@dest.test",
      "victim.test!user@dest.test",
      '"john.doe"@dest.test',
      '"a\\"b"@dest.test',
      "jörg@bücher.test",
      "x@xn--bcher-kva.test",
    ]
  ) {
    assert.equal(checkRecipient(ok), null, ok);
  }
});

Deno.test("checkRecipient() refuses malformed and unroutable addresses with 553 5.1.3 on one line", () => {
  for (
    const bad of [
      "",
      'r"<b>x@dest.test',
      "a@b@c",
      "a@b@c.test",
      "x@dest.test\r\nRCPT TO:<evil@dest.test>",
      "x\n@dest.test",
      "a b@dest.test",
      "zero\u200bwidth@dest.test",
      "<x@dest.test>",
      "postmaster",
      "user@localhost",
      "user@[127.0.0.1]",
      ".a@dest.test",
      "a..b@dest.test",
      "a.@dest.test",
      'a"b@dest.test',
      "a,b@dest.test",
      "a@dest..test",
      "a@-dest.test",
      "a@dest.test.",
      "a@dest_x.test",
      "@dest.test",
      "a@",
      `${"a".repeat(250)}@x.test`,
    ]
  ) {
    const refusal = checkRecipient(bad);
    assert.ok(refusal, `${JSON.stringify(bad)} was accepted`);
    assert.equal(refusal.responseCode, 553);
    assert.match(refusal.message, /^5\.1\.3 Recipient "/);
    assert.doesNotMatch(refusal.message, /[\r\n]/);
  }
});

Deno.test("checkSender() takes the null sender, single-label hosts and address literals", () => {
  for (const ok of ["", "root@localhost", "cron@mx.ours.test", "a@[192.0.2.1]", "a@[IPv6:::1]"]) {
    assert.equal(checkSender(ok), null, ok);
  }
  for (const bad of ["a@b@c", "root", "a\r\n@x.test", "a@[1.2.3]", "<a@x.test>", "a@[::1]"]) {
    const refusal = checkSender(bad);
    assert.ok(refusal, `${JSON.stringify(bad)} was accepted`);
    assert.equal(refusal.responseCode, 553);
    assert.match(refusal.message, /^5\.1\.7 Sender "/);
  }
});
