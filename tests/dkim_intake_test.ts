/**
 * DKIM at intake: a message from ours.test is signed with both the RSA and
 * the Ed25519 key, and an independent verifier (python3-dkim) accepts both
 * signatures on the stored bytes. RFC 6409 fixes are applied before signing.
 */
import assert from "node:assert/strict";
import { Mta, PYTHON, queuedId, requireTool, ROOT, run } from "./_harness.ts";

Deno.test({
  name: "DKIM: stored message verifies with rsa-sha256 and ed25519-sha256 (python3-dkim)",
  ignore: requireTool("python3:dkim", "python3:nacl"),
  async fn() {
    await using mta = await Mta.start({ dkim: ["rsa", "ed25519"] });
    using smtp = await mta.authed();
    await smtp.cmd("MAIL FROM:<alice@ours.test>", 250);
    await smtp.cmd("RCPT TO:<to@remote.test>", 250);
    await smtp.cmd("RCPT TO:<hidden@remote.test>", 250);
    await smtp.cmd("DATA", 354);
    await smtp.write(
      "From: Alice <alice@ours.test>\r\nTo: to@remote.test\r\nBcc: hidden@remote.test\r\n" +
        "Subject: signed\r\n\r\nA signed body.\r\n\r\n\r\n",
    );
    const id = queuedId((await smtp.cmd(".", 250)).raw);
    await smtp.cmd("QUIT", 221);

    const eml = await mta.emlFile(id);
    const text = new TextDecoder().decode(await Deno.readFile(eml));
    const head = text.slice(0, text.indexOf("\r\n\r\n"));
    for (const field of ["Received", "Message-ID", "Date", "DKIM-Signature"]) {
      assert.match(head, new RegExp(`^${field}:`, "mi"), `${field}: missing`);
    }
    assert.doesNotMatch(head, /^Bcc:/mi);
    assert.doesNotMatch(text, /hidden@remote\.test/);

    const txt = mta.dkim.flatMap((
      d,
    ) => ["--txt", `${d.selector}._domainkey.${d.domain}=${d.dnsTxt}`]);
    const r = await run(PYTHON, [`${ROOT}/tests/fakes/dkim_verify.py`, eml, ...txt]);
    const results = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(
      results.map((s) => [s.d, s.a, s.ok, s.error]).sort(),
      [["ours.test", "ed25519-sha256", true, null], ["ours.test", "rsa-sha256", true, null]],
      r.stdout + r.stderr,
    );
    assert.equal(r.code, 0);

    // A verifier with the wrong key rejects it: the check above means something.
    const other = mta.dkim.map((
      d,
    ) => ["--txt", `${d.selector}._domainkey.${d.domain}=${mta.dkim[0].dnsTxt}`])
      .flat();
    assert.notEqual(
      (await run(PYTHON, [`${ROOT}/tests/fakes/dkim_verify.py`, eml, ...other])).code,
      0,
    );
    assert.equal(await mta.stop(), 0);
  },
});

Deno.test({
  name:
    "DKIM: List-Unsubscribe and List-Unsubscribe-Post are in h= of both signatures (RFC 8058 §4)",
  ignore: requireTool("python3:dkim", "python3:nacl"),
  async fn() {
    await using mta = await Mta.start({ dkim: ["rsa", "ed25519"] });
    using smtp = await mta.authed();
    await smtp.cmd("MAIL FROM:<alice@ours.test>", 250);
    await smtp.cmd("RCPT TO:<to@remote.test>", 250);
    await smtp.cmd("DATA", 354);
    await smtp.write(
      "From: Alice <alice@ours.test>\r\nTo: to@remote.test\r\nSubject: news\r\n" +
        "List-Id: News <news.ours.test>\r\n" +
        "List-Unsubscribe: <https://lists.ours.test/u/abc>\r\n" +
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nA list message.\r\n",
    );
    const id = queuedId((await smtp.cmd(".", 250)).raw);
    await smtp.cmd("QUIT", 221);
    const eml = await mta.emlFile(id);
    const text = new TextDecoder().decode(await Deno.readFile(eml));
    const head = text.slice(0, text.indexOf("\r\n\r\n")).replace(/\r\n[ \t]+/g, " ");
    const signatures = head.split("\r\n").filter((l) => /^DKIM-Signature:/i.test(l));
    assert.equal(signatures.length, 2);
    for (const sig of signatures) {
      const h = /\bh=([^;]+)/.exec(sig)![1].replace(/\s+/g, "").toLowerCase().split(":");
      assert.ok(h.includes("list-unsubscribe"), `List-Unsubscribe in h=${h.join(":")}`);
      assert.ok(h.includes("list-unsubscribe-post"), `List-Unsubscribe-Post in h=${h.join(":")}`);
    }
    const txt = mta.dkim.flatMap((
      d,
    ) => ["--txt", `${d.selector}._domainkey.${d.domain}=${d.dnsTxt}`]);
    const r = await run(PYTHON, [`${ROOT}/tests/fakes/dkim_verify.py`, eml, ...txt]);
    const results = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(results.map((s) => [s.a, s.ok]).sort(), [
      ["ed25519-sha256", true],
      ["rsa-sha256", true],
    ]);
    // Changing the one-click header breaks both signatures: it is covered, not just named.
    const tampered = `${mta.dir}/tampered.eml`;
    await Deno.writeTextFile(
      tampered,
      text.replace("List-Unsubscribe=One-Click", "List-Unsubscribe=One-Clicks"),
    );
    const bad = await run(PYTHON, [`${ROOT}/tests/fakes/dkim_verify.py`, tampered, ...txt]);
    assert.notEqual(bad.code, 0);
    assert.equal(await mta.stop(), 0);
  },
});
