/**
 * Hostile input that must be bounded (issue 8, item 6): a receiving MX
 * answering every RCPT with 100 lines of 4 KB, an oversized body posted to
 * the status page's login, parallel wrong logins racing the per-IP limit,
 * and idle connections holding the local submission socket.
 */
import assert from "node:assert/strict";
import { freePorts, Mta, requireTool } from "./_harness.ts";
import { deliveryConfig, FakeDns, FakeMx, loopbackNet, submit, waitFor } from "./_mx.ts";

const needsDns = requireTool("python3:dns");

/** A 4xx reply of `lines` lines of `width` bytes each (RFC 5321 §4.2.1 multi-line form). */
function hugeReply(lines: number, width: number): string {
  const filler = "x".repeat(width);
  return Array.from(
    { length: lines },
    (_, i) => `450${i === lines - 1 ? " " : "-"}4.2.0 line ${i} ${filler}`,
  ).join("\r\n");
}

Deno.test({
  name: "an MX sending 100 x 4 KB replies to 30 RCPTs, retried every 1 s, leaves a small meta file",
  ignore: needsDns,
  async fn() {
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start({
      "dest.test": { MX: [[10, "mx1.dest.test"]] },
      "mx1.dest.test": { A: [net(2)] },
    });
    await using _mx = await FakeMx.start(net(2), port, {
      name: "mx1.dest.test",
      rcpt_default: hugeReply(100, 4000),
    });
    await using mta = await Mta.start({
      config: { delivery: deliveryConfig({ dns, port, retry_schedule: ["1s"] }) },
    });
    const to = Array.from({ length: 30 }, (_, i) => `user${i}@dest.test`);
    const id = await submit(mta, { to });
    const shown = await waitFor(
      "every recipient to be tried 4 times",
      async () => {
        const s = await mta.queueShow(id);
        return s.recipients.every((r) => r.attempts >= 4) && s;
      },
      60_000,
    );
    const metaBytes = (await Deno.stat(mta.metaPath(id))).size;
    // 30 recipients x (last error + 10 history entries) x ~1 KB, with room for JSON.
    assert.ok(metaBytes < 512 * 1024, `meta file is ${Math.round(metaBytes / 1024)} KB`);
    for (const r of shown.recipients) {
      const last = r.last_error ?? "";
      assert.match(last, /450 4\.2\.0 line 0 x+/, last.slice(0, 200));
      assert.match(last, /\[truncated\]$/, last.slice(-200));
      assert.ok(
        new TextEncoder().encode(last).length <= 1200,
        `last_error is ${last.length} chars`,
      );
      const history = (r as unknown as { history: { text: string }[] }).history;
      assert.ok(history.length >= 4 && history.length <= 10, `${history.length} history entries`);
      for (const h of history) assert.ok(h.text.length <= 1100, `history text ${h.text.length}`);
    }
  },
});
