import assert from "node:assert/strict";
import { isDeferral, ProviderShaper, type Ticket } from "./shaper.ts";
import { local, type RecipientOutcome } from "./outcome.ts";

const route = () =>
  Promise.resolve({
    kind: "ok" as const,
    implicit: false,
    targets: [{ host: "mx.plain.test", preference: 10, addresses: ["192.0.2.1"] }],
  });

function shaper(now: { t: number }): ProviderShaper {
  return new ProviderShaper({
    providers: [],
    rules: [],
    perDomainConcurrency: 3,
    probeIntervalMs: 60_000,
    route,
    emit: () => {},
    now: () => now.t,
  });
}

const reply421: RecipientOutcome = {
  ...local("a@plain.test", "temporary", "4.3.2", "busy"),
  code: 421,
};
const delivered: RecipientOutcome = {
  ...local("a@plain.test", "temporary", "2.0.0", "ok"),
  kind: "delivered",
  code: 250,
};

async function ticket(s: ProviderShaper): Promise<Ticket> {
  const t = await s.enter("plain.test", "alice@ours.test");
  assert.ok(!isDeferral(t));
  return t;
}

Deno.test("ProviderShaper lowers a destination's concurrency on 421s down to 1 and raises it on deliveries", async () => {
  const now = { t: 1_000_000 };
  const s = shaper(now);
  for (let i = 0; i < 4; i++) (await ticket(s)).release([reply421]);
  assert.equal(s.status().length, 0, "no provider, nothing suspended");
  const first = await ticket(s);
  let second = false;
  const waiting = ticket(s).then((t) => {
    second = true;
    return t;
  });
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(second, false, "concurrency 1 after repeated 421s");
  first.release([delivered]);
  (await waiting).release([delivered]);
  assert.ok(second);
  // Back to 3 after successes: three at once.
  const three = await Promise.all([ticket(s), ticket(s), ticket(s)]);
  three.forEach((t) => t.release([delivered]));
});

Deno.test("ProviderShaper probes a destination whose every host is down once per interval", async () => {
  const now = { t: 1_000_000 };
  const s = shaper(now);
  (await ticket(s)).release([local("a@plain.test", "temporary", "4.4.1", "refused")]);
  const held = await s.enter("plain.test", "alice@ours.test");
  assert.ok(isDeferral(held), "not hammered");
  assert.equal(held.deferUntil, 1_060_000);
  now.t += 60_000;
  const probe = await s.enter("plain.test", "alice@ours.test");
  assert.ok(!isDeferral(probe), "one probe after the interval");
  probe.release([delivered]);
  assert.ok(!isDeferral(await s.enter("plain.test", "alice@ours.test")));
});
