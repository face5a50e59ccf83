import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createPublicKey } from "node:crypto";
import { crlf, fixtureKey, interopTest, prepend, verifyDkim } from "./_test_helpers.ts";
import { DkimSigner } from "./dkim_signer.ts";
import { generateDkimKey } from "./generate_dkim_key.ts";

function tags(dnsTxt: string): Record<string, string> {
  return Object.fromEntries(dnsTxt.split(";").map((t) => t.trim().split("=", 2)));
}

Deno.test("generateDkimKey() publishes the whole RSA public key, 2048 bits by default", async () => {
  const { privateKeyPem, dnsTxt } = await generateDkimKey("rsa");
  assert.match(privateKeyPem, /^-----BEGIN PRIVATE KEY-----\n/);
  assert.deepEqual(Object.keys(tags(dnsTxt)), ["v", "k", "p"]);
  assert.match(dnsTxt, /^v=DKIM1; k=rsa; p=[A-Za-z0-9+/]+=*$/);
  const der = Buffer.from(tags(dnsTxt).p, "base64");
  const key = createPublicKey({ key: der, format: "der", type: "spki" });
  assert.equal(key.asymmetricKeyDetails?.modulusLength, 2048);
});

Deno.test("generateDkimKey() publishes the raw 32-byte Ed25519 key (RFC 8463)", async () => {
  const { privateKeyPem, dnsTxt } = await generateDkimKey("ed25519");
  assert.match(dnsTxt, /^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$/);
  const raw = Buffer.from(tags(dnsTxt).p, "base64");
  const jwk = createPublicKey(privateKeyPem).export({ format: "jwk" });
  assert.equal(raw.toString("base64url"), jwk.x);
});

Deno.test("generateDkimKey() refuses RSA keys under 1024 bits", async () => {
  await assert.rejects(generateDkimKey("rsa", { bits: 512 }), RangeError);
});

interopTest("generateDkimKey() keys sign mail that verifies against their dnsTxt", async () => {
  const dir = await Deno.makeTempDir({ prefix: "minimta_dkim_gen_" });
  try {
    const rsa = await fixtureKey(dir, "rsa", "gen.test", "r1");
    const ed = await fixtureKey(dir, "ed25519", "gen.test", "e1");
    const msg = crlf("From: a@gen.test\nTo: b@x.test\nSubject: keygen\n\nbody\n");
    const result = await new DkimSigner([rsa.key, ed.key]).sign(msg, "gen.test");
    assert.ok(result);
    const { ok, results } = await verifyDkim(prepend(result.headers, msg), {
      ...rsa.txt,
      ...ed.txt,
    });
    assert.deepEqual(results.map((r) => [r.a, r.ok]), [["rsa-sha256", true], [
      "ed25519-sha256",
      true,
    ]]);
    assert.ok(ok);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
