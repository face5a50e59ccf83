/** Options for {@linkcode AuthThrottle}. */
export interface AuthThrottleOptions {
  /** Delay before answering the first failure; it doubles per failure on the connection. @default 1000 */
  failureDelayMs?: number;
  /** Failures on one connection before it is closed with 421. @default 3 */
  maxPerConnection?: number;
  /** Failures from one IP within the window before its AUTH is refused. @default 10 */
  maxPerIp?: number;
  /** The window for per-IP and per-user counts. @default 600000 */
  windowMs?: number;
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

  constructor(options: AuthThrottleOptions = {}) {
    this.#delay = options.failureDelayMs ?? 1_000;
    this.#perConnection = options.maxPerConnection ?? 3;
    this.#perIp = options.maxPerIp ?? 10;
    this.#window = options.windowMs ?? 600_000;
    this.#now = options.now ?? Date.now;
  }

  /** True while `ip` has used up its failures for the window. */
  blocked(ip: string): boolean {
    return this.#recent(this.#ips, ip).length >= this.#perIp;
  }

  /** Records a failure and says how to answer it. */
  failure(ip: string, username: string, failuresOnConnection: number): FailureVerdict {
    const now = this.#now();
    this.#recent(this.#ips, ip).push(now);
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
