import assert from "node:assert/strict";
import { mailauthSign } from "./_mailauth.ts";
import { crlf, fixtureKey, interopTest, prepend, verifyDkim } from "./_test_helpers.ts";
import { DkimSigner, OVERSIGNED_HEADERS } from "./dkim_signer.ts";

const dir = await Deno.makeTempDir({ prefix: "minimta_dkim_" });
const rsa = await fixtureKey(dir, "rsa", "example.test", "r2026");
const ed = await fixtureKey(dir, "ed25519", "example.test", "e2026");
const edOnly = await fixtureKey(dir, "ed25519", "ed.test", "e1");
const nested = await fixtureKey(dir, "rsa", "news.example.test", "n1");
await Deno.remove(dir, { recursive: true });
const txt = { ...rsa.txt, ...ed.txt, ...edOnly.txt, ...nested.txt };

function message(from = "Alice <alice@example.test>", body = "Hello Bob.\n"): Uint8Array {
  return crlf(
    `From: ${from}\nTo: bob@receiver.test\nSubject: Quarterly report\n` +
      `Date: Tue, 05 May 2026 10:00:00 +0000\nMessage-ID: <1@example.test>\n` +
      `MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nX-Mailer: test\n\n${body}`,
  );
}

async function signed(
  signer: DkimSigner,
  msg: Uint8Array,
  domain = "example.test",
): Promise<Uint8Array> {
  const result = await signer.sign(msg, domain);
  assert(result, "a key should match");
  return prepend(result.headers, msg);
}

interopTest("sign() makes an rsa-sha256 signature python3-dkim verifies", async () => {
  const msg = await signed(new DkimSigner([rsa.key]), message());
  const { ok, results } = await verifyDkim(msg, txt);
  assert.deepEqual(results.map((r) => [r.d, r.s, r.a, r.ok]), [
    ["example.test", "r2026", "rsa-sha256", true],
  ]);
  assert(ok);
});

interopTest("sign() makes an ed25519-sha256 signature python3-dkim verifies", async () => {
  const msg = await signed(new DkimSigner([edOnly.key]), message("<a@ed.test>"), "ed.test");
  const { ok, results } = await verifyDkim(msg, txt);
  assert.deepEqual(results.map((r) => [r.d, r.s, r.a, r.ok]), [
    ["ed.test", "e1", "ed25519-sha256", true],
  ]);
  assert(ok);
});

interopTest("sign() signs with rsa and ed25519 at once when the domain has both", async () => {
  const signer = new DkimSigner([rsa.key, edOnly.key, ed.key]);
  const result = await signer.sign(message(), "example.test");
  assert(result);
  assert.deepEqual(result.domains, ["example.test"]);
  const { ok, results } = await verifyDkim(prepend(result.headers, message()), txt);
  assert.deepEqual(results.map((r) => [r.s, r.a, r.ok]), [
    ["r2026", "rsa-sha256", true],
    ["e2026", "ed25519-sha256", true],
  ]);
  assert(ok);
});

interopTest("sign() uses the nearest parent domain that has keys", async () => {
  const signer = new DkimSigner([rsa.key, ed.key, nested.key]);
  assert.deepEqual(signer.keysFor("a.b.example.test").map((k) => k.selector), ["r2026", "e2026"]);
  assert.deepEqual(signer.keysFor("x.news.example.test").map((k) => k.selector), ["n1"]);
  assert.deepEqual(signer.keysFor("EXAMPLE.test.").map((k) => k.selector), ["r2026", "e2026"]);
  assert.deepEqual(signer.keysFor("badexample.test"), []);
  const msg = await signed(signer, message("alice@mail.b.example.test"), "mail.b.example.test");
  const { ok, results } = await verifyDkim(msg, txt);
  assert.deepEqual(results.map((r) => r.d), ["example.test", "example.test"]);
  assert(ok);
});

Deno.test("sign() returns null when no key matches the From domain", async () => {
  const signer = new DkimSigner([rsa.key]);
  assert.deepEqual(await signer.sign(message(), "elsewhere.test"), null);
  assert.deepEqual(await signer.sign(message(), "example.test.evil.test"), null);
  assert.deepEqual(await signer.sign(message(), "badexample.test"), null);
  assert.deepEqual(await new DkimSigner([]).sign(message(), "example.test"), null);
});

Deno.test("sign() over-signs From, Subject, To, Date and Message-ID in h=", async () => {
  const result = await new DkimSigner([rsa.key]).sign(message(), "example.test");
  assert(result);
  const header = new TextDecoder().decode(result.headers);
  const h = header.match(/\bh=([^;]+);/)?.[1].replace(/\s+/g, "").toLowerCase().split(":");
  assert(h);
  for (const name of OVERSIGNED_HEADERS.map((n) => n.toLowerCase())) {
    assert.deepEqual(h.filter((n) => n === name).length, 2, `${name} twice in h=${h.join(":")}`);
  }
  for (const name of ["mime-version", "content-type"]) {
    assert.deepEqual(h.filter((n) => n === name), [name]);
  }
  assert(!h.includes("x-mailer"));
  assert(header.endsWith("\r\n") && !/[^\r]\n/.test(header), "lines end in CRLF");
});

interopTest("a From: or Subject: added after signing breaks the signature", async () => {
  const msg = await signed(new DkimSigner([rsa.key]), message());
  for (const added of ["From: ceo@example.test\r\n", "Subject: Urgent wire transfer\r\n"]) {
    const tampered = prepend(new TextEncoder().encode(added), msg);
    const { ok, results } = await verifyDkim(tampered, txt);
    assert.deepEqual([ok, results[0].ok], [false, false], added);
  }
  // Control: without over-signing an added Subject: goes unnoticed, so the check above
  // really tests the over-signing.
  const plain = new DkimSigner([rsa.key], {
    sign: (m, keys, opts) => mailauthSign(m, keys, { ...opts, oversign: [] }),
  });
  const unguarded = await signed(plain, message());
  const added = prepend(new TextEncoder().encode("Subject: Urgent\r\n"), unguarded);
  assert((await verifyDkim(added, txt)).ok);
});

interopTest("an 8-bit body with invalid UTF-8 verifies and is left byte for byte", async () => {
  const head = message(undefined, "");
  const body = new Uint8Array([0xe9, 0x74, 0xe9, 0x0d, 0x0a, 0xff, 0xfe, 0x80, 0x20, 0x0d, 0x0a]);
  const msg = prepend(head, body);
  const result = await new DkimSigner([rsa.key, ed.key]).sign(msg, "example.test");
  assert(result);
  const stored = prepend(result.headers, msg);
  assert.deepEqual(stored.subarray(result.headers.length), msg);
  const { ok, results } = await verifyDkim(stored, txt);
  assert.deepEqual(results.map((r) => r.ok), [true, true]);
  assert(ok);
});

Deno.test("sign() writes t= from the clock", async () => {
  const now = () => new Date("2026-05-05T10:00:00Z");
  const result = await new DkimSigner([ed.key], { now }).sign(message(), "example.test");
  assert(result);
  assert(new TextDecoder().decode(result.headers).includes("t=1777975200;"));
});

Deno.test("sign() throws naming the domain when a signature cannot be created", async () => {
  const broken = {
    ...rsa.key,
    privateKey: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
  };
  const signer = new DkimSigner([broken]);
  await assert.rejects(signer.sign(message(), "example.test"), /"example\.test" selector "r2026"/);
});
