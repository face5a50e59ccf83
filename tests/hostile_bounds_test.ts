/**
 * Hostile input that must be bounded (issue 8, item 6): a receiving MX
 * answering every RCPT with 100 lines of 4 KB, an oversized body posted to
 * the status page's login, parallel wrong logins racing the per-IP limit,
 * and idle connections holding the local submission socket.
 */
import assert from "node:assert/strict";
import { freePorts, Mta, requireTool, run } from "./_harness.ts";
import { ADMIN, httpBase, startWebMta, WebClient } from "./_http.ts";
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

/** The daemon's resident set in KB (VmRSS of /proc/PID/status). */
async function rssKb(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]);
}

Deno.test({
  name:
    "POST /login with a 200 MB body gets 413 and the daemon's RSS stays put; a login still works",
  ignore: requireTool("curl"),
  async fn() {
    await using mta = await startWebMta();
    const base = await httpBase(mta);
    // A sparse file: 200 MB of zeros that take no disk.
    const big = `${mta.dir}/big.form`;
    await Deno.writeFile(big, new Uint8Array(0));
    await Deno.truncate(big, 200 * 1024 * 1024);
    const before = await rssKb(mta.pid);
    const variants: [string, string[]][] = [
      ["with Content-Length", []],
      ["chunked, no 100-continue", ["-H", "Transfer-Encoding: chunked", "-H", "Expect:"]],
    ];
    for (const [what, flags] of variants) {
      const curl = await run("curl", [
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "60",
        "-H",
        "Content-Type: application/x-www-form-urlencoded",
        ...flags,
        "--data-binary",
        `@${big}`,
        `${base}/login`,
      ]);
      assert.equal(curl.stdout, "413", `${what}: curl said ${curl.stdout} ${curl.stderr}`);
    }
    const grown = (await rssKb(mta.pid)) - before;
    assert.ok(grown < 20 * 1024, `RSS grew by ${Math.round(grown / 1024)} MB`);
    const web = await WebClient.forMta(mta);
    assert.equal((await web.login(ADMIN.user, ADMIN.pass)).status, 303);
    const csrf = await web.csrf();
    const action = await web.post("/logout", { csrf, pad: "p".repeat(64 * 1024) });
    await action.body?.cancel();
    assert.equal(action.status, 413, "an oversized action form");
    const logout = await web.post("/logout", { csrf });
    await logout.body?.cancel();
    assert.equal(logout.status, 303, "a normal action form");
    assert.equal(await mta.stop(), 0);
  },
});
