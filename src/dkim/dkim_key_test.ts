import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { loadDkimKeys } from "./dkim_key.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "minimta_dkim_key_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function pem(type: "rsa" | "ed25519" | "ec", format: "pkcs8" | "pkcs1" = "pkcs8"): string {
  const { privateKey } = type === "rsa"
    ? generateKeyPairSync("rsa", { modulusLength: 1024 })
    : type === "ec"
    ? generateKeyPairSync("ec", { namedCurve: "P-256" })
    : generateKeyPairSync("ed25519");
  return privateKey.export({ type: format, format: "pem" }).toString();
}

Deno.test("loadDkimKeys() detects rsa and ed25519 from the key itself", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/a.key`, pem("rsa", "pkcs1"));
    await Deno.writeTextFile(`${dir}/b.key`, pem("ed25519"));
    const keys = await loadDkimKeys([
      { domain: "Example.TEST.", selector: "rsa1", privateKeyFile: `${dir}/a.key` },
      { domain: "example.test", selector: "ed1", privateKeyFile: `${dir}/b.key` },
    ]);
    assert.deepEqual(keys.map((k) => [k.domain, k.selector, k.algorithm]), [
      ["example.test", "rsa1", "rsa-sha256"],
      ["example.test", "ed1", "ed25519-sha256"],
    ]);
    assert.ok(keys.every((k) => k.privateKey.startsWith("-----BEGIN PRIVATE KEY-----")));
  });
});

Deno.test("loadDkimKeys() names a missing key file", async () => {
  const file = "/nonexistent/minimta/example.test.s1.key";
  await assert.rejects(
    loadDkimKeys([{ domain: "example.test", selector: "s1", privateKeyFile: file }]),
    { message: `Cannot read DKIM key "${file}": not found` },
  );
});

Deno.test("loadDkimKeys() names a key file that is not a private key", async () => {
  await withDir(async (dir) => {
    const file = `${dir}/garbage.key`;
    await Deno.writeTextFile(
      file,
      "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n",
    );
    await assert.rejects(
      loadDkimKeys([{ domain: "example.test", selector: "s1", privateKeyFile: file }]),
      (err: Error) => {
        assert.equal(err.message, `Cannot parse DKIM key "${file}": not a PEM private key`);
        assert.ok(err.cause);
        return true;
      },
    );
  });
});

Deno.test("loadDkimKeys() refuses EC keys and RSA keys under 1024 bits", async () => {
  await withDir(async (dir) => {
    const short = generateKeyPairSync("rsa", { modulusLength: 512 }).privateKey;
    await Deno.writeTextFile(
      `${dir}/short.key`,
      short.export({ type: "pkcs8", format: "pem" }).toString(),
    );
    await Deno.writeTextFile(`${dir}/ec.key`, pem("ec"));
    const load = (name: string) =>
      loadDkimKeys([{ domain: "example.test", selector: "s1", privateKeyFile: `${dir}/${name}` }]);
    await assert.rejects(load("short.key"), /short\.key": RSA key of 512 bits/);
    await assert.rejects(load("ec.key"), /ec\.key": key type "ec" is not rsa or ed25519/);
  });
});

Deno.test("loadDkimKeys() refuses a domain or selector that is not a DNS name", async () => {
  const load = (domain: string, selector: string) =>
    loadDkimKeys([{ domain, selector, privateKeyFile: "/unused" }]);
  await assert.rejects(load("exa mple.test", "s1"), /DKIM domain "exa mple.test": not a domain/);
  await assert.rejects(load("example.test", "s1;x=1"), /DKIM selector "s1;x=1": not a DNS label/);
});
