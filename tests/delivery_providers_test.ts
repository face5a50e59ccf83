/**
 * Campaign delivery shaped per mailbox provider (issue 11, PRV-*): many
 * recipient domains whose MX hosts belong to one provider share its limits
 * (connections, messages per connection, rate); a throttling reply named by
 * a rule suspends the whole provider, across a kill -9, while another
 * provider keeps flowing; warm-up caps hold across a restart. A real DNS
 * server (fake_dns.py) and real receiving servers (fake_mx.py) that log
 * every connection and transaction.
 */
import assert from "node:assert/strict";
import { delay, freePorts, Mta, requireTool, runMinimta, waitFor } from "./_harness.ts";
import { isGone, mailEvents, submit } from "./_delivery.ts";
import { FakeDns, type Zone } from "./_dns.ts";
import { FakeMx, loopbackNet, type MxScript } from "./_mx.ts";

const needs = requireTool("python3:dns");

/** `count` domains dN.test whose MX hosts are mx1/mx2.bigmail.test, plus other.test on another provider. */
function campaignZone(net: (n: number) => string, count: number): Zone {
  const zone: Zone = {
    "mx1.bigmail.test": { A: [net(2)] },
    "mx2.bigmail.test": { A: [net(3)] },
    "other.test": { MX: [[10, "mx.othermail.test"]] },
    "mx.othermail.test": { A: [net(4)] },
    "ours.test": { MX: [[10, "mx.ours.test"]] },
    "mx.ours.test": { A: [net(9)] },
  };
  for (let i = 0; i < count; i++) {
    zone[`d${i}.test`] = { MX: [[10, i % 2 ? "mx1.bigmail.test" : "mx2.bigmail.test"]] };
  }
  return zone;
}

const BIGMAIL = { name: "bigmail", mx: [".bigmail.test"] };

/** Two fake MXs for bigmail (net 2 and 3) and one for othermail (net 4). */
async function fakes(net: (n: number) => string, port: number, script: MxScript = {}) {
  return [
    await FakeMx.start(net(2), port, { name: "mx1.bigmail.test", ...script }),
    await FakeMx.start(net(3), port, { name: "mx2.bigmail.test", ...script }),
    await FakeMx.start(net(4), port, { name: "mx.othermail.test" }),
  ];
}

function delivery(dns: FakeDns, port: number, extra: Record<string, unknown>) {
  return {
    dns_servers: [dns.server],
    allow_loopback: true,
    port,
    retry_schedule: ["1s"],
    max_queue_lifetime: "1h",
    connect_timeout: "2s",
    command_timeout: "5s",
    ...extra,
  };
}

/** Connections of several MXs as [open, close] intervals (Unix seconds). */
async function intervals(mxs: FakeMx[]): Promise<[number, number][]> {
  const out: [number, number][] = [];
  for (const mx of mxs) {
    const open = new Map<number, number>();
    for (const e of await mx.events()) {
      if (e.event === "connect") open.set(e.conn as number, e.t as number);
      if (e.event === "close") out.push([open.get(e.conn as number)!, e.t as number]);
    }
  }
  return out;
}

/** The most connections open at once over `spans`. */
function peak(spans: [number, number][]): number {
  const edges = spans.flatMap(([a, b]) => [[a, 1], [b, -1]] as [number, number][]);
  edges.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  let now = 0;
  let most = 0;
  for (const [, d] of edges) most = Math.max(most, now += d);
  return most;
}

async function acceptedCount(mxs: FakeMx[]): Promise<number> {
  let n = 0;
  for (const mx of mxs) n += (await mx.accepted()).reduce((k, t) => k + t.rcpts.length, 0);
  return n;
}

/** Submits `messages` messages, each to one recipient at every campaign domain. */
async function campaign(mta: Mta, messages: number, domains: number): Promise<string[]> {
  const ids = [];
  for (let m = 0; m < messages; m++) {
    ids.push(
      await submit(mta, { to: Array.from({ length: domains }, (_, i) => `u${m}@d${i}.test`) }),
    );
  }
  return ids;
}

async function stats(mta: Mta): Promise<Record<string, unknown>[]> {
  const r = await runMinimta(["queue", "stats", "--json", "--config", mta.configPath]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout).providers;
}

Deno.test({
  name:
    "PRV-1 20 domains on one provider with connections: 2 never see more than 2 connections, 3 messages each",
  ignore: needs,
  async fn() {
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start(campaignZone(net, 20));
    const [mx1, mx2, other] = await fakes(net, port, { delay_ms: [150] });
    await using _a = mx1;
    await using _b = mx2;
    await using _c = other;
    await using mta = await Mta.start({
      config: {
        delivery: delivery(dns, port, {
          providers: [{ ...BIGMAIL, connections: 2, messages_per_connection: 3 }],
        }),
      },
    });
    const ids = await campaign(mta, 3, 20);
    for (const id of ids) await waitFor(`${id} delivered`, () => isGone(mta, id), 60_000);
    assert.equal(await acceptedCount([mx1, mx2]), 60, "every recipient delivered once");
    const spans = await intervals([mx1, mx2]);
    assert.ok(peak(spans) <= 2, `at most 2 connections to bigmail at once, saw ${peak(spans)}`);
    for (const mx of [mx1, mx2]) {
      const perConn = new Map<number, number>();
      for (const t of await mx.transactions()) perConn.set(t.conn, (perConn.get(t.conn) ?? 0) + 1);
      assert.ok(
        [...perConn.values()].every((n) => n <= 3),
        `at most 3 messages per connection: ${JSON.stringify([...perConn])}`,
      );
    }
    assert.equal(mailEvents(mta, "bounced").length, 0);
  },
});

Deno.test({
  name: "PRV-2 a provider's rate holds within 10% over a campaign to 30 of its domains",
  ignore: needs,
  async fn() {
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start(campaignZone(net, 30));
    const [mx1, mx2, other] = await fakes(net, port);
    await using _a = mx1;
    await using _b = mx2;
    await using _c = other;
    await using mta = await Mta.start({
      config: {
        delivery: delivery(dns, port, {
          providers: [{ ...BIGMAIL, connections: 5, rate: "10/s" }],
        }),
      },
    });
    const [id] = await campaign(mta, 1, 30);
    await waitFor("the campaign delivered", () => isGone(mta, id), 30_000);
    const times = [...await mx1.transactions(), ...await mx2.transactions()].map((t) => t.t).sort();
    assert.equal(times.length, 30);
    const rate = (times.length - 1) / (times[times.length - 1] - times[0]);
    assert.ok(rate > 9 && rate < 11, `10/s within 10%, measured ${rate.toFixed(2)}/s`);
  },
});

/** A bigmail whose first transaction is answered with a throttling 421, then 250. */
const THROTTLE: MxScript = { data: ["421 4.7.0 Slow down, unusual rate (cue)", "250 2.0.0 Ok"] };
const RULE = { match: "4\\.7\\.0 slow down", suspend: "6s", provider: "bigmail" };

/** When the throttling reply was sent, and connections to bigmail after it. */
async function afterThrottle(mxs: FakeMx[]): Promise<{ at: number; later: number[] }> {
  const all = (await Promise.all(mxs.map((m) => m.transactions()))).flat();
  const throttled = all.find((t) => t.reply?.startsWith("421"));
  assert.ok(throttled, "the cue was answered");
  const connects = (await Promise.all(mxs.map((m) => m.events()))).flat()
    .filter((e) => e.event === "connect").map((e) => e.t as number);
  return { at: throttled.t, later: connects.filter((t) => t > throttled.t).sort() };
}

Deno.test({
  name:
    "PRV-3 a 421 a rule names suspends the provider for its duration, another flows, all delivered once",
  ignore: needs,
  async fn() {
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start(campaignZone(net, 4));
    // One bigmail host, so the cue is certain to be the first transaction there.
    await dns.setZone({
      ...campaignZone(net, 4),
      "mx2.bigmail.test": { A: [net(2)] },
    });
    const [mx1, mx2, other] = await fakes(net, port, THROTTLE);
    await using _a = mx1;
    await using _b = mx2;
    await using _c = other;
    await using mta = await Mta.start({
      config: {
        delivery: delivery(dns, port, {
          providers: [{ ...BIGMAIL, connections: 1 }],
          throttle_rules: [RULE],
        }),
      },
    });
    const [id] = await campaign(mta, 1, 4);
    const [event] = await waitFor("one provider_suspended event", () => {
      const e = mailEvents(mta, "provider_suspended");
      return e.length > 0 && e;
    });
    assert.equal(event.provider, "bigmail");
    assert.match(String(event.reply), /^421 4\.7\.0 Slow down, unusual rate \(cue\)/);
    const providers = await stats(mta);
    const big = providers.find((p) => p.name === "bigmail")!;
    assert.ok(big.suspended_until, "queue stats shows the suspension");
    assert.match(String(big.suspended_reason), /Slow down/);
    // Meanwhile another provider keeps flowing.
    const otherId = await submit(mta, { to: ["x@other.test"] });
    await waitFor("other.test delivered during the suspension", () => isGone(mta, otherId));
    await waitFor("the campaign delivered after the suspension", () => isGone(mta, id), 30_000);
    const { at, later } = await afterThrottle([mx1]);
    assert.ok(later.length > 0);
    assert.ok(
      later[0] >= at + 5.5,
      `no connection for 6 s; first after ${(later[0] - at).toFixed(1)} s`,
    );
    assert.ok(Date.parse(String(event.until)) / 1000 >= at + 5.5);
    assert.equal(await acceptedCount([mx1]), 4, "each recipient delivered once");
    assert.equal(mailEvents(mta, "bounced").length, 0, "nothing bounced");
    assert.equal(mailEvents(mta, "provider_suspended").length, 1, "one event per suspension");
  },
});

Deno.test({
  name: "PRV-4 a suspension survives kill -9 and restart",
  ignore: needs,
  async fn() {
    const net = loopbackNet();
    const [port] = freePorts(1);
    const zone = { ...campaignZone(net, 2), "mx2.bigmail.test": { A: [net(2)] } };
    await using dns = await FakeDns.start(zone);
    const [mx1, mx2, other] = await fakes(net, port, THROTTLE);
    await using _a = mx1;
    await using _b = mx2;
    await using _c = other;
    await using mta = await Mta.start({
      config: {
        delivery: delivery(dns, port, {
          providers: [{ ...BIGMAIL, connections: 1 }],
          throttle_rules: [{ ...RULE, suspend: "10s" }],
        }),
      },
    });
    const [id] = await campaign(mta, 1, 2);
    await waitFor("the suspension", () => mailEvents(mta, "provider_suspended").length > 0);
    await mta.kill9();
    const stopped = await stats(mta);
    assert.ok(stopped.find((p) => p.name === "bigmail")?.suspended_until, "kept in the spool");
    await mta.launch();
    await waitFor("the campaign delivered after the suspension", () => isGone(mta, id), 30_000);
    const { at, later } = await afterThrottle([mx1]);
    assert.ok(
      later[0] >= at + 9.5,
      `no connection for 10 s; first after ${(later[0] - at).toFixed(1)} s`,
    );
    assert.equal(await acceptedCount([mx1]), 2);
    assert.equal(mailEvents(mta, "bounced").length, 0);
  },
});

Deno.test({
  name: "PRV-5 warm-up caps messages per provider per day, across a kill -9",
  ignore: needs,
  async fn() {
    const net = loopbackNet();
    const [port] = freePorts(1);
    await using dns = await FakeDns.start(campaignZone(net, 5));
    const [mx1, mx2, other] = await fakes(net, port);
    await using _a = mx1;
    await using _b = mx2;
    await using _c = other;
    await using mta = await Mta.start({
      config: {
        delivery: delivery(dns, port, {
          providers: [{ ...BIGMAIL, connections: 2 }],
          warmup: [{ domain: "ours.test", start: 3, growth: 2, per: "1d" }],
        }),
      },
    });
    const [id] = await campaign(mta, 1, 5);
    await waitFor("3 delivered", async () => (await acceptedCount([mx1, mx2])) === 3);
    await delay(2_500); // retries on the 1 s schedule would go now
    assert.equal(await acceptedCount([mx1, mx2]), 3, "the cap holds");
    const entry = (await mta.queueList()).find((m) => m.id === id)!;
    assert.equal(entry.state, "deferred", "deferred, not held");
    assert.ok(entry.recipients.some((r) => /Warm-up cap of 3/.test(r.last_error ?? "")));
    await mta.kill9();
    await mta.launch();
    await delay(3_000);
    assert.equal(await acceptedCount([mx1, mx2]), 3, "the cap holds after a restart");
    const big = (await stats(mta)).find((p) => p.name === "bigmail")!;
    assert.deepEqual(big.warmup, [{ domain: "ours.test", sent: 3, cap: 3 }]);
    assert.equal(mailEvents(mta, "bounced").length, 0);
  },
});
