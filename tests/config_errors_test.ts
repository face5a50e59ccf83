/**
 * A bad config stops `serve` and `config check` with exit 1 and exactly one
 * stderr line naming the file and the key path — never a stack trace.
 */
import assert from "node:assert/strict";
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
];

Deno.test("bad configs: one stderr line naming the file and key, exit 1, for serve and config check", async (t) => {
  await using mta = await Mta.start({ noStart: true });
  const base = await mta.config();
  for (const [name, patch, mentions] of CASES) {
    const file = `${mta.dir}/bad-${name.replaceAll(" ", "-")}.yaml`;
    await Deno.writeTextFile(file, patch(structuredClone(base), mta.dir));
    for (const command of [["serve"], ["config", "check"]]) {
      await t.step(`${name}: ${command.join(" ")}`, async () => {
        const r = await runMinimta([...command, "--config", file]);
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
