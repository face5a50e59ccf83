import assert from "node:assert/strict";
import { closeLogging, mailLog, setupLogging } from "./mod.ts";

Deno.test("mail log: one JSON line per event at or above log.level, with the logger, level and fields", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const file = `${dir}/mail.log`;
    setupLogging({ level: "warning", file });
    mailLog("queued", { queue_id: "q1" });
    mailLog("rejected", { client_ip: "192.0.2.1", reply: "550 5.7.1 no" });
    closeLogging();
    mailLog("rejected", { client_ip: "192.0.2.2" }); // after closeLogging: nowhere
    const lines = Deno.readTextFileSync(file).trimEnd().split("\n").map((l) => JSON.parse(l));
    assert.equal(lines.length, 1);
    const { "@timestamp": stamp, ...rest } = lines[0];
    assert.ok(Math.abs(Date.parse(stamp) - Date.now()) < 60_000);
    assert.deepEqual(rest, {
      level: "WARN",
      message: "rejected",
      logger: "minimta.mail",
      event: "rejected",
      client_ip: "192.0.2.1",
      reply: "550 5.7.1 no",
    });
  } finally {
    closeLogging();
    Deno.removeSync(dir, { recursive: true });
  }
});
