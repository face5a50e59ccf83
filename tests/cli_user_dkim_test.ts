/**
 * `minimta user …` and `minimta dkim …` as an operator runs them: users are
 * added, re-passworded and removed in users.json and users.txt (format and
 * mode 0600 kept, `$scrypt$` hashes), and the running daemon takes the
 * change without a restart; DKIM keys are generated 0600 with the TXT record
 * and config lines to paste, never overwritten, and `dkim check` compares the
 * published record (fake DNS) with the configured key.
 */
import assert from "node:assert/strict";
import { createPrivateKey, createPublicKey } from "node:crypto";
import { stringify as toYaml } from "yaml";
import { ALICE, CAROL, Mta, plainBlob, requireTool } from "./_harness.ts";
import { FakeDns, type Zone } from "./_dns.ts";
import { assertCliError, cli, cliOk } from "./_cli.ts";

const needsDns = requireTool("python3:dns");

async function mode(path: string): Promise<number> {
  return (await Deno.stat(path)).mode! & 0o777;
}

/** AUTH PLAIN after STARTTLS; returns the reply code (235 accepted, 535 refused). */
async function login(mta: Mta, user: string, pass: string): Promise<number> {
  const smtp = await mta.authedOrNot();
  try {
    return (await smtp.cmd(`AUTH PLAIN ${plainBlob("", user, pass)}`)).code;
  } finally {
    smtp.close();
  }
}

Deno.test("user add, passwd, list and remove on users.json; the running daemon follows without a restart", async (t) => {
  await using mta = await Mta.start();
  const file = `${mta.dir}/users.json`;
  const before = JSON.parse(await Deno.readTextFile(file));
  const dave = { user: "dave@ours.test", pass: "Dave-Secret-4242", next: "Dave-Next-Secret-77" };

  await t.step("add: hashed, other users untouched, file 0600, login works at once", async () => {
    assert.equal(await login(mta, dave.user, dave.pass), 535, "dave does not exist yet");
    const out = await cliOk(mta, ["user", "add", dave.user, "--password-stdin"], {
      stdin: `${dave.pass}\n`,
    });
    assert.match(out, /Added user dave@ours\.test/);
    assert.match(out, /running daemon reloaded/);
    const users = JSON.parse(await Deno.readTextFile(file));
    assert.ok(Array.isArray(users));
    assert.deepEqual(users.slice(0, 2), before, "existing entries kept as they were");
    const entry = users[2];
    assert.equal(entry.username, dave.user);
    assert.equal(entry.email, dave.user);
    assert.equal(entry.active, true);
    assert.match(entry.password, /^\$scrypt\$ln=\d+,r=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/);
    assert.ok(!(await Deno.readTextFile(file)).includes(dave.pass), "no plaintext on disk");
    assert.equal(await mode(file), 0o600);
    assert.equal(await login(mta, dave.user, dave.pass), 235);
    assert.equal(await login(mta, ALICE.user, ALICE.pass), 235, "alice still logs in");
  });

  await t.step("list shows every user, hashed", async () => {
    const lines = (await cliOk(mta, ["user", "list"])).trimEnd().split("\n");
    assert.deepEqual(lines.map((l) => l.split("\t")[0]), [ALICE.user, CAROL.user, dave.user]);
    for (const l of lines) assert.match(l, /\tactive, hashed$/);
    const json = JSON.parse(await cliOk(mta, ["user", "list", "--json"]));
    assert.deepEqual(json.map((u: { username: string }) => u.username), [
      ALICE.user,
      CAROL.user,
      dave.user,
    ]);
    assert.ok(!JSON.stringify(json).includes("$scrypt$"), "list --json prints no hashes");
    assert.deepEqual(json[1].allowed_senders, [CAROL.user]);
  });

  await t.step(
    "passwd: the old password is refused and the new one accepted, without restart",
    async () => {
      assert.equal(await login(mta, dave.user, dave.pass), 235);
      const out = await cliOk(mta, ["user", "passwd", dave.user, "--password-stdin"], {
        stdin: `${dave.next}\n`,
      });
      assert.match(out, /Changed the password of dave@ours\.test/);
      assert.equal(await login(mta, dave.user, dave.pass), 535, "old password (even if cached)");
      assert.equal(await login(mta, dave.user, dave.next), 235);
      assert.equal(await mode(file), 0o600);
    },
  );

  await t.step("refusals: short password, duplicate user, unknown user", async () => {
    const short = await cli(mta, ["user", "passwd", dave.user, "--password-stdin"], {
      stdin: "short\n",
    });
    assert.match(assertCliError(short, 1, "short password"), /8 characters/);
    const dup = await cli(mta, ["user", "add", "DAVE@ours.test", "--password-stdin"], {
      stdin: "Another-Secret-1\n",
    });
    assert.match(assertCliError(dup, 1, "duplicate"), /already exists/);
    for (const sub of ["passwd", "remove"]) {
      const r = await cli(mta, ["user", sub, "nobody@ours.test", "--password-stdin"], {
        stdin: "Another-Secret-1\n",
      });
      assert.match(assertCliError(r, 1, `user ${sub} unknown`), /No user "nobody@ours\.test"/);
    }
    assert.equal(await login(mta, dave.user, dave.next), 235, "nothing changed");
  });

  await t.step("remove: login refused at once; the file keeps the others", async () => {
    assert.match(await cliOk(mta, ["user", "remove", dave.user]), /Removed user dave@ours\.test/);
    assert.equal(await login(mta, dave.user, dave.next), 535);
    assert.deepEqual(JSON.parse(await Deno.readTextFile(file)), before);
    assert.equal(await mode(file), 0o600);
  });
});

Deno.test("user add and passwd on a users.txt keep its user:password lines; the daemon reloads", async () => {
  await using mta = await Mta.start({ noStart: true });
  const file = `${mta.dir}/users.txt`;
  await Deno.writeTextFile(file, `${ALICE.user}:${ALICE.pass}\n${CAROL.user}:${CAROL.pass}\n`, {
    mode: 0o600,
  });
  await mta.patchConfig({ auth: { users_file: file } });
  await mta.launch();
  const erin = { user: "erin@ours.test", pass: "Erin-Secret-9090" };

  await cliOk(mta, ["user", "add", erin.user, "--password-stdin"], { stdin: `${erin.pass}\n` });
  let lines = (await Deno.readTextFile(file)).trimEnd().split("\n");
  assert.equal(lines.length, 3);
  assert.equal(lines[0], `${ALICE.user}:${ALICE.pass}`, "a plaintext entry stays as it was");
  assert.equal(lines[1], `${CAROL.user}:${CAROL.pass}`);
  assert.match(lines[2], /^erin@ours\.test:\$scrypt\$[^\s:]+$/);
  assert.equal(await mode(file), 0o600);
  assert.equal(await login(mta, erin.user, erin.pass), 235);

  await cliOk(mta, ["user", "passwd", ALICE.user, "--password-stdin"], {
    stdin: "Alice-Hashed-Now-1\n",
  });
  lines = (await Deno.readTextFile(file)).trimEnd().split("\n");
  assert.match(lines[0], /^alice@ours\.test:\$scrypt\$/);
  assert.equal(await login(mta, ALICE.user, ALICE.pass), 535);
  assert.equal(await login(mta, ALICE.user, "Alice-Hashed-Now-1"), 235);
  assert.match(await cliOk(mta, ["user", "list"]), /^alice@ours\.test\t.*hashed$/m);

  // A users.txt holds no email: a separate --email cannot be kept.
  const r = await cli(mta, ["user", "add", "frank", "--email", "frank@ours.test"], {
    stdin: "Frank-Secret-123\n",
  });
  assert.match(assertCliError(r, 2, "--email on users.txt"), /users\.txt/);
  assert.equal((await Deno.readTextFile(file)).trimEnd().split("\n").length, 3);
});

/** The TXT record value printed by `dkim keygen` (its quoted strings joined). */
function printedRecord(out: string, name: string): string {
  const match = new RegExp(`^${name.replaceAll(".", "\\.")}\\. IN TXT \\(([^)]*)\\)`, "m").exec(
    out,
  );
  assert.ok(match, `no TXT record for ${name} in:\n${out}`);
  return [...match[1].matchAll(/"([^"]*)"/g)].map((m) => m[1]).join("");
}

function tag(record: string, name: string): string | undefined {
  const part = record.split(";").map((p) => p.trim()).find((p) => p.startsWith(`${name}=`));
  return part?.slice(name.length + 1);
}

Deno.test("dkim keygen: 0600 keys (RSA 2048 by default, ed25519), TXT record and config lines; never overwrites", async (t) => {
  await using mta = await Mta.start({ noStart: true });
  const rsaFile = `${mta.dir}/dkim/ours.test.s1.key`;

  await t.step("rsa by default", async () => {
    const out = await cliOk(mta, ["dkim", "keygen", "--domain", "Ours.Test", "--selector", "s1"]);
    assert.ok(out.includes(`Wrote the private key to ${rsaFile}`), out);
    assert.equal(await mode(rsaFile), 0o600);
    const pem = await Deno.readTextFile(rsaFile);
    const key = createPrivateKey(pem);
    assert.equal(key.asymmetricKeyType, "rsa");
    assert.equal(key.asymmetricKeyDetails?.modulusLength, 2048);
    const record = printedRecord(out, "s1._domainkey.ours.test");
    assert.equal(tag(record, "v"), "DKIM1");
    assert.equal(tag(record, "k"), "rsa");
    const spki = createPublicKey(key).export({ type: "spki", format: "der" }).toString("base64");
    assert.equal(tag(record, "p"), spki, "p= is this key's public half");
    assert.match(
      out,
      /^dkim:\n {2}- domain: ours\.test\n {4}selector: s1\n {4}private_key_file: /m,
    );
  });

  await t.step("ed25519", async () => {
    const file = `${mta.dir}/dkim/ours.test.s2.key`;
    const out = await cliOk(mta, [
      "dkim",
      "keygen",
      "--domain",
      "ours.test",
      "--selector",
      "s2",
      "--algorithm",
      "ed25519",
    ]);
    assert.equal(await mode(file), 0o600);
    const key = createPrivateKey(await Deno.readTextFile(file));
    assert.equal(key.asymmetricKeyType, "ed25519");
    const record = printedRecord(out, "s2._domainkey.ours.test");
    assert.equal(tag(record, "k"), "ed25519");
    // RFC 8463: p= is the raw 32-byte public key, the tail of its SPKI.
    const spki = createPublicKey(key).export({ type: "spki", format: "der" });
    assert.equal(tag(record, "p"), spki.subarray(spki.length - 32).toString("base64"));
  });

  await t.step("the printed config lines make a config that passes config check", async () => {
    const out = await cliOk(mta, ["dkim", "keygen", "--domain", "ours.test", "--selector", "s3"]);
    const snippet = out.slice(out.indexOf("\ndkim:\n") + 1);
    const yaml = toYaml(await mta.config()) + snippet;
    const path = `${mta.dir}/with-dkim.yaml`;
    await Deno.writeTextFile(path, yaml);
    const effective = await cliOk(path, ["config", "check"]);
    assert.match(effective, /"selector": "s3"/);
  });

  await t.step("refuses to overwrite an existing key", async () => {
    const pem = await Deno.readTextFile(rsaFile);
    for (const algorithm of ["rsa", "ed25519"]) {
      const r = await cli(mta, [
        "dkim",
        "keygen",
        "--domain",
        "ours.test",
        "--selector",
        "s1",
        "--algorithm",
        algorithm,
      ]);
      assert.match(assertCliError(r, 1, "overwrite"), /already exists/);
    }
    assert.equal(await Deno.readTextFile(rsaFile), pem, "the key is unchanged");
    assert.equal(await mode(rsaFile), 0o600);
  });
});

Deno.test({
  name: "dkim check: OK when the published record matches, MISMATCH or missing otherwise (exit 1)",
  ignore: needsDns,
  async fn(t) {
    await using dns = await FakeDns.start({});
    await using mta = await Mta.start({ noStart: true });
    const keygen = async (selector: string) =>
      printedRecord(
        await cliOk(mta, ["dkim", "keygen", "--domain", "ours.test", "--selector", selector]),
        `${selector}._domainkey.ours.test`,
      );
    const mine = await keygen("s1");
    const other = await keygen("spare");
    const config = await mta.config();
    await Deno.writeTextFile(
      mta.configPath,
      JSON.stringify({
        ...config,
        delivery: { ...config.delivery, dns_servers: [dns.server] },
        dkim: [{
          domain: "ours.test",
          selector: "s1",
          private_key_file: `${mta.dir}/dkim/ours.test.s1.key`,
        }],
      }),
    );
    const check = () => cli(mta, ["dkim", "check", "--domain", "ours.test"]);
    const name = "s1._domainkey.ours.test";

    await t.step("the printed record, published: OK", async () => {
      await dns.setZone({ [name]: { TXT: [mine] } });
      const r = await check();
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.equal(r.stderr, "");
      assert.match(r.stdout, /^s1\._domainkey\.ours\.test \(rsa[^)]*\): OK/m);
    });
    await t.step("another key's record: MISMATCH, exit 1", async () => {
      await dns.setZone({ [name]: { TXT: [other] } });
      const r = await check();
      assertCliError(r, 1, "mismatch");
      assert.match(r.stdout, /MISMATCH/);
    });
    await t.step("no record (NXDOMAIN, and a name without TXT): says so, exit 1", async () => {
      const zones: Zone[] = [{}, { [name]: { A: ["192.0.2.1"] } }];
      for (const zone of zones) {
        await dns.setZone(zone);
        const r = await check();
        assertCliError(r, 1, "no record");
        assert.match(r.stdout, /no DKIM record published/);
      }
    });
    await t.step("a DNS failure is one line, exit 1", async () => {
      await dns.setZone({ [name]: { rcode: "SERVFAIL" } });
      assertCliError(await check(), 1, "SERVFAIL");
    });
  },
});
