// The one file that imports npm mailauth. It signs through mailauth's DkimSigner
// (the class behind `dkimSign`) with one addition mailauth 7.1.0 lacks: over-signing.
// `dkimSign`'s headerList only picks fields present in the message, and it has no
// option or hook to name more, so this subclasses the signer from mailauth's lib/
// folder. That leans on 7.1.0's internals; deno.json pins the version, and
// dkim_signer_test.ts checks h= and verifies with python3-dkim, so an upgrade that
// changes them fails the tests. mailauth (with its dependencies: joi, tldts,
// libmime) is loaded when a signer is first made (loadSigner), so a daemon
// with no DKIM key never holds it in memory.
import { Buffer } from "node:buffer";
import type { Writable } from "node:stream";

/** One DKIM-Signature to create. */
export interface SignatureRequest {
  /** The d= tag, an A-label domain. */
  domain: string;
  /** The s= tag. */
  selector: string;
  /** PKCS#8 PEM private key matching `algorithm`. */
  privateKey: string;
  /** The a= tag. */
  algorithm: "rsa-sha256" | "ed25519-sha256";
}

/** How {@linkcode mailauthSign} signs. */
export interface MailauthSignOptions {
  /** Header fields signed, every instance present in the message. */
  headerList: readonly string[];
  /** Header fields named once more in h= than they occur, so an added copy breaks the signature. */
  oversign: readonly string[];
  /** The t= tag. */
  signTime: Date;
}

/** A signature mailauth could not create, as it reports it. */
interface MailauthError {
  signingDomain?: string;
  selector?: string;
  err: Error;
}

/** A parsed header row of mailauth: `casedKey` is the name written into h=. */
interface MailauthHeaderRow {
  key: string;
  casedKey: string;
}

/** The part of mailauth's (untyped) DkimSigner used here: a Writable fed the message. */
interface MailauthDkimSigner extends Writable {
  errors: MailauthError[];
  signatureHeaders: string[];
  messageHeaders(headers: { parsed: MailauthHeaderRow[] }): Promise<void>;
}

type MailauthDkimSignerClass = new (options: Record<string, unknown>) => MailauthDkimSigner;
type OversigningSignerClass = new (
  options: Record<string, unknown>,
  signed: Set<string>,
  oversign: readonly string[],
) => MailauthDkimSigner;

let loading: Promise<OversigningSignerClass> | null = null;

/** Loads mailauth's signer once (DkimSigner asks for it as soon as it has keys). */
export function loadSigner(): Promise<OversigningSignerClass> {
  return loading ??= import("mailauth/lib/dkim/dkim-signer.js").then((m) =>
    oversigning(m.DkimSigner as MailauthDkimSignerClass)
  );
}

/**
 * mailauth builds h= by joining the `casedKey` of every signed row, bottom-most first,
 * and hashes each row's own bytes. Appending the over-signed names to the top-most
 * signed row's `casedKey` puts them at the end of h= without hashing anything for them:
 * exactly the empty field a verifier uses for a name with no instance left
 * (RFC 6376 §5.4.2). The hashed bytes stay mailauth's own.
 */
function oversigning(Base: MailauthDkimSignerClass): OversigningSignerClass {
  return class OversigningSigner extends Base {
    #signed: Set<string>;
    #oversign: readonly string[];

    constructor(
      options: Record<string, unknown>,
      signed: Set<string>,
      oversign: readonly string[],
    ) {
      super(options);
      this.#signed = signed;
      this.#oversign = oversign;
    }

    override async messageHeaders(headers: { parsed: MailauthHeaderRow[] }): Promise<void> {
      await super.messageHeaders(headers);
      const top = headers.parsed.find((row) => this.#signed.has(row.key));
      if (top && this.#oversign.length > 0) {
        top.casedKey = [top.casedKey, ...this.#oversign].join(": ");
      }
    }
  };
}

/**
 * Signs `message` (full CRLF message bytes) once per request, relaxed/relaxed.
 *
 * @returns the DKIM-Signature header lines to prepend, each CRLF-terminated
 * @throws {Error} when mailauth could not create one of the signatures
 */
export async function mailauthSign(
  message: Uint8Array,
  requests: readonly SignatureRequest[],
  options: MailauthSignOptions,
): Promise<string> {
  const OversigningSigner = await loadSigner();
  const signer = new OversigningSigner(
    {
      canonicalization: "relaxed/relaxed",
      headerList: [...options.headerList],
      signTime: options.signTime,
      strict: true,
      signatureData: requests.map((r) => ({
        signingDomain: r.domain,
        selector: r.selector,
        privateKey: r.privateKey,
        algorithm: r.algorithm,
        canonicalization: "relaxed/relaxed",
      })),
    },
    new Set(options.headerList.map((name) => name.toLowerCase())),
    options.oversign,
  );
  // A Buffer view over the same bytes: the message is never decoded to a string.
  await endStream(signer, Buffer.from(message.buffer, message.byteOffset, message.byteLength));
  if (signer.errors.length > 0) throw signingError(signer.errors[0]);
  return signer.signatureHeaders.map((line) => `${line}\r\n`).join("");
}

function endStream(signer: MailauthDkimSigner, bytes: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    signer.once("finish", () => resolve());
    signer.once("error", (err: Error) => reject(err));
    signer.end(bytes);
  });
}

function signingError(failure: MailauthError): Error {
  const who = `"${failure.signingDomain}" selector "${failure.selector}"`;
  return new Error(`Cannot create DKIM signature for ${who}: ${failure.err.message}`, {
    cause: failure.err,
  });
}
