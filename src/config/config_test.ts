import assert from "node:assert/strict";
import { ConfigError, DEFAULTS, loadConfig, parseConfigText, parseDuration } from "./mod.ts";

Deno.test("parseDuration() reads s, m, h, d and ms", () => {
  assert.deepEqual(["30s", "5m", "4h", "5d", "250ms", "1.5h"].map(parseDuration), [
    30_000,
    300_000,
    14_400_000,
    432_000_000,
    250,
    5_400_000,
  ]);
  assert.equal(parseDuration("5 minutes"), null);
  assert.equal(parseDuration("-5m"), null);
});

Deno.test("config merges a file over the defaults and keeps the original MiniMTA keys", () => {
  const config = parseConfigText(
    "server:\n  hostname: mail.example.com\n  listen_addr: 0.0.0.0:2525\n  max_message_size: 2048\ntls:\n  cert_file: c.pem\n  key_file: /k.pem\ndelivery:\n  retry_schedule: [1m, 2h]\n",
    "/etc/minimta/config.yaml",
  );
  assert.equal(config.server.hostname, "mail.example.com");
  assert.equal(config.server.max_message_size, 2048);
  assert.equal(config.server.max_recipients, DEFAULTS.server.max_recipients);
  assert.equal(config.tls.cert_file, "/etc/minimta/c.pem", "relative to the config file");
  assert.deepEqual(config.delivery.retry_schedule, [60_000, 7_200_000]);
  assert.ok(Object.isFrozen(config.server));
});

Deno.test("config errors name the file, the key path and what was expected", () => {
  const cases: [string, RegExp][] = [
    ["server:\n  hostnme: x\n", /^Config "f\.yaml": server\.hostnme: unknown key$/],
    [
      "server:\n  max_recipients: lots\n",
      /^Config "f\.yaml": server\.max_recipients: expected an integer >= 1, got string "lots"$/,
    ],
    [
      "delivery:\n  retry_schedule: [5m, soon]\n",
      /delivery\.retry_schedule\[1\]: expected a duration/,
    ],
    [
      "delivery:\n  tls: maybe\n",
      /delivery\.tls: expected one of opportunistic \| required \| verify/,
    ],
    [
      "server:\n  trusted_networks: [10.0.0.0/99]\n",
      /server\.trusted_networks\[0\]: expected a CIDR/,
    ],
    ["dkim:\n  - domain: a.test\n    selector: s\n", /dkim\[0\]\.private_key_file: missing/],
    ["server: [\n", /^Config "f\.yaml": not valid YAML/],
    ["log: 3\n", /log: expected a mapping/],
  ];
  for (const [text, pattern] of cases) {
    assert.throws(() => parseConfigText(text, "f.yaml"), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, pattern);
      assert.ok(!e.message.includes("\n"), "one line");
      return true;
    });
  }
});

Deno.test("loadConfig() falls back to the embedded default on loopback under a local data folder", async () => {
  const loaded = await loadConfig({
    env: (n) => (n === "MINIMTA_DATA_DIR" ? "/tmp/mm-data" : undefined),
  });
  if (!loaded.embedded) return; // a system config exists on this machine
  assert.equal(loaded.config.server.listen_addr, "127.0.0.1:2587");
  assert.equal(loaded.config.queue.dir, "/tmp/mm-data/spool");
  assert.equal(loaded.config.auth.users_file, "/tmp/mm-data/users.json");
});

Deno.test("loadConfig() reports a missing certificate file with its key", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/c.yaml`,
      "tls:\n  cert_file: nope.crt\n  key_file: nope.key\n",
    );
    await assert.rejects(() => loadConfig({ path: `${dir}/c.yaml` }), (e: Error) => {
      assert.equal(
        e.message,
        `Config "${dir}/c.yaml": tls.cert_file: cannot read "${dir}/nope.crt": not found`,
      );
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
