/**
 * Bad input to every operator command: exactly one line on stderr, starting
 * `minimta: `, exit 2 for bad usage and exit 1 for failures — never a stack
 * trace. Also `version` and `config check` (secrets masked).
 */
import assert from "node:assert/strict";
import { minimtaArgs, Mta, ROOT, run } from "./_harness.ts";
import { assertCliError, cli, cliOk } from "./_cli.ts";
import { Spool } from "../src/spool/mod.ts";

const UNKNOWN_ID = "0000000000000000";

type Case = [args: string[], code: 1 | 2, mentions?: RegExp, stdin?: string];

// Run against a config whose spool exists and is empty (daemon stopped).
const CASES: Case[] = [
  // bad usage: exit 2
  [["bogus"], 2, /Unknown command "bogus"/],
  [[], 2, /Missing command/],
  [["queue", "bogus"], 2, /bogus/],
  [["queue", "list", "--bogus"], 2, /--bogus/],
  [["queue", "list", "--state", "bounced"], 2, /--state.*bounced/],
  [["queue", "list", "--state"], 2, /--state/],
  [["queue", "list", "--older-than", "soon"], 2, /--older-than.*soon/],
  [["queue", "list", "stray"], 2, /stray/],
  [["queue", "show"], 2, /queue show ID/],
  [["queue", "stats", "--bogus"], 2, /--bogus/],
  [["queue", "retry"], 2, /retry ID/],
  [["queue", "hold"], 2, /hold ID/],
  [["queue", "retry", "--all", UNKNOWN_ID], 2, /--all/],
  [["queue", "delete", "-"], 2, /delete ID/, "\n  \n"],
  [["user", "bogus"], 2, /bogus/],
  [["user", "add"], 2, /user add/],
  [["user", "list", "stray"], 2, /stray/],
  [["user", "add", "dave", "--email", "not-an-address"], 2, /not-an-address/],
  [["user", "add", "da:ve"], 2, /da:ve/],
  [["dkim", "keygen"], 2, /--domain/],
  [["dkim", "keygen", "--domain", "ours.test"], 2, /--selector/],
  [["dkim", "keygen", "--domain", "ours.test", "--selector", "s1", "--algorithm", "dsa"], 2, /dsa/],
  [["dkim", "keygen", "--domain", "ours.test", "--selector", "s1", "--bits", "many"], 2, /--bits/],
  [["dkim", "keygen", "--domain", "not a domain", "--selector", "s1"], 2, /not a domain/],
  [["dkim", "check"], 2, /--domain/],
  [["sendmail"], 2, /recipients/, "Subject: x\n\nbody\n"],
  [["sendmail", "-Z", "rcpt@dest.test"], 2, /-Z/, "Subject: x\n\nbody\n"],
  [["config", "check", "--bogus"], 2, /--bogus/],
  [["config", "check", "stray"], 2, /config check/],
  [["tls"], 2, /tls selfsigned/],
  [["serve", "stray"], 2, /stray/],
  [["version", "stray"], 2, /stray/],
  // failures: exit 1
  [["queue", "show", UNKNOWN_ID], 1, new RegExp(UNKNOWN_ID)],
  [["queue", "show", "../../etc/passwd"], 1, /etc\/passwd/],
  [["queue", "hold", UNKNOWN_ID], 1, /not in the queue/],
  [["queue", "delete", "-"], 1, /not in the queue/, `${UNKNOWN_ID}\n`],
  [["user", "remove", "nobody@ours.test"], 1, /nobody@ours\.test/],
  [["user", "add", "dave@ours.test", "--password-stdin"], 1, /8 characters/, "short\n"],
  [["dkim", "check", "--domain", "other.test"], 1, /No DKIM key configured for other\.test/],
  [["sendmail", "rcpt@dest.test"], 1, /refused/, "Subject: nul \u0000 byte\n\nbody\n"],
];

function takesSpoolLock([args]: Case): boolean {
  return args[0] === "queue" && ["hold", "release", "delete", "retry"].includes(args[1]);
}

Deno.test("bad input to each command: one stderr line, exit 2 for usage, 1 for failures", async (t) => {
  await using mta = await Mta.start({ noStart: true });
  (await Spool.open(mta.spoolDir)).close();
  const usersBefore = await Deno.readTextFile(`${mta.dir}/users.json`);
  // A few at a time: each case is a separate deno process. Offline queue
  // changes take the spool lock and refuse to run while another holds it, so
  // those go one after another in a lane of their own.
  const results = new Map<Case, Awaited<ReturnType<typeof cli>>>();
  const locking = CASES.filter(takesSpoolLock);
  const queue = CASES.filter((c) => !takesSpoolLock(c));
  const lane = async (cases: Case[]) => {
    for (let c = cases.shift(); c; c = cases.shift()) {
      results.set(c, await cli(mta, c[0], { stdin: c[3] }));
    }
  };
  await Promise.all([lane(locking), lane(queue), lane(queue), lane(queue)]);
  for (const c of CASES) {
    const [args, code, mentions, stdin] = c;
    const name = `minimta ${args.join(" ")}${stdin === undefined ? "" : " < stdin"} → ${code}`;
    await t.step(name, () => {
      const line = assertCliError(results.get(c)!, code, name);
      if (mentions) assert.match(line, mentions, name);
    });
  }
  await t.step("no failed command changed the users file or queued anything", async () => {
    assert.equal(await Deno.readTextFile(`${mta.dir}/users.json`), usersBefore);
    assert.deepEqual(await mta.spoolFiles("msg"), []);
    assert.deepEqual(await mta.spoolFiles("msg"), []);
  });
});

Deno.test("missing spool, missing or bad config, missing users file: exit 1, one line", async (t) => {
  await using mta = await Mta.start({ noStart: true });
  // No daemon has ever run: there is no spool yet.
  for (
    const args of [
      ["queue", "list", "--json"],
      ["queue", "stats"],
      ["queue", "hold", UNKNOWN_ID],
    ]
  ) {
    await t.step(`no spool: ${args.join(" ")}`, async () => {
      const line = assertCliError(await cli(mta, args), 1, args.join(" "));
      assert.match(line, /No spool at/);
      assert.ok(line.includes(mta.spoolDir), line);
    });
  }
  await t.step("bad usage is still exit 2 when the spool is missing", async () => {
    assertCliError(await cli(mta, ["queue", "list", "--state", "x"]), 2, "queue list --state x");
  });
  const config = await mta.config();
  const bad = `${mta.dir}/bad.yaml`;
  await Deno.writeTextFile(
    bad,
    JSON.stringify({ ...config, queue: { ...config.queue, colour: 1 } }),
  );
  for (
    const args of [
      ["queue", "hold", UNKNOWN_ID],
      ["sendmail", "rcpt@dest.test"],
    ]
  ) {
    await t.step(`bad config: ${args.join(" ")}`, async () => {
      const line = assertCliError(await cli(bad, args, { stdin: "" }), 1, args.join(" "));
      assert.ok(line.includes("queue.colour"), line);
      assert.ok(line.includes(bad), line);
    });
    await t.step(`config file not found: ${args.join(" ")}`, async () => {
      const line = assertCliError(
        await cli(`${mta.dir}/nowhere.yaml`, args, { stdin: "" }),
        1,
        args.join(" "),
      );
      assert.ok(line.includes("nowhere.yaml"), line);
    });
  }
  await t.step("--config without a file name is bad usage", async () => {
    const r = await run(Deno.execPath(), minimtaArgs(["queue", "list", "--config"]), { cwd: ROOT });
    assertCliError(r, 2, "queue list --config");
  });
  await t.step("users file missing: user list and user remove fail with one line", async () => {
    await Deno.remove(`${mta.dir}/users.json`);
    const line = assertCliError(await cli(mta, ["user", "list"]), 1, "user list");
    assert.ok(line.includes("users.json"), line);
    assertCliError(await cli(mta, ["user", "remove", "alice@ours.test"]), 1, "user remove");
  });
});

Deno.test("version prints the version; config check prints the effective config, secrets masked", async () => {
  await using mta = await Mta.start({ noStart: true });
  const denoJson = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`));
  const version = await cliOk(mta, ["version"]);
  assert.match(version, new RegExp(`^minimta ${denoJson.version.replaceAll(".", "\\.")}\\b`));
  assert.equal(version.trimEnd().split("\n").length, 1);

  const secret = "relay-Pa55word-do-not-print";
  await mta.patchConfig({
    delivery: {
      relay_host: "smarthost.dest.test:587",
      relay_username: "relayuser",
      relay_password: secret,
      retry_schedule: ["1m", "2h"],
    },
  });
  const out = await cliOk(mta, ["config", "check"]);
  assert.ok(!out.includes(secret), `relay_password printed:\n${out}`);
  const [first, ...rest] = out.split("\n");
  assert.ok(first.includes(mta.configPath) && /OK/.test(first), first);
  const effective = JSON.parse(rest.join("\n"));
  assert.equal(effective.delivery.relay_password, "********");
  assert.equal(effective.delivery.relay_username, "relayuser");
  assert.equal(effective.delivery.relay_host, "smarthost.dest.test:587");
  assert.deepEqual(effective.delivery.retry_schedule, ["1m", "2h"]);
  // Effective: defaults filled in for keys the file does not set.
  assert.equal(effective.delivery.per_domain_concurrency, 5);
  assert.equal(effective.server.hostname, "mx.ours.test");
  assert.equal(effective.queue.dir, mta.spoolDir);

  await mta.patchConfig({ delivery: { relay_password: "" } });
  const noSecret = JSON.parse(
    (await cliOk(mta, ["config", "check"])).split("\n").slice(1).join("\n"),
  );
  assert.equal(noSecret.delivery.relay_password, "", "an empty password is shown as empty");
});
