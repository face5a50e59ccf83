import type { SmtpSession } from "../smtp_client/mod.ts";

/** Options for {@linkcode SessionPool}. */
export interface SessionPoolOptions {
  /** How long an idle connection is kept for the next message. @default 5000 */
  idleMs?: number;
  /** Messages sent over one connection before it is closed. @default 100 */
  maxMessages?: number;
  /** Idle connections kept in all. @default 50 */
  maxIdle?: number;
}

interface Idle {
  session: SmtpSession;
  used: number;
  /** The recipient domain of the connection's last transaction. */
  domain?: string;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * Idle outbound connections kept per destination (an MX host or the
 * smarthost), so the next message to the same place reuses the connection
 * instead of paying TCP, TLS and EHLO again.
 */
export class SessionPool {
  #idle = new Map<string, Idle[]>();
  #count = 0;
  #idleMs: number;
  #maxMessages: number;
  #maxIdle: number;

  constructor(options: SessionPoolOptions = {}) {
    this.#idleMs = options.idleMs ?? 5_000;
    this.#maxMessages = options.maxMessages ?? 100;
    this.#maxIdle = options.maxIdle ?? 50;
  }

  /**
   * An idle connection to `key` with how many messages it has carried, if
   * any; with `domain`, only one whose last transaction was for that domain.
   */
  take(key: string, domain?: string): { session: SmtpSession; used: number } | null {
    const list = this.#idle.get(key);
    if (!list) return null;
    for (let i = list.length - 1; i >= 0; i--) {
      const entry = list[i];
      if (domain !== undefined && entry.domain !== domain && entry.session.usable) continue;
      list.splice(i, 1);
      this.#count--;
      clearTimeout(entry.timer);
      if (!list.length) this.#idle.delete(key);
      if (entry.session.usable) return { session: entry.session, used: entry.used };
      entry.session.close();
    }
    return null;
  }

  /** Takes an idle connection of any key starting with `prefix` (to close it and make room). */
  takeAny(prefix: string): { session: SmtpSession; used: number } | null {
    for (const key of this.#idle.keys()) {
      if (key.startsWith(prefix)) return this.take(key) ?? this.takeAny(prefix);
    }
    return null;
  }

  /**
   * Keeps a connection after a transaction, or closes it when it is worn
   * out (`maxMessages`, default the pool's) or the pool is full.
   */
  give(
    key: string,
    session: SmtpSession,
    used: number,
    maxMessages?: number,
    domain?: string,
  ): void {
    const most = maxMessages ?? this.#maxMessages;
    if (!session.usable || used >= most || this.#count >= this.#maxIdle) {
      void session.quit();
      return;
    }
    const entry: Idle = {
      session,
      used,
      domain,
      timer: setTimeout(() => this.#expire(key, entry), this.#idleMs),
    };
    const list = this.#idle.get(key) ?? [];
    list.push(entry);
    this.#idle.set(key, list);
    this.#count++;
  }

  /** Closes every idle connection with QUIT. */
  async closeAll(): Promise<void> {
    const all = [...this.#idle.values()].flat();
    this.#idle.clear();
    this.#count = 0;
    for (const entry of all) clearTimeout(entry.timer);
    await Promise.all(all.map((e) => e.session.quit()));
  }

  #expire(key: string, entry: Idle): void {
    const list = this.#idle.get(key);
    const i = list ? list.indexOf(entry) : -1;
    if (i < 0) return;
    list!.splice(i, 1);
    if (!list!.length) this.#idle.delete(key);
    this.#count--;
    void entry.session.quit();
  }
}
