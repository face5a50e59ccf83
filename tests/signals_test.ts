/**
 * SIGHUP (`systemctl reload minimta`) reloads users and DKIM keys without a
 * restart; a bad new file keeps the old one and says why in the log.
 */
import assert from "node:assert/strict";
import { generateDkimKey } from "../src/dkim/mod.ts";
import { hashPassword } from "../src/auth/mod.ts";
import {
  ALICE,
  FAKES,
  Mta,
  plainBlob,
  PYTHON,
  queuedId,
  requireTool,
  run,
  waitFor,
} from "./_harness.ts";

const DAVE = { user: "dave@ours.test", pass: "dave-Secret-77qq" };

async function logs(mta: Mta, pattern: RegExp): Promise<void> {
  await waitFor(
    `a log line matching ${pattern}`,
    () => Promise.resolve(pattern.test(mta.stdout)),
    10_000,
  );
}

async function loginCode(mta: Mta, who: { user: string; pass: string }): Promise<number> {
  using smtp = await mta.authedOrNot();
  return (await smtp.cmd(`AUTH PLAIN ${plainBlob("", who.user, who.pass)}`)).code;
}

Deno.test("SIGHUP reloads the users file; a broken one keeps the users already loaded", async () => {
  await using mta = await Mta.start();
  assert.equal(await loginCode(mta, DAVE), 535);
  const users = JSON.parse(await Deno.readTextFile(`${mta.dir}/users.json`));
  users.push({
    username: DAVE.user,
    password: await hashPassword(DAVE.pass),
    email: DAVE.user,
    active: true,
  });
  await Deno.writeTextFile(`${mta.dir}/users.json`, JSON.stringify(users));
  Deno.kill(mta.pid, "SIGHUP");
  await logs(mta, /Reloaded \d+ users/);
  assert.equal(await loginCode(mta, DAVE), 235, "the new user logs in without a restart");

  await Deno.writeTextFile(`${mta.dir}/users.json`, '[{"username": "dave@ours.test"');
  Deno.kill(mta.pid, "SIGHUP");
  await logs(mta, /Users not reloaded, keeping the old ones/);
  assert.equal(await loginCode(mta, DAVE), 235, "still served from the users loaded before");
  assert.equal(await loginCode(mta, ALICE), 235);
  assert.equal(await mta.stop(), 0);
});

Deno.test({
  name: "SIGHUP reloads DKIM keys; an unreadable key keeps the old one",
  ignore: requireTool("python3:dkim"),
  async fn() {
    await using mta = await Mta.start({ dkim: ["rsa"] });
    const keyFile = `${mta.dir}/srsa.key`;
    const submitAndVerify = async (txt: string) => {
      using smtp = await mta.authed();
      await smtp.cmd("MAIL FROM:<alice@ours.test>", 250);
      await smtp.cmd("RCPT TO:<bob@dest.test>", 250);
      await smtp.cmd("DATA", 354);
      const reply = await smtp.cmd(
        "From: alice@ours.test\r\nTo: bob@dest.test\r\nSubject: keys\r\n\r\nhello\r\n.",
        250,
      );
      const eml = await mta.readEml(queuedId(reply.raw));
      const r = await run(PYTHON, [
        `${FAKES}/dkim_verify.py`,
        "-",
        "--txt",
        `srsa._domainkey.ours.test=${txt}`,
      ], { stdin: eml });
      return r.code;
    };
    const oldTxt = mta.dkim[0].dnsTxt;
    assert.equal(await submitAndVerify(oldTxt), 0);

    const fresh = await generateDkimKey("rsa");
    await Deno.writeTextFile(keyFile, fresh.privateKeyPem);
    Deno.kill(mta.pid, "SIGHUP");
    await logs(mta, /Reloaded DKIM keys/);
    assert.equal(await submitAndVerify(fresh.dnsTxt), 0, "signed with the new key after reload");
    assert.notEqual(await submitAndVerify(oldTxt), 0);

    await Deno.writeTextFile(keyFile, "not a key");
    Deno.kill(mta.pid, "SIGHUP");
    await logs(mta, /DKIM keys not reloaded, keeping the old ones/);
    assert.equal(await submitAndVerify(fresh.dnsTxt), 0, "the last good key still signs");
    assert.equal(await mta.stop(), 0);
  },
});
