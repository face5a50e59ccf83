import { createHmac, randomBytes } from "node:crypto";
import { DUMMY_HASH, isHashed, verifyPassword } from "./password.ts";
import type { User } from "./users.ts";

/** Options for {@linkcode Authenticator}. */
export interface AuthenticatorOptions {
  /** How long a successful verification is remembered. @default 300000 */
  cacheTtlMs?: number;
  /** The clock. @default Date.now */
  now?: () => number;
  /**
   * The HMAC key of {@linkcode Authenticator.attemptKey} and the cache; intake
   * workers share one, so the same credentials give the same attempt key in
   * every thread. @default 32 random bytes
   */
  key?: Uint8Array;
}

/** Result of {@linkcode Authenticator.verify}. */
export type AuthResult =
  | { ok: true; user: User }
  | { ok: false; reason: "unknown_user" | "bad_password" | "inactive" };

/**
 * Checks usernames and passwords against the users file. A campaign app
 * logs in on every connection, so successful checks are remembered for a
 * few minutes (keyed by an HMAC of the password under a per-process key,
 * never the password itself) to spare a full scrypt each time.
 */
export class Authenticator {
  #users = new Map<string, User>();
  #cache = new Map<string, number>();
  #inFlight = new Map<string, Promise<boolean>>();
  #key: Uint8Array;
  #ttl: number;
  #now: () => number;

  constructor(users: User[], options: AuthenticatorOptions = {}) {
    this.#ttl = options.cacheTtlMs ?? 300_000;
    this.#now = options.now ?? Date.now;
    this.#key = options.key ?? randomBytes(32);
    this.replaceUsers(users);
  }

  /** Swaps in a new users list (SIGHUP, `minimta user …`); the cache is dropped. */
  replaceUsers(users: User[]): void {
    this.#users = new Map(users.map((u) => [u.username.toLowerCase(), u]));
    this.#cache.clear();
  }

  /** The user called `username` (case-insensitive), if any. */
  find(username: string): User | undefined {
    return this.#users.get(username.toLowerCase());
  }

  /** Every user, in file order. */
  all(): User[] {
    return [...this.#users.values()];
  }

  /**
   * An opaque key for a login's credentials (HMAC under a per-process key,
   * never the password): equal keys are the same guess, for
   * `AuthThrottle.reserve`.
   */
  attemptKey(username: string, password: string): string {
    return createHmac("sha256", this.#key).update(`${username.toLowerCase()}\0${password}`)
      .digest("base64");
  }

  /** Verifies a login; unknown users cost the same scrypt as known ones. */
  async verify(username: string, password: string): Promise<AuthResult> {
    const user = this.find(username);
    if (!user) {
      await verifyPassword(password, await DUMMY_HASH);
      return { ok: false, reason: "unknown_user" };
    }
    const cacheKey = this.#cacheKey(user, password);
    const expires = this.#cache.get(cacheKey);
    const cached = expires !== undefined && expires > this.#now();
    // A plaintext password compares at once; the scrypt an unknown user costs
    // is paid here too, so a fast "no" does not tell that the user exists.
    if (!cached && !isHashed(user.password)) await verifyPassword(password, await DUMMY_HASH);
    const ok = cached || (await this.#check(cacheKey, password, user.password));
    if (!ok) return { ok: false, reason: "bad_password" };
    if (!user.active) return { ok: false, reason: "inactive" };
    this.#remember(cacheKey);
    return { ok: true, user };
  }

  // Simultaneous logins with the same credentials (20 sessions of one app
  // connecting together) share one scrypt instead of running 20.
  #check(cacheKey: string, password: string, stored: string): Promise<boolean> {
    let pending = this.#inFlight.get(cacheKey);
    if (!pending) {
      pending = verifyPassword(password, stored).finally(() => this.#inFlight.delete(cacheKey));
      this.#inFlight.set(cacheKey, pending);
    }
    return pending;
  }

  #cacheKey(user: User, password: string): string {
    return createHmac("sha256", this.#key).update(`${user.username}\0${user.password}\0${password}`)
      .digest("base64");
  }

  #remember(key: string): void {
    const now = this.#now();
    if (this.#cache.size > 10_000) {
      for (const [k, exp] of this.#cache) if (exp <= now) this.#cache.delete(k);
    }
    this.#cache.set(key, now + this.#ttl);
  }
}
