/** Options for {@linkcode AuthThrottle}. */
export interface AuthThrottleOptions {
  /** Delay before answering the first failure; it doubles per failure on the connection (`auth.failure_delay`). */
  failureDelayMs: number;
  /** Failures on one connection before it is closed with 421 (`auth.max_failures_per_connection`). */
  maxPerConnection: number;
  /** Failures from one IP within the window before its AUTH is refused (`auth.max_failures_per_ip`). */
  maxPerIp: number;
  /** The window for per-IP and per-user counts (`auth.failure_window`). */
  windowMs: number;
  /** The clock. @default Date.now */
  now?: () => number;
}

/** What to do after a failed login. */
export interface FailureVerdict {
  /** Wait this long before replying (the error sleep, as Postfix's smtpd_error_sleep_time). */
  delayMs: number;
  /** Close the connection with 421 after replying. */
  disconnect: boolean;
}

/**
 * One login attempt counted against its IP before the password is checked
 * (see {@linkcode AuthThrottle.reserve}). Exactly one of the two methods is
 * called when the check is over; later calls do nothing.
 */
export interface AuthAttempt {
  /** The check passed: the IP's slot is given back and the user's failures forgotten. */
  succeeded(username: string): void;
  /** The check failed: the slot stays counted as a failure; says how to answer. */
  failed(username: string, failuresOnConnection: number): FailureVerdict;
}

const MAX_DELAY_MS = 8_000;

/**
 * Failed-AUTH throttling, per client IP and per user, as Postfix's anvil and
 * chasquid do: every failure is answered after a growing delay; a connection
 * is closed after a few failures; an IP with too many failures in the window
 * is refused AUTH (454) until the window passes. A user's failures only slow
 * that user's logins down, so an attacker cannot lock a real user out.
 */
export class AuthThrottle {
  #delay: number;
  #perConnection: number;
  #perIp: number;
  #window: number;
  #now: () => number;
  #ips = new Map<string, number[]>();
  #users = new Map<string, number[]>();
  /** Checks in flight by IP and credentials key: identical attempts share one slot. */
  #inFlight = new Set<string>();

  constructor(options: AuthThrottleOptions) {
    this.#delay = options.failureDelayMs;
    this.#perConnection = options.maxPerConnection;
    this.#perIp = options.maxPerIp;
    this.#window = options.windowMs;
    this.#now = options.now ?? Date.now;
  }

  /** True while `ip` has used up its failures for the window. */
  blocked(ip: string): boolean {
    return this.#recent(this.#ips, ip).length >= this.#perIp;
  }

  /**
   * Counts an attempt from `ip` as a failure before its password is checked,
   * or returns null while `ip` is blocked. Checking first and counting after
   * the (slow) scrypt let 40 parallel guesses all pass a limit of 10; a slot
   * held for the check closes that race. Attempts with the same `key` (an
   * HMAC of the credentials, `Authenticator.attemptKey`) while one is being
   * checked share its slot: 20 sessions of one app logging in together are
   * one guess, not 20.
   */
  reserve(ip: string, key: string): AuthAttempt | null {
    const flightKey = `${ip}\0${key}`;
    if (this.#inFlight.has(flightKey)) return this.#attempt(ip, null);
    if (this.blocked(ip)) return null;
    const at = this.#now();
    this.#recent(this.#ips, ip).push(at);
    this.#inFlight.add(flightKey);
    return this.#attempt(ip, { at, flightKey });
  }

  #attempt(ip: string, slot: { at: number; flightKey: string } | null): AuthAttempt {
    let done = false;
    const finish = (keep: boolean) => {
      if (done) return false;
      done = true;
      if (!slot) return true;
      this.#inFlight.delete(slot.flightKey);
      if (!keep) {
        const list = this.#ips.get(ip);
        const i = list?.indexOf(slot.at) ?? -1;
        if (i >= 0) list!.splice(i, 1);
      }
      return true;
    };
    return {
      succeeded: (username) => {
        if (finish(false)) this.success(username);
      },
      failed: (username, failuresOnConnection) =>
        finish(true)
          ? this.#userFailure(ip, username, failuresOnConnection)
          : { delayMs: 0, disconnect: false },
    };
  }

  /** Records a failure and says how to answer it. */
  failure(ip: string, username: string, failuresOnConnection: number): FailureVerdict {
    this.#recent(this.#ips, ip).push(this.#now());
    return this.#userFailure(ip, username, failuresOnConnection);
  }

  #userFailure(ip: string, username: string, failuresOnConnection: number): FailureVerdict {
    const now = this.#now();
    const userFailures = this.#recent(this.#users, username.toLowerCase());
    userFailures.push(now);
    const steps =
      Math.max(failuresOnConnection, Math.ceil(userFailures.length / this.#perConnection)) - 1;
    return {
      delayMs: Math.min(this.#delay * 2 ** Math.max(0, steps), MAX_DELAY_MS),
      disconnect: failuresOnConnection >= this.#perConnection || this.blocked(ip),
    };
  }

  /** Forgets a user's failures after a successful login. */
  success(username: string): void {
    this.#users.delete(username.toLowerCase());
  }

  #recent(map: Map<string, number[]>, key: string): number[] {
    const cutoff = this.#now() - this.#window;
    const list = (map.get(key) ?? []).filter((t) => t > cutoff);
    if (list.length) map.set(key, list);
    else map.delete(key);
    if (map.size > 50_000) this.#prune(map, cutoff);
    return map.get(key) ?? this.#set(map, key);
  }

  #set(map: Map<string, number[]>, key: string): number[] {
    const list: number[] = [];
    map.set(key, list);
    return list;
  }

  #prune(map: Map<string, number[]>, cutoff: number): void {
    for (const [k, v] of map) if (v.every((t) => t <= cutoff)) map.delete(k);
  }
}
