import assert from "node:assert/strict";
import { isExpired, retryDelay } from "./retry.ts";

const schedule = [300_000, 600_000, 1_800_000];

Deno.test("retryDelay() grows along the schedule and repeats the last step", () => {
  const noJitter = (n: number) => retryDelay(n, schedule, 0);
  assert.deepEqual([1, 2, 3, 4, 10].map(noJitter), [
    300_000,
    600_000,
    1_800_000,
    1_800_000,
    1_800_000,
  ]);
});

Deno.test("retryDelay() jitter stays within ±10% of the step", () => {
  assert.equal(retryDelay(1, schedule, 0.1, () => 0), 270_000);
  assert.equal(retryDelay(1, schedule, 0.1, () => 1), 330_000);
  for (let i = 0; i < 100; i++) {
    const d = retryDelay(2, schedule);
    assert.ok(d >= 540_000 && d <= 660_000, `delay ${d}`);
  }
});

Deno.test("isExpired() is true once the lifetime has passed", () => {
  const created = new Date("2026-01-01T00:00:00Z");
  assert.equal(isExpired(created, new Date("2026-01-05T23:59:59Z"), 5 * 86_400_000), false);
  assert.equal(isExpired(created, new Date("2026-01-06T00:00:00Z"), 5 * 86_400_000), true);
});
