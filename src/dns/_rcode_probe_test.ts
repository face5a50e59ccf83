import { deepStrictEqual as assertEquals, rejects as assertRejects } from "node:assert/strict";
import { probeRcode } from "./_rcode_probe.ts";
import { fakeDnsTest, startFakeDns } from "./_test_fake_dns.ts";

const ZONE = {
  "nx.test": { rcode: "NXDOMAIN" },
  "fail.test": { rcode: "SERVFAIL" },
  "refused.test": { rcode: "REFUSED" },
  "drop.test": { drop: true },
  "data.test": { A: ["192.0.2.1", "192.0.2.2"] },
};

Deno.test(fakeDnsTest("probeRcode() reads the RCODE and answer count over TCP"), async () => {
  await using dns = await startFakeDns(ZONE);
  const server = { ipAddr: "127.0.0.1", port: dns.port };
  const ask = (name: string, type: string) =>
    probeRcode(name, type, { server, signal: AbortSignal.timeout(2000) });
  assertEquals(await ask("nx.test", "MX"), { rcode: "NXDOMAIN", answers: 0 });
  assertEquals(await ask("unlisted.test", "A"), { rcode: "NXDOMAIN", answers: 0 });
  assertEquals(await ask("fail.test", "MX"), { rcode: "SERVFAIL", answers: 0 });
  assertEquals(await ask("refused.test", "MX"), { rcode: "REFUSED", answers: 0 });
  assertEquals(await ask("data.test", "MX"), { rcode: "NOERROR", answers: 0 });
  assertEquals(await ask("data.test", "A"), { rcode: "NOERROR", answers: 2 });
  assertEquals((await dns.queries()).every((q) => q.proto === "tcp"), true);
});

Deno.test(
  fakeDnsTest("probeRcode() gives up when its signal aborts on a silent server"),
  async () => {
    await using dns = await startFakeDns(ZONE);
    const controller = new AbortController();
    const id = setTimeout(() => controller.abort(new Error("probe timed out")), 200);
    const server = { ipAddr: "127.0.0.1", port: dns.port };
    await assertRejects(
      probeRcode("drop.test", "A", { server, signal: controller.signal }),
      /probe timed out/,
    );
    clearTimeout(id);
  },
);
