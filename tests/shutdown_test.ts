/**
 * TESTPLAN §3.2 D12 (and issue 3 item 9, issue 8 item 2): what SIGTERM and
 * SIGINT do to work in progress. A stop is prompt, as `postfix stop` is:
 *
 * - Sessions outside a transaction get `421 4.3.2` at once and are closed.
 * - A submission client in the middle of DATA has a short grace (5 s,
 *   src/cli/serve.ts `STOP_GRACE_MS`) to finish: it then gets its 250, the
 *   message is in the queue after a restart, and the session ends with
 *   421 4.3.2. One that does not finish never gets a 250 for a message that
 *   was not saved, and nothing partial stays in the spool.
 * - A delivery whose MX answers the final dot within the same grace is
 *   waited for and recorded as delivered: received once, gone from the queue.
 * - A delivery whose MX takes longer is abandoned unmarked and delivered
 *   again after the restart (at least once, never lost).
 * - `minimta sendmail` run during the stop succeeds: the daemon still takes
 *   messages on its sockets, then sendmail waits for the spool lock.
 * - The daemon exits 0 on SIGTERM and on SIGINT within 10 s, even with
 *   peers that hang.
 *
 * Timings are printed (`[shutdown] …`) so a report can quote them.
 */
import assert from "node:assert/strict";
import {
  type CliResult,
  delay,
  freePorts,
  minimtaArgs,
  Mta,
  queuedId,
  requireTool,
  ROOT,
  startTask,
  waitFor,
} from "./_harness.ts";
import { cli, lfMessage } from "./_cli.ts";
import { deliveryConfig, deliveryEvents, isGone, submit } from "./_delivery.ts";
import { FakeDns, mxZone } from "./_dns.ts";
import { FakeMx, loopbackNet } from "./_mx.ts";

/** Upper bound for SIGTERM → exit with hung peers (issue 8: a stop is prompt). */
const EXIT_BOUND_MS = 10_000;
/** The stop grace in src/cli/serve.ts (`STOP_GRACE_MS`). */
const STOP_GRACE_MS = 5_000;

function report(what: string, ms: number): void {
  // deno-lint-ignore no-console
  console.log(`[shutdown] ${what}: ${(ms / 1000).toFixed(2)} s`);
}

/** SIGTERM via the harness; returns the exit code and how long the exit took. */
async function timedStop(mta: Mta): Promise<{ code: number; ms: number }> {
  const t0 = performance.now();
  const code = await mta.stop(60_000);
  return { code, ms: performance.now() - t0 };
}

/** Opens a session as alice and stops in DATA after writing `partial` (no terminator). */
async function inData(mta: Mta, partial: string) {
  const smtp = await mta.authed();
  await smtp.cmd("MAIL FROM:<alice@ours.test>", 250);
  await smtp.cmd("RCPT TO:<bob@remote.test>", 250);
  await smtp.cmd("DATA", 354);
  await smtp.write(partial);
  return smtp;
}

const PARTIAL = "From: alice@ours.test\r\nTo: bob@remote.test\r\nSubject: cut by SIGTERM\r\n\r\n" +
  "first half of the body\r\n";

Deno.test("D12a: SIGTERM while a client is in DATA: no 250, nothing stored, exit 0", async () => {
  await using mta = await Mta.start();
  const smtp = await inData(mta, PARTIAL);
  try {
    await delay(300); // the partial body has reached the daemon
    const stopping = timedStop(mta);
    // New connections are no longer taken once the stop has begun.
    await delay(500);
    const refused = await Deno.connect({ hostname: "127.0.0.1", port: mta.port }).then(
      async (conn) => {
        // Accepted by a listener that is closing: it must not greet with 220.
        const buf = new Uint8Array(512);
        const n = await Promise.race([conn.read(buf), delay(3_000).then(() => -1)]);
        conn.close();
        return n === null || n === -1 ||
          !new TextDecoder().decode(buf.subarray(0, n as number)).startsWith("220");
      },
      () => true,
    );
    assert.ok(refused, "a new connection after SIGTERM got a 220 greeting");
    const seen = await smtp.readToEnd(EXIT_BOUND_MS + 5_000);
    const { code, ms } = await stopping;
    report("SIGTERM with a client idle in DATA → exit", ms);
    // deno-lint-ignore no-console
    console.log(`[shutdown] the client idle in DATA got: ${JSON.stringify(seen)}`);
    assert.doesNotMatch(seen, /^250/m, `the client got ${JSON.stringify(seen)}`);
    assert.ok(
      seen === "" || /^421 /m.test(seen),
      `421 or a plain close, got ${JSON.stringify(seen)}`,
    );
    assert.equal(code, 0, mta.stderr);
    assert.ok(ms < EXIT_BOUND_MS, `exit took ${ms} ms`);
  } finally {
    smtp.close();
  }
  assert.deepEqual(await mta.spoolFiles("msg"), [], "no message body stored");
  assert.deepEqual(await mta.spoolFiles("msg"), [], "nothing stored");
  const tmpAtExit = await mta.spoolFiles("tmp");
  await mta.launch();
  assert.deepEqual(await mta.queueList(), [], "nothing in the queue after the restart");
  assert.deepEqual(await mta.spoolFiles("tmp"), [], "no temporary file after the restart");
  assert.deepEqual(await mta.spoolFiles("corrupt"), []);
  assert.deepEqual(tmpAtExit, [], "the partial message's temporary file was removed at exit");
  assert.equal(await mta.stop(), 0);
});

Deno.test("D12a: a client that completes its message during the stop grace gets 250, then 421 4.3.2; the message is kept", async () => {
  await using mta = await Mta.start();
  const smtp = await inData(mta, PARTIAL);
  let reply: string;
  let after: string;
  let ms: number;
  let code: number;
  try {
    await delay(300);
    const stopping = timedStop(mta);
    await delay(1_500);
    // The client finishes its message while the daemon is stopping.
    await smtp.write("second half\r\n.\r\n").catch(() => {});
    reply = await smtp.reply(EXIT_BOUND_MS).then((r) => r.raw, (e) => `(no reply: ${e.message})`);
    // Then the session is ended; the client does not have to hang up first.
    after = await smtp.readToEnd(EXIT_BOUND_MS);
    smtp.close();
    ({ code, ms } = await stopping);
    report("SIGTERM, client completes DATA 1.5 s later → exit", ms);
  } finally {
    smtp.close();
  }
  // deno-lint-ignore no-console
  console.log(`[shutdown] client completing DATA during the grace got: ${reply.split("\n")[0]}`);
  const m = /^250 .*queued as ([0-9A-Z]{16})/.exec(reply);
  assert.ok(m, `a message completed within the grace must be accepted, got ${reply}`);
  assert.match(after, /^421 4\.3\.2 /, `after the 250: ${JSON.stringify(after)}`);
  assert.equal(code, 0, mta.stderr);
  assert.ok(ms < EXIT_BOUND_MS, `exit took ${ms} ms`);
  await mta.launch();
  // A 250 is a promise: the message must be there, complete.
  assert.deepEqual((await mta.queueList()).map((e) => e.id), [m[1]]);
  const body = new TextDecoder().decode(await mta.readEml(m[1]));
  assert.match(body, /first half of the body\r\nsecond half\r\n$/);
  assert.deepEqual(await mta.spoolFiles("tmp"), []);
  assert.equal(await mta.stop(), 0);
});

Deno.test({
  name: "D12b: SIGTERM while the MX takes 3 s to answer the final dot: waited for, delivered once",
  ignore: requireTool("python3:dns"),
  async fn() {
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start(mxZone("dest.test", "mx1.dest.test", net(2)));
    await using mx = await FakeMx.start(net(2), port, {
      name: "mx1.dest.test",
      delay_ms: [STOP_GRACE_MS - 2_000, 0], // 3 s: within the grace
    });
    await using mta = await Mta.start({ config: { delivery: deliveryConfig({ dns, port }) } });
    const id = await submit(mta, { to: ["slow@dest.test"] });
    // The MX has the whole message and sits on its reply.
    await waitFor("the MX to receive the message", async () => (await mx.transactions()).length);
    const { code, ms } = await timedStop(mta);
    report("SIGTERM during a 3 s final-dot delay → exit", ms);
    assert.equal(code, 0, mta.stderr);
    assert.ok(ms < EXIT_BOUND_MS, `exit took ${ms} ms`);
    assert.ok(ms > 1_500, `exit after ${ms} ms: the in-flight transaction was not waited for`);
    const events = deliveryEvents(mta, id);
    assert.deepEqual(
      events.map((e) => [e.recipient, e.outcome, e.code]),
      [["slow@dest.test", "delivered", 250]],
      JSON.stringify(events),
    );
    assert.ok(await isGone(mta, id), "the delivered message left the spool before the exit");

    await mta.launch();
    assert.deepEqual(await mta.queueList(), []);
    await delay(2_000); // a wrongly kept message would be retried now (retry_schedule 1 s)
    const txs = await mx.transactions();
    assert.equal(txs.length, 1, "received exactly once");
    assert.deepEqual(txs[0].rcpts, ["slow@dest.test"]);
    assert.equal(await mta.stop(), 0);
  },
});

Deno.test({
  name:
    "D12c: SIGTERM with an idle client and a delivery stalled in DATA: 421 4.3.2 at once, exit 0 within 10 s, delivered after restart",
  ignore: requireTool("python3:dns"),
  async fn() {
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start(mxZone("dest.test", "mx1.dest.test", net(2)));
    // Greets, takes the message, then says nothing for 40 s; answers at once next time.
    await using mx = await FakeMx.start(net(2), port, {
      name: "mx1.dest.test",
      delay_ms: [40_000, 0],
    });
    await using mta = await Mta.start({
      // A data timeout longer than the stall, so the stop is what ends the wait.
      config: { delivery: deliveryConfig({ dns, port, data_timeout: "60s" }) },
    });
    const id = await submit(mta, { to: ["stalled@dest.test"] });
    await waitFor("the MX to receive the message", async () => (await mx.transactions()).length);
    // A client that logged in and sits there, between transactions.
    const idle = await mta.authed();
    let exited = false;
    let idleSaw: string;
    let code: number;
    let ms: number;
    let beforeExit: boolean;
    try {
      const stopping = timedStop(mta).finally(() => (exited = true));
      idleSaw = await idle.readToEnd(EXIT_BOUND_MS + 5_000);
      beforeExit = !exited;
      ({ code, ms } = await stopping);
    } finally {
      idle.close();
    }
    report("SIGTERM with an idle client and a stalled delivery → exit", ms);
    assert.match(idleSaw, /^421 4\.3\.2 /, `the idle client got ${JSON.stringify(idleSaw)}`);
    assert.ok(beforeExit, "the idle client was told only when the daemon exited");
    assert.equal(code, 0, mta.stderr);
    assert.ok(ms < EXIT_BOUND_MS, `exit took ${ms} ms`);
    assert.ok(
      !deliveryEvents(mta, id).some((e) => e.outcome === "delivered"),
      "not recorded as delivered without a reply",
    );
    assert.equal(await isGone(mta, id), false, "the unanswered message is still queued");
    const meta = await mta.readMeta(id);
    assert.ok(
      meta.recipients.every((r: { status: string }) =>
        r.status === "pending" || r.status === "deferred"
      ),
      JSON.stringify(meta.recipients),
    );

    const t0 = performance.now();
    await mta.launch();
    await waitFor(
      "the message to be delivered (and logged) after the restart",
      async () =>
        (await isGone(mta, id)) &&
        deliveryEvents(mta, id).some((e) => e.outcome === "delivered"),
      20_000,
    );
    report("restart → redelivered", performance.now() - t0);
    const txs = await mx.transactions();
    assert.ok(txs.length >= 2, `received ${txs.length} times: at least once more after restart`);
    assert.ok(txs.every((t) => t.rcpts.join() === "stalled@dest.test"));
    const delivered = deliveryEvents(mta, id).filter((e) => e.outcome === "delivered");
    assert.equal(delivered.length, 1, JSON.stringify(deliveryEvents(mta, id)));
    assert.equal(await mta.stop(), 0);
  },
});

Deno.test("D12e: minimta sendmail during the stop succeeds, and every message is queued", async () => {
  await using mta = await Mta.start();
  // A client idle in DATA keeps the daemon in its stop grace for a while.
  const smtp = await inData(mta, PARTIAL);
  const runs: Promise<CliResult>[] = [];
  const send = (n: number) =>
    runs.push(cli(mta, ["sendmail", "-i", `cron${n}@remote.test`], {
      stdin: lfMessage([`Subject: during the stop ${n}`]),
    }));
  let code: number;
  try {
    await delay(300);
    let exited = false;
    const stopping = timedStop(mta).finally(() => (exited = true));
    // From the signal until the exit, a cron job every 300 ms; then one more.
    for (let n = 0; !exited; n++) {
      send(n);
      await Promise.race([delay(300), stopping]);
    }
    send(runs.length);
    ({ code } = await stopping);
  } finally {
    smtp.close();
  }
  assert.equal(code, 0, mta.stderr);
  const results = await Promise.all(runs);
  // deno-lint-ignore no-console
  console.log(`[shutdown] ${results.length} sendmail calls during and right after the stop`);
  assert.ok(results.length >= 3, `only ${results.length} sendmail calls`);
  for (const r of results) assert.equal(r.code, 0, `sendmail failed: ${r.stderr}${r.stdout}`);
  const ids = results.map((r) => queuedId(r.stdout)).sort();
  await mta.launch();
  const queued = (await mta.queueList()).map((e) => e.id).sort();
  assert.deepEqual(queued, ids, "every accepted message is in the queue after the restart");
  assert.equal(await mta.stop(), 0);
});

Deno.test("D12d: SIGINT stops the daemon cleanly too: exit 0, the queue kept", async () => {
  await using mta = await Mta.start({ noStart: true });
  // Started here rather than by the harness, whose stop() only sends SIGTERM.
  const child = new Deno.Command(Deno.execPath(), {
    args: minimtaArgs([...startTask().command, "--config", mta.configPath]),
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const output = child.output();
  let exited = false;
  output.finally(() => (exited = true));
  try {
    await waitFor("the daemon to listen", async () => {
      if (exited) throw new Error("minimta exited during start-up");
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port: mta.tlsPort })).close();
        (await Deno.connect({ hostname: "127.0.0.1", port: mta.port })).close();
        return true;
      } catch {
        return false;
      }
    }, 30_000);
    // One message queued (delivery cannot reach DNS at 127.0.0.1:9, so it stays).
    const id = await submit(mta, { to: ["keep@remote.test"] });
    const t0 = performance.now();
    child.kill("SIGINT");
    const timer = setTimeout(() => child.kill("SIGKILL"), EXIT_BOUND_MS + 10_000);
    const out = await output;
    clearTimeout(timer);
    const ms = performance.now() - t0;
    report("SIGINT, idle daemon → exit", ms);
    const stdout = new TextDecoder().decode(out.stdout);
    assert.equal(out.signal, null, "killed by a signal instead of exiting");
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.ok(ms < EXIT_BOUND_MS, `exit took ${ms} ms`);
    assert.match(stdout, /"Stopped"|Stopped/);
    assert.equal(await isGone(mta, id), false, "the queued message is kept");
  } finally {
    if (!exited) {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
      await output.catch(() => {});
    }
  }
});
