// Resolver behaviour with the DNS edges replaced: no network needed.
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import type { ProbeResult, RcodeProbe } from "./_rcode_probe.ts";
import { Resolver, type ResolverOptions } from "./resolver.ts";

const notFound = () => Promise.reject(new Deno.errors.NotFound("no records found"));

function resolverWith(
  resolveDns: (name: string, type: string, o?: Deno.ResolveDnsOptions) => Promise<unknown>,
  opts: ResolverOptions = {},
): Resolver {
  return new Resolver({
    servers: ["192.0.2.53"],
    ownAddresses: () => [],
    ...opts,
    resolveDns: resolveDns as typeof Deno.resolveDns,
  });
}

function probeSaying(result: ProbeResult, seen: string[] = []): RcodeProbe {
  return (name, type, { server }) => {
    seen.push(`${name} ${type} ${server.ipAddr}:${server.port}`);
    return Promise.resolve(result);
  };
}

Deno.test("route() treats an empty exchange as a null MX too (RFC 7505)", async () => {
  const resolver = resolverWith(() => Promise.resolve([{ preference: 0, exchange: "" }]));
  const r = await resolver.route("null.test");
  assertEquals(r.kind !== "ok" && r.status, "5.1.10");
});

Deno.test("route() ignores a null MX listed beside real MX hosts", async () => {
  const resolver = resolverWith((name, type) =>
    type === "MX"
      ? Promise.resolve([{ preference: 0, exchange: "." }, {
        preference: 10,
        exchange: "mx.test.",
      }])
      : type === "A" && name === "mx.test."
      ? Promise.resolve(["192.0.2.1"])
      : notFound()
  );
  const r = await resolver.route("mixed.test");
  assertEquals(r.kind === "ok" && r.targets, [{
    host: "mx.test",
    preference: 10,
    addresses: ["192.0.2.1"],
  }]);
});

Deno.test("route() never bounces when the RCODE probe fails", async () => {
  const probe: RcodeProbe = () => Promise.reject(new Deno.errors.ConnectionRefused("refused"));
  const r = await resolverWith(notFound, { probe }).route("maybe.test");
  assertEquals(r.kind !== "ok" && r.status, "4.4.3");
});

Deno.test("route() defers when resolveDns and the probe disagree", async () => {
  const probe = probeSaying({ rcode: "NOERROR", answers: 1 });
  const r = await resolverWith(notFound, { probe }).route("flappy.test");
  assertEquals(r.kind, "temporary");
});

Deno.test("route() stops at routeTimeoutMs even when each lookup would wait longer", async () => {
  const hang = (_n: string, _t: string, o?: Deno.ResolveDnsOptions) =>
    new Promise((_, reject) =>
      o?.signal?.addEventListener("abort", () => reject(o.signal?.reason))
    );
  const resolver = resolverWith(hang, { timeoutMs: 60_000, routeTimeoutMs: 50 });
  const r = await resolver.route("slow.test");
  assert(r.kind === "temporary" && r.text.includes("time limit"), JSON.stringify(r));
});

Deno.test("route() probes the system resolver's servers when none are configured", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/resolv.conf`, "nameserver 192.0.2.53\n");
    const seen: string[] = [];
    const probe = probeSaying({ rcode: "NXDOMAIN", answers: 0 }, seen);
    const resolver = resolverWith(notFound, {
      servers: [],
      probe,
      resolvConfPath: `${dir}/resolv.conf`,
    });
    assertEquals((await resolver.route("gone.test")).kind, "permanent");
    assertEquals(seen, ["gone.test MX 192.0.2.53:53"]);
    const unreadable = resolverWith(notFound, {
      servers: [],
      probe,
      resolvConfPath: `${dir}/none`,
    });
    assertEquals((await unreadable.route("gone.test")).kind, "temporary");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("route() passes the configured server and a signal to resolveDns", async () => {
  const calls: string[] = [];
  const resolver = resolverWith((name, type, o) => {
    calls.push(`${name} ${type} ${o?.nameServer?.ipAddr}:${o?.nameServer?.port} ${!!o?.signal}`);
    return type === "A" ? Promise.resolve(["192.0.2.1"]) : notFound();
  }, { servers: ["127.0.0.1:5353"], probe: probeSaying({ rcode: "NOERROR", answers: 0 }) });
  const r = await resolver.route("implicit.test");
  assertEquals(r.kind === "ok" && r.implicit, true);
  assertEquals(calls.sort(), [
    "implicit.test. A 127.0.0.1:5353 true",
    "implicit.test. AAAA 127.0.0.1:5353 true",
    "implicit.test. MX 127.0.0.1:5353 true",
  ]);
});

Deno.test("route() refuses the host's own interface addresses by default", async () => {
  const resolver = resolverWith(
    (_n, type) => type === "A" ? Promise.resolve(["198.51.100.7"]) : notFound(),
    { ownAddresses: () => ["198.51.100.7"], probe: probeSaying({ rcode: "NOERROR", answers: 0 }) },
  );
  const r = await resolver.route("self.test");
  assertEquals(r.kind !== "ok" && r.status, "5.4.6");
});

Deno.test("Resolver rejects a malformed server with a TypeError", () => {
  let err: unknown;
  try {
    new Resolver({ servers: ["dns.example"] });
  } catch (e) {
    err = e;
  }
  assert(err instanceof TypeError && err.message.includes('"dns.example"'));
});
