import { createPrivateKey, createPublicKey } from "node:crypto";
import { Buffer } from "node:buffer";

/**
 * The `p=` value (RFC 6376 §3.6.1; RFC 8463 §4 for Ed25519) that belongs
 * to a private key, to compare with what is published in DNS.
 */
export function publicKeyRecordData(
  privateKeyPem: string,
): { algorithm: "rsa" | "ed25519"; p: string } {
  const publicKey = createPublicKey(createPrivateKey(privateKeyPem));
  const algorithm = publicKey.asymmetricKeyType === "ed25519" ? "ed25519" : "rsa";
  const spki = publicKey.export({ type: "spki", format: "der" });
  const data = algorithm === "rsa" ? spki : spki.subarray(spki.length - 32);
  return { algorithm, p: Buffer.from(data).toString("base64") };
}

/** Tags of a DKIM key record (`v=DKIM1; k=rsa; p=…`), whitespace removed from values. */
export function parseKeyRecord(record: string): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const part of record.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    tags[part.slice(0, eq).trim().toLowerCase()] = part.slice(eq + 1).replace(/\s+/g, "");
  }
  return tags;
}

/** A TXT value split into the 255-octet character-strings a zone file needs (RFC 1035 §3.3.14). */
export function zoneStrings(value: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < value.length; i += 255) out.push(value.slice(i, i + 255));
  return out;
}
