/**
 * A bad config stops `serve` and `config check` with exit 1 and exactly one
 * stderr line naming the file and the key path — never a stack trace.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { Mta, runMinimta } from "./_harness.ts";

type Patch = (config: Record<string, Record<string, unknown>>, dir: string) => string;

const json = (c: unknown) => JSON.stringify(c, null, 2);

const CASES: [name: string, patch: Patch, mentions: string[]][] = [
  ["unknown key", (c) => json({ ...c, server: { ...c.server, colour: "red" } }), ["server.colour"]],
  [
    "wrong type",
    (c) => json({ ...c, server: { ...c.server, max_recipients: "many" } }),
    ["server.max_recipients"],
  ],
  [
    "bad duration",
    (c) => json({ ...c, auth: { ...c.auth, failure_delay: "soon" } }),
    ["auth.failure_delay"],
  ],
  [
    "missing certificate file",
    (c, dir) => json({ ...c, tls: { ...c.tls, cert_file: `${dir}/nope.crt` } }),
    ["tls.cert_file", "nope.crt"],
  ],
  [
    "missing users file",
    (c, dir) => json({ ...c, auth: { ...c.auth, users_file: `${dir}/nobody.json` } }),
    ["auth.users_file", "nobody.json"],
  ],
  ["bad YAML", () => "server:\n  hostname: [unclosed\n  listen_addr: x\n", ["YAML"]],
  // Files the listeners cannot use: found now, not by every STARTTLS failing.
  [
    "garbage certificate",
    (c, dir) => json({ ...c, tls: { ...c.tls, cert_file: `${dir}/garbage.crt` } }),
    ["tls.cert_file", "garbage.crt", "not a PEM certificate"],
  ],
  [
    "garbage key",
    (c, dir) => json({ ...c, tls: { ...c.tls, key_file: `${dir}/garbage.crt` } }),
    ["tls.key_file", "garbage.crt", "not a PEM private key"],
  ],
  [
    "key of another certificate",
    (c, dir) => json({ ...c, tls: { ...c.tls, key_file: `${dir}/other.key` } }),
    ["tls.key_file", "other.key", "does not match tls.cert_file"],
  ],
  // Addresses that only failed once the daemon used them, or never.
  [
    "IPv4 network out of range",
    (c) => json({ ...c, server: { ...c.server, trusted_networks: ["300.1.1.1/8"] } }),
    ["server.trusted_networks[0]", "300.1.1.1/8"],
  ],
  [
    "malformed IPv6 network",
    (c) => json({ ...c, server: { ...c.server, trusted_networks: ["1::2::3"] } }),
    ["server.trusted_networks[0]", "1::2::3"],
  ],
  [
    "DNS server not an IP",
    (c) => json({ ...c, delivery: { ...c.delivery, dns_servers: ["not-an-ip"] } }),
    ["delivery.dns_servers[0]", "not-an-ip"],
  ],
  [
    "source address not an IP",
    (c) => json({ ...c, delivery: { ...c.delivery, source_address: "999.1.1.1" } }),
    ["delivery.source_address", "999.1.1.1"],
  ],
  [
    "relay host not an IP or name",
    (c) => json({ ...c, delivery: { ...c.delivery, relay_host: "999.1.1.1:25" } }),
    ["delivery.relay_host", "999.1.1.1:25"],
  ],
  // Names of Object.prototype are not keys of the schema.
  ["key constructor", (c) => json({ ...c, constructor: {} }), ["constructor: unknown key"]],
  ["key toString", (c) => json({ ...c, toString: "x" }), ["toString: unknown key"]],
  [
    "nested key __proto__",
    // A computed key is an own property named "__proto__", as YAML makes it.
    (c) => json({ ...c, server: { ...c.server, ["__proto__"]: { hostname: "x" } } }),
    ["server.__proto__: unknown key"],
  ],
  // A retry due before the attempt is on disk stranded the message.
  [
    "retry step under a second",
    (c) => json({ ...c, delivery: { ...c.delivery, retry_schedule: ["1m", "500ms"] } }),
    ["delivery.retry_schedule[1]", "500ms", "at least 1s"],
  ],
];

Deno.test("bad configs: one stderr line naming the file and key, exit 1, for serve and config check", async (t) => {
  await using mta = await Mta.start({ noStart: true });
  const base = await mta.config();
  await Deno.writeTextFile(`${mta.dir}/garbage.crt`, "not a certificate\n");
  const other = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
  await Deno.writeTextFile(
    `${mta.dir}/other.key`,
    other.export({ type: "pkcs8", format: "pem" }) as string,
  );
  for (const [name, patch, mentions] of CASES) {
    const file = `${mta.dir}/bad-${name.replaceAll(" ", "-")}.yaml`;
    await Deno.writeTextFile(file, patch(structuredClone(base), mta.dir));
    for (const command of [["serve"], ["config", "check"]]) {
      await t.step(`${name}: ${command.join(" ")}`, async () => {
        // A serve that accepts the config runs on: killed, it fails the step.
        const r = await runMinimta([...command, "--config", file], { timeoutMs: 30_000 });
        assert.equal(r.code, 1, r.stdout + r.stderr);
        const lines = r.stderr.trimEnd().split("\n");
        assert.equal(lines.length, 1, `expected one stderr line:\n${r.stderr}`);
        assert.ok(lines[0].startsWith("minimta: "), lines[0]);
        assert.ok(lines[0].includes(file), `file not named: ${lines[0]}`);
        for (const m of mentions) assert.ok(lines[0].includes(m), `"${m}" not in: ${lines[0]}`);
        assert.doesNotMatch(r.stderr + r.stdout, /^\s+at /m);
      });
    }
  }
  await t.step("the unpatched config passes config check", async () => {
    const r = await runMinimta(["config", "check", "--config", mta.configPath]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
  });
});
