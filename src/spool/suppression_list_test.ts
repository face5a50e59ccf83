import assert from "node:assert/strict";
import { SUPPRESSION_FILE, suppressionKey, SuppressionList } from "./suppression_list.ts";

const entry = (address: string) => ({
  address,
  source: "bounce" as const,
  reply: "mx[192.0.2.1] said: 550 5.1.1 No such user",
  status: "5.1.1",
  sender_domain: "news.test",
  queue_id: null,
});

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "minimta-suppress-" });
  await Deno.mkdir(`${dir}/tmp`);
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("suppressionKey() lowercases the domain and keeps the local part as given", () => {
  assert.equal(suppressionKey("Bob.Smith@Example.ORG"), "Bob.Smith@example.org");
});

Deno.test("SuppressionList keeps entries across reopening, finds them case-insensitively by domain", async () => {
  await withDir(async (dir) => {
    const list = await SuppressionList.open(dir);
    assert.ok(await list.add(entry("Bob@Dest.Test")));
    assert.equal(await list.add(entry("Bob@dest.test")), null, "already suppressed");
    assert.equal((await SuppressionList.open(dir)).find("Bob@DEST.test")?.reply, entry("").reply);
    assert.equal((await SuppressionList.open(dir)).find("bob@dest.test"), null, "local part kept");
    assert.equal((await Deno.stat(`${dir}/${SUPPRESSION_FILE}`)).mode! & 0o777, 0o600);
    assert.equal(await list.remove("Bob@dest.test"), true);
    assert.equal(await list.remove("Bob@dest.test"), false);
    assert.equal((await SuppressionList.open(dir)).find("Bob@dest.test"), null);
  });
});

Deno.test("SuppressionList skips a line torn by a crash and appends after it on a line of its own", async () => {
  await withDir(async (dir) => {
    const list = await SuppressionList.open(dir);
    await list.add(entry("a@dest.test"));
    await Deno.writeTextFile(`${dir}/${SUPPRESSION_FILE}`, '{"op":"add","addre', { append: true });
    const reopened = await SuppressionList.open(dir);
    assert.ok(reopened.find("a@dest.test"));
    await reopened.add(entry("b@dest.test"));
    const again = await SuppressionList.open(dir);
    assert.deepEqual(again.list().map((e) => e.address).sort(), ["a@dest.test", "b@dest.test"]);
  });
});

Deno.test("SuppressionList entries expire after the ttl; compact() drops them and removed ones", async () => {
  await withDir(async (dir) => {
    let now = Date.parse("2026-01-01T00:00:00Z");
    const options = { ttlMs: 60_000, now: () => new Date(now) };
    const list = await SuppressionList.open(dir, options);
    await list.add(entry("old@dest.test"));
    now += 30_000;
    await list.add(entry("new@dest.test"));
    await list.add(entry("gone@dest.test"));
    await list.remove("gone@dest.test");
    assert.equal(list.find("old@dest.test")?.expires_at, "2026-01-01T00:01:00.000Z");
    now += 40_000;
    assert.equal(list.find("old@dest.test"), null, "expired");
    assert.deepEqual(list.list().map((e) => e.address), ["new@dest.test"]);
    await list.compact();
    const lines = (await Deno.readTextFile(`${dir}/${SUPPRESSION_FILE}`)).trim().split("\n");
    assert.equal(lines.length, 1);
    assert.equal(JSON.parse(lines[0]).address, "new@dest.test");
    assert.ok(await list.add(entry("old@dest.test")), "an expired address can be added again");
  });
});
