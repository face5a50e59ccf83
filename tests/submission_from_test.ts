/**
 * Issue 8 item 3: the From: check and the DKIM signer read the same address.
 * Alice may send as any @ours.test; the daemon also holds a key of another
 * tenant, victim.test. Each spoof that hid alice@ours.test in a display name
 * or comment, or put it beside another address, must be refused after the
 * dot; the legitimate forms must be stored and signed d=ours.test, checked
 * with python3-dkim. Submitted with Python's smtplib, a real client.
 */
import assert from "node:assert/strict";
import { generateDkimKey } from "../src/dkim/mod.ts";
import { ALICE, Mta, PYTHON, queuedId, requireTool, ROOT, run } from "./_harness.ts";

/** One DATA per case over one authenticated session; prints `[code, text]` per case. */
const SEND = `
import json, smtplib, ssl, sys
port, cafile, user, password = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=cafile)
out = []
with smtplib.SMTP("localhost", int(port), timeout=30) as s:
    s.ehlo("python.test")
    s.starttls(context=ctx)
    s.ehlo("python.test")
    s.login(user, password)
    for head in json.load(sys.stdin):
        s.mail(user)
        s.rcpt("bob@remote.test")
        msg = head + "\\r\\nTo: bob@remote.test\\r\\nSubject: from test\\r\\n\\r\\nPay this.\\r\\n"
        try:
            code, text = s.data(msg.encode())
        except smtplib.SMTPDataError as e:
            code, text = e.smtp_code, e.smtp_error
        out.append([code, text.decode()])
        s.rset()
print(json.dumps(out))
`;

async function submit(mta: Mta, heads: string[]): Promise<[number, string][]> {
  const r = await run(
    PYTHON,
    ["-c", SEND, `${mta.port}`, `${mta.dir}/cert.pem`, ALICE.user, ALICE.pass],
    { stdin: JSON.stringify(heads) },
  );
  assert.equal(r.code, 0, r.stdout + r.stderr);
  return JSON.parse(r.stdout);
}

/** A daemon with ours.test's key and a second tenant's key for victim.test. */
async function twoTenants(): Promise<{ mta: Mta; txt: string[] }> {
  const mta = await Mta.start({ dkim: ["ed25519"], noStart: true });
  const victim = await generateDkimKey("ed25519");
  await Deno.writeTextFile(`${mta.dir}/victim.key`, victim.privateKeyPem, { mode: 0o600 });
  const config = await mta.config() as Record<string, unknown>;
  config.dkim = [
    ...config.dkim as unknown[],
    { domain: "victim.test", selector: "v1", private_key_file: `${mta.dir}/victim.key` },
  ];
  await Deno.writeTextFile(mta.configPath, JSON.stringify(config, null, 2));
  await mta.launch();
  const txt = [
    ...mta.dkim.map((d) => `${d.selector}._domainkey.${d.domain}=${d.dnsTxt}`),
    `v1._domainkey.victim.test=${victim.dnsTxt}`,
  ].flatMap((t) => ["--txt", t]);
  return { mta, txt };
}

Deno.test({
  name: "From: spoofs are refused after the dot; real From: forms are signed d=ours.test",
  ignore: requireTool("python3:smtplib", "python3:dkim", "python3:nacl"),
  async fn(t) {
    const { mta, txt } = await twoTenants();
    await using _ = mta;

    await t.step("each spoof gets a 5xx and nothing is stored", async () => {
      const spoofs = [
        'From: "<alice@ours.test>" <ceo@victim.test>',
        "From: ceo@victim.test (<alice@ours.test>)",
        "From: alice@ours.test, ceo@victim.test",
        "From: alice@ours.test, ceo@victim.test\r\nSender: alice@ours.test",
        "From: ceo",
        "From: alice@ours.test <ceo@victim.test>",
        "From: <alice@ours.test> <ceo@victim.test>",
        "From: alice@ours.test\r\nFrom: ceo@victim.test",
        "From: alice@ours.test\r\nSender: ceo@victim.test",
        "From: Team: alice@ours.test;",
        // Two allowed mailboxes still need the Sender: RFC 5322 §3.6.2 asks for.
        "From: alice@ours.test, bob@ours.test",
      ];
      const replies = await submit(mta, spoofs);
      for (const [i, [code, text]] of replies.entries()) {
        assert.equal(code, 550, `${spoofs[i]}: ${code} ${text}`);
        assert.match(text, /^5\.(7\.1|6\.0) /, spoofs[i]);
      }
      assert.match(replies[0][1], /<ceo@victim\.test> not owned/);
      assert.match(replies[4][1], /no valid address/);
      assert.match(replies[10][1], /needs a Sender:/);
      assert.deepEqual(await mta.spoolFiles("msg"), []);
    });

    await t.step("legitimate forms are queued and verify with d=ours.test only", async () => {
      const legit = [
        'From: "Alice" <alice@ours.test>',
        "From: alice@ours.test (Alice)",
        "From: Dr. Alice Q. Smith <alice@ours.test>",
        'From: "Alice <ceo@victim.test>" <alice@ours.test>',
        "From: alice@ours.test (ceo@victim.test)",
        "From:\r\n Alice\r\n <alice@ours.test>",
        "From: alice@ours.test, bob@ours.test\r\nSender: alice@ours.test",
      ];
      const replies = await submit(mta, legit);
      for (const [i, [code, text]] of replies.entries()) {
        assert.equal(code, 250, `${legit[i]}: ${code} ${text}`);
        const eml = await mta.emlFile(queuedId(text));
        const r = await run(PYTHON, [`${ROOT}/tests/fakes/dkim_verify.py`, eml, ...txt]);
        const sigs = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
        assert.deepEqual(
          sigs.map((s) => [s.d, s.ok, s.error]),
          [["ours.test", true, null]],
          `${legit[i]}: ${r.stdout}${r.stderr}`,
        );
        assert.equal(r.code, 0);
      }
    });

    const logs = mta.logs().filter((l) => l.event === "signed");
    assert.ok(logs.length > 0, "no signed events logged");
    assert.ok(!JSON.stringify(logs).includes("victim.test"), JSON.stringify(logs));
    assert.equal(await mta.stop(), 0);
  },
});
