/**
 * Hostile input that must be bounded (issue 8, item 6): a receiving MX
 * answering every RCPT with 100 lines of 4 KB, an oversized body posted to
 * the status page's login, parallel wrong logins racing the per-IP limit,
 * and idle connections holding the local submission socket.
 */
import assert from "node:assert/strict";
import {
  ALICE,
  delay,
  freePorts,
  minimtaArgs,
  Mta,
  plainBlob,
  queuedId,
  requireTool,
  ROOT,
  run,
  waitFor,
} from "./_harness.ts";
import { ADMIN, httpBase, startWebMta, WebClient } from "./_http.ts";
import { ControlServer, socketRequest } from "../src/cli/control.ts";
import { deliveryConfig, mailEvents, submit } from "./_delivery.ts";
import { FakeDns } from "./_dns.ts";
import { FakeMx, loopbackNet } from "./_mx.ts";

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

Deno.test("30 parallel AUTHs with wrong passwords from one IP: at most 10 are checked, the rest refused", async () => {
  await using mta = await Mta.start({ config: { auth: { max_failures_per_ip: 10 } } });
  // 20 sessions of one app logging in together are one guess, not 20: all get in.
  const app = await Promise.all(Array.from({ length: 20 }, () => mta.authedOrNot()));
  const logins = await Promise.all(
    app.map((s) => s.cmd(`AUTH PLAIN ${plainBlob("", ALICE.user, ALICE.pass)}`)),
  );
  for (const s of app) s.close();
  assert.ok(logins.every((r) => r.code === 235), logins.map((r) => r.raw).join());
  const sessions = await Promise.all(Array.from({ length: 30 }, () => mta.authedOrNot()));
  try {
    // Every AUTH is on the wire before the first password check can end.
    const replies = await Promise.all(
      sessions.map(async (s, i) => {
        await s.write(`AUTH PLAIN ${plainBlob("", ALICE.user, `wrong-${i}`)}\r\n`);
        // Unthrottled, 30 checks pile up growing per-user delays (8 s at most each).
        return await s.reply(60_000);
      }),
    );
    const refused = replies.filter((r) => /from your address/.test(r.raw));
    const checked = replies.filter((r) => !/from your address/.test(r.raw));
    assert.ok(checked.length <= 10, `${checked.length} passwords checked`);
    assert.ok(checked.every((r) => [535, 421].includes(r.code)), checked.map((r) => r.raw).join());
    assert.equal(refused.length, 30 - checked.length);
    assert.ok(refused.every((r) => r.code === 421), refused.map((r) => r.raw).join());
    const failures = mailEvents(mta, "auth_failure");
    const evaluated = failures.filter((e) => e.reason !== "ip_throttled");
    assert.ok(evaluated.length <= 10, `${evaluated.length} failures after a password check`);
    assert.equal(failures.length, 30);
  } finally {
    for (const s of sessions) s.close();
  }
});

Deno.test("40 parallel POST /login with wrong passwords from one IP: at most 10 are checked", async () => {
  await using mta = await startWebMta({ config: { auth: { max_failures_per_ip: 10 } } });
  const web = await WebClient.forMta(mta);
  const responses = await Promise.all(
    Array.from({ length: 40 }, (_, i) => web.login(ADMIN.user, `wrong-${i}`)),
  );
  assert.ok(responses.every((r) => r.status === 401), responses.map((r) => r.status).join());
  const failures = mailEvents(mta, "auth_failure");
  const evaluated = failures.filter((e) => e.reason === "status page login");
  assert.ok(evaluated.length <= 10, `${evaluated.length} of 40 logins were checked`);
  // Blocked now: the right password is refused too, until the window passes.
  assert.equal((await web.login(ADMIN.user, ADMIN.pass)).status, 401);
});

/** Keeps one idle connection open to `path` until `stop`: reconnects whenever hung up on. */
async function holdIdle(path: string, stop: { done: boolean }): Promise<number> {
  let hungUp = 0;
  while (!stop.done) {
    let conn: Deno.UnixConn;
    try {
      conn = await Deno.connect({ transport: "unix", path });
    } catch {
      await new Promise((r) => setTimeout(r, 50));
      continue;
    }
    const closed = conn.read(new Uint8Array(16)).catch(() => null);
    while (!stop.done && await Promise.race([closed, delay(100).then(() => "open")]) === "open") {
      // Still held: wait on.
    }
    if (!stop.done) hungUp++;
    conn.close();
  }
  return hungUp;
}

Deno.test("12 idle connections, reopened as soon as dropped, do not keep sendmail off the local socket", async () => {
  await using mta = await Mta.start();
  const socket = `${mta.dir}/submit.sock`;
  // A local user's view: the owner-only control socket is not there, only server.local_socket.
  const client = await mta.config();
  client.queue = { ...client.queue, dir: `${mta.dir}/not-the-spool` };
  const clientConfig = `${mta.dir}/client.yaml`;
  await Deno.writeTextFile(clientConfig, JSON.stringify(client));
  const stop = { done: false };
  const holders = Array.from({ length: 12 }, () => holdIdle(socket, stop));
  try {
    await delay(500); // every holder connected
    const child = new Deno.Command(Deno.execPath(), {
      args: minimtaArgs(["sendmail", "-t", "--config", clientConfig]),
      cwd: ROOT,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode("To: bob@dest.test\nSubject: cron\n\nhi\n"));
    await writer.close();
    // Generous: the idle clients once held it for 59.5 s.
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    const out = await child.output();
    clearTimeout(timer);
    const stdout = new TextDecoder().decode(out.stdout);
    assert.equal(
      out.code,
      0,
      `sendmail: ${out.signal ?? ""} ${new TextDecoder().decode(out.stderr)}`,
    );
    const shown = await mta.queueShow(queuedId(stdout));
    assert.deepEqual(shown.recipients.map((r) => r.address), ["bob@dest.test"]);
  } finally {
    stop.done = true;
    await Promise.all(holders);
  }
});

Deno.test("a local client that stalls after its first byte loses its slot; sendmail's request times out on a mute daemon", async () => {
  const dir = await Deno.makeTempDir({ prefix: "minimta-socket-" });
  const path = `${dir}/submit.sock`;
  const server = await ControlServer.listen(
    path,
    (req) => Promise.resolve({ ok: true, lines: [req.command] }),
    { mode: 0o666, maxConcurrent: 1, idleTimeoutMs: 300 },
  );
  const mutePath = `${dir}/mute.sock`;
  const mute = Deno.listen({ transport: "unix", path: mutePath });
  const accepted: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const c of mute) accepted.push(c);
  })();
  try {
    const stalled = await Deno.connect({ transport: "unix", path });
    await stalled.write(new TextEncoder().encode("{"));
    await delay(50);
    assert.deepEqual(await socketRequest(path, { command: "ping" }), { ok: true, lines: ["ping"] });
    assert.equal(await stalled.read(new Uint8Array(16)), null, "the stalled client was hung up on");
    stalled.close();

    const guard = delay(10_000).then(() => "no timeout");
    const outcome = await Promise.race([
      socketRequest(mutePath, { command: "ping" }, { timeoutMs: 300 }).then(
        (r) => `answered ${JSON.stringify(r)}`,
        (e) => e,
      ),
      guard,
    ]);
    assert.ok(outcome instanceof Deno.errors.TimedOut, String(outcome));
  } finally {
    mute.close();
    await accepting.catch(() => {});
    for (const c of accepted) c.close();
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});
