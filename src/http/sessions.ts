import { timingSafeEqual } from "node:crypto";
import { Buffer } from "node:buffer";

/** A logged-in admin. */
export interface Session {
  user: string;
  /** The token every form must carry (CSRF protection). */
  csrf: string;
  expires: number;
}

const COOKIE = "minimta_session";

/** In-memory admin sessions; a restart logs everyone out. */
export class Sessions {
  #sessions = new Map<string, Session>();
  #ttl: number;
  #now: () => number;

  constructor(options: { ttlMs?: number; now?: () => number } = {}) {
    this.#ttl = options.ttlMs ?? 8 * 3_600_000;
    this.#now = options.now ?? Date.now;
  }

  /** Starts a session; returns the Set-Cookie header value. */
  create(user: string): { cookie: string; session: Session } {
    const id = token();
    const session = { user, csrf: token(), expires: this.#now() + this.#ttl };
    this.#sessions.set(id, session);
    // HttpOnly: no script reads it; Secure: never sent in clear except to
    // localhost; SameSite=Strict: no cross-site request carries it.
    const cookie = `${COOKIE}=${id}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=${
      Math.floor(this.#ttl / 1000)
    }`;
    return { cookie, session };
  }

  /** The session of a request, if its cookie names a live one. */
  get(request: Request): { id: string; session: Session } | null {
    const id = readCookie(request.headers.get("cookie") ?? "", COOKIE);
    const session = id ? this.#sessions.get(id) : undefined;
    if (!id || !session) return null;
    if (session.expires < this.#now()) {
      this.#sessions.delete(id);
      return null;
    }
    return { id, session };
  }

  /** Ends a session; returns a Set-Cookie header that clears the cookie. */
  destroy(id: string): string {
    this.#sessions.delete(id);
    return `${COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0`;
  }
}

/** Constant-time comparison of a submitted CSRF token with the session's. */
export function csrfValid(session: Session, submitted: string | null): boolean {
  if (!submitted) return false;
  const a = Buffer.from(session.csrf);
  const b = Buffer.from(submitted);
  return a.length === b.length && timingSafeEqual(a, b);
}

function token(): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url");
}

function readCookie(header: string, name: string): string | null {
  for (const part of header.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return v.join("=");
  }
  return null;
}
