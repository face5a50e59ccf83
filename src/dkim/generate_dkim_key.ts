import { Buffer } from "node:buffer";
import { generateKeyPair, type KeyObject } from "node:crypto";

/** Options of {@linkcode generateDkimKey}. */
export interface GenerateDkimKeyOptions {
  /**
   * RSA modulus length; ignored for Ed25519.
   * @default {2048}
   */
  bits?: number;
}

/** A new DKIM key pair: the private key to store and the record to publish. */
export interface GeneratedDkimKey {
  /** The private key as PKCS#8 PEM, for the `private_key_file`. */
  privateKeyPem: string;
  /** The TXT record value for `selector._domainkey.domain`, such as `v=DKIM1; k=rsa; p=MIIB…`. */
  dnsTxt: string;
}

/**
 * Creates a DKIM key pair. The TXT value is one string: an RSA record is longer than
 * 255 bytes, so whoever writes the zone file splits it into character-strings.
 *
 * @throws {RangeError} when an RSA key would be shorter than 1024 bits (RFC 8301 §3.2)
 */
export async function generateDkimKey(
  algorithm: "rsa" | "ed25519",
  opts: GenerateDkimKeyOptions = {},
): Promise<GeneratedDkimKey> {
  const bits = opts.bits ?? 2048;
  if (algorithm === "rsa" && (!Number.isInteger(bits) || bits < 1024)) {
    throw new RangeError(`Cannot generate a DKIM key of ${bits} bits: 1024 is the least`);
  }
  const { publicKey, privateKey } = await newKeyPair(algorithm, bits);
  return {
    privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    dnsTxt: `v=DKIM1; k=${algorithm}; p=${publicKeyData(algorithm, publicKey)}`,
  };
}

function newKeyPair(
  algorithm: "rsa" | "ed25519",
  bits: number,
): Promise<{ publicKey: KeyObject; privateKey: KeyObject }> {
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, publicKey: KeyObject, privateKey: KeyObject) =>
      err ? reject(err) : resolve({ publicKey, privateKey });
    if (algorithm === "rsa") generateKeyPair("rsa", { modulusLength: bits }, done);
    else generateKeyPair("ed25519", {}, done);
  });
}

/** The p= tag: RSA's SubjectPublicKeyInfo (RFC 6376 §3.6.1), Ed25519's raw 32 bytes (RFC 8463 §4). */
function publicKeyData(algorithm: "rsa" | "ed25519", publicKey: KeyObject): string {
  const spki = publicKey.export({ type: "spki", format: "der" });
  // An Ed25519 SubjectPublicKeyInfo is a fixed 12-byte prefix and the 32-byte key.
  const data = algorithm === "rsa" ? spki : spki.subarray(spki.length - 32);
  return Buffer.from(data).toString("base64");
}
