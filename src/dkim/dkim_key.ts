import { createPrivateKey, type KeyObject } from "node:crypto";
import { domainToASCII } from "node:url";

/** One `dkim:` entry of the config: which key signs for which domain. */
export interface DkimKeyConfig {
  /** The signing domain (d=); mail whose From: domain is this or a subdomain of it is signed. */
  domain: string;
  /** The selector (s=): the key is published at `selector._domainkey.domain`. */
  selector: string;
  /** Path of the PEM private key (PKCS#8 or PKCS#1), RSA or Ed25519. */
  privateKeyFile: string;
}

/** A DKIM private key, read and checked, ready for {@linkcode DkimSigner}. */
export interface DkimKey {
  /** The signing domain (d=), lowercase. */
  domain: string;
  /** The selector (s=). */
  selector: string;
  /** The signature algorithm (a=), from the key's type. */
  algorithm: "rsa-sha256" | "ed25519-sha256";
  /** The private key as PKCS#8 PEM. */
  privateKey: string;
  /** The file the key was read from, for messages. */
  file?: string;
}

// RFC 8301 §3.2: keys shorter than 1024 bits MUST NOT be used for signing.
const MIN_RSA_BITS = 1024;
// RFC 6376 §3.5: d= is a domain name, s= a sub-domain (dot-separated labels).
const LABELS = /^(?!-)[a-z0-9_-]{1,63}(?<!-)(\.(?!-)[a-z0-9_-]{1,63}(?<!-))*$/i;

/**
 * Reads and checks the DKIM keys of the config, in order. Meant for start-up (and
 * SIGHUP): every problem is an error naming the file or the entry.
 *
 * @throws {Error} when a key file is missing, unreadable, not a private key, or not RSA
 * (at least 1024 bits) or Ed25519, or when a domain or selector is not a DNS name
 */
export async function loadDkimKeys(entries: DkimKeyConfig[]): Promise<DkimKey[]> {
  const keys: DkimKey[] = [];
  for (const entry of entries) {
    const domain = checkNames(entry);
    const pem = await readKeyFile(entry.privateKeyFile);
    const key = parseKey(pem, entry.privateKeyFile);
    keys.push({
      domain,
      selector: entry.selector,
      algorithm: key.asymmetricKeyType === "rsa" ? "rsa-sha256" : "ed25519-sha256",
      privateKey: key.export({ type: "pkcs8", format: "pem" }).toString(),
      file: entry.privateKeyFile,
    });
  }
  return keys;
}

/** Checks the names of an entry; returns the domain as a lowercase A-label. */
function checkNames(entry: DkimKeyConfig): string {
  const domain = domainToASCII(entry.domain.trim().replace(/\.$/, "")).toLowerCase();
  if (!LABELS.test(domain) || !domain.includes(".")) {
    throw new Error(`Cannot use DKIM domain "${entry.domain}": not a domain name`);
  }
  if (!LABELS.test(entry.selector)) {
    throw new Error(`Cannot use DKIM selector "${entry.selector}": not a DNS label`);
  }
  return domain;
}

async function readKeyFile(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (cause) {
    throw new Error(`Cannot read DKIM key "${path}": ${readReason(cause)}`, { cause });
  }
}

function readReason(cause: unknown): string {
  if (cause instanceof Deno.errors.NotFound) return "not found";
  if (cause instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (cause instanceof Deno.errors.IsADirectory) return "is a directory";
  return cause instanceof Error ? cause.message : String(cause);
}

function parseKey(pem: string, path: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: "pem" });
  } catch (cause) {
    throw new Error(`Cannot parse DKIM key "${path}": not a PEM private key`, { cause });
  }
  const type = key.asymmetricKeyType;
  if (type !== "rsa" && type !== "ed25519") {
    throw new Error(`Cannot use DKIM key "${path}": key type "${type}" is not rsa or ed25519`);
  }
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (type === "rsa" && bits < MIN_RSA_BITS) {
    throw new Error(`Cannot use DKIM key "${path}": RSA key of ${bits} bits, 1024 is the least`);
  }
  return key;
}
