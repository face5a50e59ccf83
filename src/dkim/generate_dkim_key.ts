import { generateKeyPair, type KeyObject } from "node:crypto";
import { publicKeyRecordData } from "./public_key.ts";

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
  const { privateKey } = await newKeyPair(algorithm, bits);
  const privateKeyPem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  return {
    privateKeyPem,
    dnsTxt: `v=DKIM1; k=${algorithm}; p=${publicKeyRecordData(privateKeyPem).p}`,
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
