import assert from "node:assert/strict";
import { parseMailboxList } from "./mailbox_list.ts";

function addresses(value: string): string[] | null {
  return parseMailboxList(value)?.map((m) => m.address) ?? null;
}

Deno.test("parseMailboxList() reads the address a From: names, not one in its name or comments", () => {
  const cases: [string, string[]][] = [
    ['"<alice@ours.test>" <ceo@victim.test>', ["ceo@victim.test"]],
    ["ceo@victim.test (<alice@ours.test>)", ["ceo@victim.test"]],
    ["(alice@ours.test) <ceo@victim.test>", ["ceo@victim.test"]],
    ["alice@ours.test, ceo@victim.test", ["alice@ours.test", "ceo@victim.test"]],
    ['"Doe, John" <John@Example.TEST>', ["John@example.test"]],
    ['"Alice" <alice@ours.test>', ["alice@ours.test"]],
    ["alice@ours.test (Alice)", ["alice@ours.test"]],
    ["Dr. Alice Q. Smith <alice@ours.test>", ["alice@ours.test"]],
    ["=?utf-8?q?J=C3=B6rg?= <j@ours.test>", ["j@ours.test"]],
    ["Jörg <jörg@Bücher.example>", ["jörg@bücher.example"]],
    ['"a\\"b <x@y.test>" <"alice smith"@ours.test>', ["alice smith@ours.test"]],
    ["alice(c)@(c (nested))ours.test", ["alice@ours.test"]],
    ["\tAlice\t<alice@ours.test>  ", ["alice@ours.test"]],
  ];
  for (const [value, want] of cases) assert.deepEqual(addresses(value), want, value);
  assert.deepEqual(parseMailboxList("J <j@Bücher.Example>")?.[0].domain, "xn--bcher-kva.example");
});

Deno.test("parseMailboxList() refuses what is not a mailbox-list rather than guess", () => {
  for (
    const value of [
      "",
      "ceo",
      "root (Cron Daemon)",
      "alice@ours.test <ceo@victim.test>",
      "<alice@ours.test> <ceo@victim.test>",
      "<alice@ours.test> ceo@victim.test",
      "alice@ours.test ceo@victim.test",
      '"alice@ours.test <ceo@victim.test>',
      "Alice <alice@ours.test",
      "alice@ours.test (unclosed",
      "alice@ours.test)",
      "Team: alice@ours.test;",
      "undisclosed-recipients:;",
      "<@relay.test:alice@ours.test>",
      "alice@[192.0.2.1]",
      "alice@ours.test,",
      ", alice@ours.test",
      '""@ours.test',
      "alice@ours..test",
      "alice@-ours.test",
      "alice@ours.test\r\nBcc: x@y.test",
      "alice\\@ours.test",
      "(".repeat(100_000),
      '"'.repeat(100_001),
      "a.".repeat(50_000),
    ]
  ) {
    assert.equal(parseMailboxList(value), null, value.slice(0, 60));
  }
});
