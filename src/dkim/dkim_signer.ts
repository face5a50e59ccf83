import { loadSigner, mailauthSign, type MailauthSignOptions } from "./_mailauth.ts";
import type { DkimKey } from "./dkim_key.ts";

/** The header fields signed, each instance present (RFC 6376 §5.4.1). */
export const SIGNED_HEADERS: readonly string[] = Object.freeze([
  "From",
  "To",
  "Cc",
  "Subject",
  "Date",
  "Message-ID",
  "Reply-To",
  "In-Reply-To",
  "References",
  "MIME-Version",
  "Content-Type",
  "Content-Transfer-Encoding",
  "List-Unsubscribe",
  "List-Unsubscribe-Post",
  "List-Id",
  "Sender",
]);

/**
 * The header fields named once more in h= than they occur, so that a copy added on
 * the way breaks the signature (RFC 6376 §5.4.2, §8.15).
 */
export const OVERSIGNED_HEADERS: readonly string[] = Object.freeze([
  "From",
  "Subject",
  "To",
  "Date",
  "Message-ID",
]);

/** Options of {@linkcode DkimSigner}. */
export interface DkimSignerOptions {
  /**
   * The clock for the t= tag.
   * @default {() => new Date()}
   */
  now?: () => Date;
  /**
   * The signing function; tests may replace it.
   * @default {mailauthSign}
   */
  sign?: typeof mailauthSign;
}

/** What {@linkcode DkimSigner.sign} returns when a key matched. */
export interface DkimSignResult {
  /** The DKIM-Signature header lines to put in front of the message, each CRLF-terminated. */
  headers: Uint8Array;
  /** The d= domains signed for. */
  domains: string[];
}

/**
 * Signs messages with the keys of the From: domain, relaxed/relaxed: rsa-sha256,
 * ed25519-sha256, or both when both kinds of key are configured for the domain.
 */
export class DkimSigner {
  #byDomain = new Map<string, DkimKey[]>();
  #now: () => Date;
  #sign: typeof mailauthSign;

  constructor(keys: DkimKey[], options: DkimSignerOptions = {}) {
    for (const key of keys) {
      const domain = key.domain.toLowerCase();
      this.#byDomain.set(domain, [...(this.#byDomain.get(domain) ?? []), key]);
    }
    this.#now = options.now ?? (() => new Date());
    this.#sign = options.sign ?? mailauthSign;
    // Loaded now, not on the first message (which would wait for it): a
    // failure to load shows at that first signing.
    if (keys.length && !options.sign) loadSigner().catch(() => {});
  }

  /**
   * The keys for a From: domain: those of the domain itself or, failing that, of its
   * nearest parent that has keys (`news.example.com` is signed by `example.com`).
   */
  keysFor(fromDomain: string): DkimKey[] {
    const labels = fromDomain.toLowerCase().replace(/\.$/, "").split(".");
    for (let i = 0; i < labels.length; i++) {
      const keys = this.#byDomain.get(labels.slice(i).join("."));
      if (keys) return [...keys];
    }
    return [];
  }

  /**
   * Signs a message: the full CRLF message bytes, header and body, for the domain of
   * its From: address. The caller reads that address (the intake, with the same reading
   * it checked the sender with); the signer never parses From: a second time.
   *
   * @returns the header lines to prepend, or null when no key matches `fromDomain`
   * @throws {Error} when a signature cannot be created
   */
  async sign(message: Uint8Array, fromDomain: string): Promise<DkimSignResult | null> {
    const keys = this.keysFor(fromDomain);
    if (keys.length === 0) return null;
    const options: MailauthSignOptions = {
      headerList: SIGNED_HEADERS,
      oversign: OVERSIGNED_HEADERS,
      signTime: this.#now(),
    };
    const lines = await this.#sign(message, keys, options);
    return {
      headers: new TextEncoder().encode(lines),
      domains: [...new Set(keys.map((key) => key.domain))],
    };
  }
}
