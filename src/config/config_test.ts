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
    [
      "server:\n  workers: all\n",
      /server\.workers: expected an integer >= 0 or "auto", got string "all"$/,
    ],
    ["server: [\n", /^Config "f\.yaml": not valid YAML/],
    ["log: 3\n", /log: expected a mapping/],
    // Names that Object.prototype has are not schema keys.
    ["constructor: {}\n", /^Config "f\.yaml": constructor: unknown key$/],
    ["toString: x\n", /^Config "f\.yaml": toString: unknown key$/],
    ["server:\n  __proto__: {hostname: x}\n", /server\.__proto__: unknown key$/],
    ["server:\n  hasOwnProperty: 1\n", /server\.hasOwnProperty: unknown key$/],
    [
      "dkim:\n  - {domain: a.test, selector: s, private_key_file: k, constructor: x}\n",
      /dkim\[0\]\.constructor: unknown key$/,
    ],
    // Addresses are checked here, not when the daemon first uses them.
    [
      "server:\n  trusted_networks: [300.1.1.1/8]\n",
      /server\.trusted_networks\[0\]: expected a CIDR/,
    ],
    [
      "server:\n  trusted_networks: ['1::2::3']\n",
      /server\.trusted_networks\[0\]: expected a CIDR/,
    ],
    [
      "delivery:\n  dns_servers: [not-an-ip]\n",
      /delivery\.dns_servers\[0\]: expected a name server/,
    ],
    [
      "delivery:\n  dns_servers: ['10.0.0.1:0']\n",
      /delivery\.dns_servers\[0\]: expected a name server/,
    ],
    [
      "delivery:\n  dns_servers: ['[10.0.0.1]:53']\n",
      /delivery\.dns_servers\[0\]: expected a name server/,
    ],
    [
      "delivery:\n  source_address: 999.1.1.1\n",
      /delivery\.source_address: expected an IP address/,
    ],
    [
      "delivery:\n  relay_host: 999.1.1.1:25\n",
      /delivery\.relay_host: expected "host:port" with an IP/,
    ],
    [
      "delivery:\n  relay_host: 'smtp_relay:25'\n",
      /delivery\.relay_host: expected "host:port" with an IP/,
    ],
    [
      "delivery:\n  relay_host: '[1.2.3.4]:25'\n",
      /delivery\.relay_host: expected "host:port" with an IP/,
    ],
    [
      "server:\n  listen_addr: '1.2.3:587'\n",
      /server\.listen_addr: expected "host:port" with an IP/,
    ],
    [
      "server:\n  listen_tls_addr: '0.0.0.0:0'\n",
      /server\.listen_tls_addr: expected "host:port" with a port/,
    ],
    ["http:\n  listen_addr: '[::1::2]:80'\n", /http\.listen_addr: expected "host:port" with an IP/],
    // A retry due before the attempt's metadata is written stranded the message.
    [
      "delivery:\n  retry_schedule: [0s]\n",
      /delivery\.retry_schedule\[0\]: expected a duration of at least 1s, got string "0s"$/,
    ],
    [
      "delivery:\n  retry_schedule: [1m, 500ms]\n",
      /delivery\.retry_schedule\[1\]: expected a duration of at least 1s/,
    ],
    [
      "delivery:\n  connect_timeout: 0s\n",
      /delivery\.connect_timeout: expected a duration of at least 1s/,
    ],
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

Deno.test("config accepts IPs, host names and name servers in each form the daemon takes", () => {
  const config = parseConfigText(
    [
      "server:",
      "  listen_addr: '[::]:587'",
      "  listen_tls_addr: 'localhost:465'",
      "  trusted_networks: [10.0.0.0/8, 192.0.2.7, '::1/128', 'fd00::/8']",
      "delivery:",
      "  source_address: '2001:db8::1'",
      "  dns_servers: [127.0.0.1, '127.0.0.1:5353', '::1', '[::1]:53']",
      "  relay_host: smtp.example.com:587",
      "  retry_schedule: [1s, 1.5s]",
      "http:",
      "  listen_addr: 127.0.0.1:2580",
    ].join("\n"),
    "f.yaml",
  );
  assert.equal(config.delivery.relay_host, "smtp.example.com:587");
  assert.deepEqual(config.delivery.retry_schedule, [1_000, 1_500]);
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

Deno.test("log.max_size reads 10KB, 100MB, 1GB (units of 1024) and bytes; log.file is relative to the file", () => {
  const size = (v: string) =>
    parseConfigText(`log:\n  max_size: ${v}\n  file: logs/m.log\n`, "/etc/minimta/c.yaml").log;
  assert.equal(size("10KB").max_size, 10 * 1024);
  assert.equal(size("100mb").max_size, 100 * 1024 * 1024);
  assert.equal(size("1GB").max_size, 1024 ** 3);
  assert.equal(size("4096").max_size, 4096);
  assert.equal(size("10KB").file, "/etc/minimta/logs/m.log");
  assert.equal(DEFAULTS.log.max_size, 100 * 1024 * 1024);
  assert.throws(() => size("ten"), /log\.max_size: expected a size like "10KB"/);
  assert.throws(() => size("10"), /log\.max_size: expected a size of at least 1024 bytes/);
});

Deno.test("dkim entries take next_selector and next_private_key_file together, and retired selectors", () => {
  const entry = (extra: string) =>
    parseConfigText(
      `dkim_rotation_check: 30s\ndkim:\n  - domain: example.com\n    selector: s1\n    private_key_file: k1\n${extra}`,
      "/etc/minimta/c.yaml",
    );
  const config = entry(
    "    next_selector: s2\n    next_private_key_file: k2\n    retired:\n      - selector: s0\n        until: 2026-05-01T12:00:00Z\n",
  );
  assert.equal(config.dkim_rotation_check, 30_000);
  assert.equal(config.dkim[0].next_private_key_file, "/etc/minimta/k2");
  assert.deepEqual(config.dkim[0].retired, [{ selector: "s0", until: "2026-05-01T12:00:00Z" }]);
  assert.throws(
    () => entry("    next_selector: s2\n"),
    /dkim\[0\]\.next_private_key_file: missing/,
  );
  assert.throws(
    () => entry("    retired:\n      - selector: s0\n        until: soon\n"),
    /dkim\[0\]\.retired\[0\]\.until: expected a date and time/,
  );
});

Deno.test("server.workers is auto by default and takes a count or auto", () => {
  assert.equal(DEFAULTS.server.workers, "auto");
  assert.equal(parseConfigText("server:\n  workers: 3\n", "f.yaml").server.workers, 3);
  assert.equal(parseConfigText("server:\n  workers: auto\n", "f.yaml").server.workers, "auto");
  assert.equal(parseConfigText("server:\n  workers: 0\n", "f.yaml").server.workers, 0);
});
