/**
 * `/metrics`, `/healthz` and `/readyz` of the status server (issue 5): the
 * exposition passes Prometheus's own parser and linter (`promtool check
 * metrics`, Debian's prometheus package) and its numbers match what
 * happened — messages received, deliveries by outcome and status class,
 * DSNs, auth failures, DKIM signatures, queue gauges by state, and a
 * latency histogram with one observation per attempt.
 */
import assert from "node:assert/strict";
import { freePorts, plainBlob, requireTool, run, waitFor } from "./_harness.ts";
import { deliveryConfig, deliveryEvents, isGone, mailEvents, submit } from "./_delivery.ts";
import { FakeDns } from "./_dns.ts";
import { FakeMx, loopbackNet } from "./_mx.ts";
import { ADMIN, httpBase, samples, startWebMta, storedState, value, WebClient } from "./_http.ts";

const needs = requireTool("python3:dns", "promtool");

async function promtool(text: string): Promise<{ code: number; out: string }> {
  const r = await run("promtool", ["check", "metrics"], { stdin: text });
  return { code: r.code, out: r.stdout + r.stderr };
}

Deno.test({
  name: "/metrics parses with promtool and counts what happened; /healthz and /readyz answer",
  ignore: needs,
  async fn() {
    const net = loopbackNet();
    const [mxPort] = freePorts(1);
    const mxA = net(2);
    await using dns = await FakeDns.start({
      "ok.test": { MX: [[10, "mx.ok.test"]] },
      "bad.test": { MX: [[10, "mx.ok.test"]] },
      "ours.test": { MX: [[10, "mx.ok.test"]] },
      "mx.ok.test": { A: [mxA] },
      "later.test": { rcode: "SERVFAIL" },
    });
    await using mx = await FakeMx.start(mxA, mxPort, {
      name: "mx.ok.test",
      rcpt: { "nobody@bad.test": "550 5.1.1 No such user" },
    });
    await using mta = await startWebMta({
      dkim: ["ed25519"],
      config: { delivery: deliveryConfig({ dns, port: mxPort, retry_schedule: ["1h"] }) },
    });
    const base = await httpBase(mta);

    // Probes first: no login needed.
    const health = await fetch(`${base}/healthz`);
    assert.equal(health.status, 200);
    assert.equal(await health.text(), "ok\n");
    // With the DKIM key the intake runs on workers (server.workers: auto),
    // and the port accepts once the first one listens: /readyz says 503
    // until every worker does, as a balancer's probe would see it.
    let ready = await fetch(`${base}/readyz`);
    await waitFor("/readyz to answer 200", async () => {
      if (ready.status === 200) return true;
      await ready.body?.cancel();
      ready = await fetch(`${base}/readyz`);
      return ready.status === 200;
    }, 10_000);
    assert.deepEqual(await ready.json(), {
      ok: true,
      checks: { spool_writable: true, listeners: true },
    });

    // Before anything happened: valid, all zero.
    const empty = await (await fetch(`${base}/metrics`)).text();
    const lint0 = await promtool(empty);
    assert.equal(lint0.code, 0, `promtool check metrics (start):\n${lint0.out}\n${empty}`);
    const s0 = samples(empty);
    assert.equal(value(s0, "minimta_messages_received_total"), 0);
    assert.equal(value(s0, "minimta_delivery_attempt_duration_seconds_count"), 0);

    // What happens: 4 messages (5 recipients), one failed login.
    const delivered = await submit(mta, { to: ["bob@ok.test"] });
    const bounced = await submit(mta, { to: ["nobody@bad.test"] });
    const deferred = await submit(mta, { to: ["carl@later.test"] });
    const mixed = await submit(mta, { to: ["bob2@ok.test", "dan@later.test"] });
    const smtp = await mta.authedOrNot();
    try {
      await smtp.cmd(`AUTH PLAIN ${plainBlob("", "alice@ours.test", "wrong-password")}`, 535);
      await smtp.cmd("QUIT");
    } finally {
      smtp.close();
    }
    await waitFor(
      "the delivered and the bounced message to leave",
      async () => (await isGone(mta, delivered)) && (await isGone(mta, bounced)),
    );
    await waitFor(
      "three messages at the MX (two originals and the DSN)",
      async () => (await mx.accepted()).length === 3,
    );
    await waitFor(
      "the DSN to leave the queue",
      async () => (await mta.spoolFiles("msg")).length === 2,
    );
    await waitFor(
      "the deferred ones to be deferred",
      async () =>
        (await storedState(mta, deferred)) === "deferred" &&
        (await storedState(mta, mixed)) === "deferred",
    );
    // Hold one through the web UI: the gauges show it.
    const web = await WebClient.forMta(mta);
    await web.login(ADMIN.user, ADMIN.pass);
    const hold = await web.post(`/message/${deferred}/hold`, { csrf: await web.csrf() });
    await hold.body?.cancel();
    assert.equal(await storedState(mta, deferred), "held");

    const text = await waitFor("connection gauges back to 0", async () => {
      const t = await (await fetch(`${base}/metrics`)).text();
      const s = samples(t);
      return value(s, "minimta_smtp_connections_in") === 0 &&
        value(s, "minimta_smtp_connections_out") === 0 && t;
    });
    const res = await fetch(`${base}/metrics`);
    await res.body?.cancel();
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const lint = await promtool(text);
    assert.equal(lint.code, 0, `promtool check metrics:\n${lint.out}\n${text}`);
    const s = samples(text);

    // Counters against what the test did ...
    assert.equal(value(s, "minimta_messages_received_total"), 4);
    const deliveries = (outcome: string, status_class: string) =>
      value(s, "minimta_deliveries_total", { outcome, status_class });
    assert.equal(deliveries("delivered", "2"), 3, "bob, bob2 and the DSN");
    assert.equal(deliveries("bounced", "5"), 1, "nobody@bad.test");
    assert.equal(deliveries("deferred", "4"), 2, "carl and dan (SERVFAIL: 4.4.3)");
    assert.equal(value(s, "minimta_deliveries_total"), 6, "no other series");
    assert.equal(value(s, "minimta_bounces_total"), 1, "one DSN");
    assert.equal(value(s, "minimta_auth_failures_total"), 1);
    assert.equal(value(s, "minimta_dkim_signatures_total"), 4, "each submission signed once");
    // ... and against the mail log (a metric and its log line never disagree).
    const log = deliveryEvents(mta);
    assert.equal(log.length, 6);
    assert.equal(mailEvents(mta, "queued").length, 4);
    assert.equal(mailEvents(mta, "auth_failure").length, 1);
    assert.equal(mailEvents(mta, "signed").length, 4);

    // Queue gauges by state, oldest age.
    assert.equal(value(s, "minimta_queue_messages", { state: "queued" }), 0);
    assert.equal(value(s, "minimta_queue_messages", { state: "deferred" }), 1);
    assert.equal(value(s, "minimta_queue_messages", { state: "held" }), 1);
    const age = value(s, "minimta_queue_oldest_message_age_seconds");
    assert.ok(age >= 0 && age < 120, `oldest age ${age}`);
    const start = value(s, "minimta_start_time_seconds");
    assert.ok(Math.abs(start - Date.now() / 1000) < 300, `start time ${start}`);

    // Latency histogram: one observation per attempt, cumulative buckets.
    const count = value(s, "minimta_delivery_attempt_duration_seconds_count");
    assert.equal(count, log.length, "one observation per delivery attempt");
    const buckets = s.filter((x) => x.name === "minimta_delivery_attempt_duration_seconds_bucket");
    assert.ok(buckets.length >= 2);
    assert.equal(buckets.at(-1)!.labels.le, "+Inf");
    assert.equal(buckets.at(-1)!.value, count);
    for (let i = 1; i < buckets.length; i++) {
      assert.ok(buckets[i].value >= buckets[i - 1].value, "buckets are cumulative");
      const le = (x: { labels: Record<string, string> }) =>
        x.labels.le === "+Inf" ? Infinity : Number(x.labels.le);
      assert.ok(le(buckets[i]) > le(buckets[i - 1]), "bucket bounds increase");
    }
    const sum = value(s, "minimta_delivery_attempt_duration_seconds_sum");
    const logged = log.reduce((n, e) => n + (e.duration_ms as number) / 1000, 0);
    assert.ok(Math.abs(sum - logged) < 1e-6, `sum ${sum} = logged durations ${logged}`);
    // Every family is declared once with HELP and TYPE.
    for (const name of new Set(s.map((x) => x.name.replace(/_(bucket|sum|count)$/, "")))) {
      assert.match(text, new RegExp(`^# TYPE ${name} (counter|gauge|histogram)$`, "m"), name);
      assert.match(text, new RegExp(`^# HELP ${name} \\S`, "m"), name);
    }
  },
});
