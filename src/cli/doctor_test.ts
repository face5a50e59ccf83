import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { parseConfigText } from "../config/mod.ts";
import { cachedDoctor } from "./doctor.ts";

Deno.test({
  name:
    "cachedDoctor: a DNS server that never answers gives a failing line once the budget is spent",
  // The checks go on in the background until their lookups time out.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // A name server that reads queries and never answers.
    const silent = createSocket("udp4");
    await new Promise<void>((resolve) => silent.bind(0, "127.0.0.1", resolve));
    try {
      const { port } = silent.address();
      const config = parseConfigText(
        [
          "server: { hostname: mx.ours.test }",
          `delivery: { dns_servers: ["127.0.0.1:${port}"], source_address: 192.0.2.10 }`,
          "dkim: [{ domain: ours.test, selector: s1, private_key_file: /nonexistent.key }]",
        ].join("\n"),
        "/tmp/doctor_test.yaml",
      );
      const doctor = cachedDoctor(config, { budgetMs: 200, lookupTimeoutMs: 2_000 });
      const report = await doctor();
      assert.equal(report.ok, false);
      assert.deepEqual(report.checks.map((c) => [c.check, c.status]), [["doctor", "fail"]]);
      assert.match(report.checks[0].message, /did not finish within 0\.2 s/);
      assert.equal((await doctor()).checked_at, report.checked_at, "reused within cacheMs");
    } finally {
      silent.close();
    }
  },
});
