import assert from "node:assert/strict";
import { formatSpoolTime, parseSpoolTime } from "./spool_time.ts";

Deno.test("parseSpoolTime() reads every time toISOString writes as Date.parse does", () => {
  const times = [0, 951_782_400_000, 1_700_000_000_123, Date.UTC(2028, 1, 29, 23, 59, 59, 999)];
  for (let ms = -2_000_000_000_000; ms < 250_000_000_000_000; ms += 7_777_777_777_777) {
    times.push(ms);
  }
  for (const ms of times) {
    const text = new Date(ms).toISOString();
    if (text.length !== 24 || text.startsWith("00")) continue; // outside the fast form
    assert.equal(parseSpoolTime(text), Date.parse(text), text);
  }
});

Deno.test("parseSpoolTime() refuses text that is not the spool's canonical form", () => {
  for (
    const text of [
      "2026-02-29T00:00:00.000Z", // not a leap year
      "2100-02-29T00:00:00.000Z",
      "2026-13-01T00:00:00.000Z",
      "2026-04-31T00:00:00.000Z",
      "2026-01-01T24:00:00.000Z",
      "2026-01-01T00:60:00.000Z",
      "2026-01-01T00:00:60.000Z",
      "2026-00-10T00:00:00.000Z",
      "2026-01-00T00:00:00.000Z",
      "2026-01-01 00:00:00.000Z",
      "2026-01-01T00:00:00.000+",
      "2026-01-01T00:00:00Z",
      "2026-01-0xT00:00:00.000Z",
      "0099-01-01T00:00:00.000Z", // Date.UTC would read the year as 1999
      "Tue, 01 Dec 2026 10:00:00 GMT",
    ]
  ) assert.ok(Number.isNaN(parseSpoolTime(text)), text);
  assert.equal(parseSpoolTime("2000-02-29T12:00:00.000Z"), Date.parse("2000-02-29T12:00:00.000Z"));
});

Deno.test("formatSpoolTime() writes what toISOString writes, leap days and year ends included", () => {
  const times = [
    0,
    951_782_400_000, // 2000-02-29
    Date.UTC(2100, 1, 28, 23, 59, 59, 999), // 2100 is not a leap year
    Date.UTC(2100, 2, 1),
    Date.UTC(2028, 1, 29, 12),
    Date.UTC(2026, 11, 31, 23, 59, 59, 999),
    Date.UTC(9999, 11, 31, 23, 59, 59, 999),
    253_402_300_800_000, // year 10000: the slow way, six-digit year
    -1, // before 1970: the slow way
    1.5, // not a whole ms
  ];
  for (let ms = 0; ms < 253_402_300_800_000; ms += 1_234_567_891_011) times.push(ms);
  for (let day = 0; day < 800; day++) times.push(Date.UTC(2027, 11, 1) + day * 86_400_000 + day);
  for (const ms of times) assert.equal(formatSpoolTime(ms), new Date(ms).toISOString(), String(ms));
  assert.equal(parseSpoolTime(formatSpoolTime(1_796_299_339_958)), 1_796_299_339_958);
});
