import type { QueueIndex } from "../delivery/mod.ts";
import { log } from "../log/mod.ts";
import type { MessageMeta, Suppression } from "../spool/mod.ts";
import { doctorPage, type DoctorPageReport } from "./doctor_page.ts";
import { type Html, html, layout, STYLE } from "./html.ts";
import type { Gauges, Metrics } from "./metrics.ts";
import {
  confirmDeletePage,
  dashboardPage,
  loginPage,
  messagePage,
  queuePage,
  type SendingLimitRow,
} from "./pages.ts";
import { searchSuppressions, suppressionsPage } from "./suppressions_page.ts";
import { csrfValid, type Session, Sessions } from "./sessions.ts";

/** What the status server needs from the daemon. */
export interface HttpDeps {
  index: QueueIndex;
  metrics: Metrics;
  gauges(): Gauges;
  /** Liveness of the parts /readyz reports. */
  ready(): Promise<Record<string, boolean>>;
  readMessage(id: string): Promise<{ meta: MessageMeta; headers: string } | null>;
  operate(id: string, op: "hold" | "release" | "retry" | "delete"): Promise<string>;
  /** The live suppression list, newest first. */
  suppressions(): Suppression[];
  /** Users with sending limits and their use (recipients this hour and in the last 24 hours). */
  sendingLimits?(): SendingLimitRow[];
  /**
   * The `minimta doctor` report: bounded in time and cached by the caller;
   * `fresh` asks for a new run (a run in progress is shared).
   */
  doctor(fresh?: boolean): Promise<DoctorPageReport>;
  /** Checks a login: an admin user's password, or the configured admin token. */
  login(username: string, password: string, clientIp: string): Promise<string | null>;
}

/** Options for {@linkcode startHttpServer}. */
export interface HttpOptions {
  hostname: string;
  port: number;
}

const PAGE_SIZE = 50;
/**
 * Largest login form read (user name, password or admin token), checked
 * before authentication: a 400 MB form once raised the daemon's RSS by 800 MB.
 */
export const MAX_LOGIN_BODY_BYTES = 8 * 1024;
/** Largest action form read (CSRF token, `confirm`). */
export const MAX_ACTION_BODY_BYTES = 2 * 1024;
const logger = log("http");
const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cache-control": "no-store",
};

/**
 * The status page, `/metrics`, `/healthz` and `/readyz`, on Deno.serve.
 * Pages need an admin login; every state-changing request is a POST with
 * the session's CSRF token; all output is escaped.
 */
export function startHttpServer(
  options: HttpOptions,
  deps: HttpDeps,
): Deno.HttpServer<Deno.NetAddr> {
  const app = new StatusApp(deps);
  return Deno.serve(
    { hostname: options.hostname, port: options.port, onListen: () => {} },
    (req, info) =>
      app.handle(req, info.remoteAddr.hostname).catch((error) => {
        logger.error("HTTP {path} failed: {error}", {
          path: new URL(req.url).pathname,
          error: String(error),
        });
        return text("Internal error", 500);
      }),
  );
}

class StatusApp {
  #deps: HttpDeps;
  #sessions = new Sessions();

  constructor(deps: HttpDeps) {
    this.#deps = deps;
  }

  async handle(req: Request, clientIp: string): Promise<Response> {
    const url = new URL(req.url);
    const path = url.pathname;
    if (path === "/healthz") return text("ok\n");
    if (path === "/readyz") return await this.#ready();
    if (path === "/metrics") {
      return text(
        this.#deps.metrics.render(this.#deps.gauges()),
        200,
        "text/plain; version=0.0.4; charset=utf-8",
      );
    }
    if (path === "/static/style.css") {
      return text(STYLE, 200, "text/css; charset=utf-8", "public, max-age=3600");
    }
    if (path === "/login") {
      return req.method === "POST"
        ? await this.#login(req, clientIp)
        : page("Log in", loginPage(null));
    }
    const current = this.#sessions.get(req);
    if (!current) return redirect("/login");
    if (req.method === "POST") return await this.#post(req, path, current);
    if (req.method !== "GET") return text("Method not allowed", 405);
    return await this.#get(url, current.session);
  }

  async #ready(): Promise<Response> {
    const checks = await this.#deps.ready();
    const ok = Object.values(checks).every(Boolean);
    return json({ ok, checks }, ok ? 200 : 503);
  }

  async #login(req: Request, clientIp: string): Promise<Response> {
    const form = await readForm(req, MAX_LOGIN_BODY_BYTES);
    if (form === null) return tooLarge();
    const user = await this.#deps.login(
      String(form.get("username") ?? ""),
      String(form.get("password") ?? ""),
      clientIp,
    );
    if (!user) {
      return page(
        "Log in",
        loginPage("Wrong user, password or token, or not an admin."),
        null,
        401,
      );
    }
    const { cookie } = this.#sessions.create(user);
    return redirect("/", cookie);
  }

  async #get(url: URL, session: Session): Promise<Response> {
    const path = url.pathname;
    const d = this.#deps;
    if (path === "/") {
      const now = Date.now();
      const lastDay = d.metrics.series(24 * 60);
      const data = {
        counts: d.index.counts(),
        oldest: d.index.oldest(),
        lastHour: lastDay.slice(-60),
        lastDay,
        topDeferred: d.index.topDeferredDomains(10),
        limits: d.sendingLimits?.() ?? [],
        now,
        providers: d.gauges().providers ?? [],
      };
      return page("Dashboard", dashboardPage(data), session);
    }
    if (path === "/queue") {
      const q = url.searchParams.get("q") ?? "";
      const stateParam = url.searchParams.get("state") ?? "";
      const state = ["queued", "deferred", "held"].includes(stateParam)
        ? stateParam as "queued"
        : undefined;
      const offset = Math.max(0, Math.floor(Number(url.searchParams.get("offset")) || 0));
      const result = d.index.search({ q, state, offset, limit: PAGE_SIZE });
      return page("Queue", queuePage(q, state ?? "", offset, result, PAGE_SIZE), session);
    }
    if (path === "/suppressions") {
      const q = url.searchParams.get("q") ?? "";
      const offset = Math.max(0, Math.floor(Number(url.searchParams.get("offset")) || 0));
      const found = searchSuppressions(d.suppressions(), q);
      const result = { total: found.length, items: found.slice(offset, offset + PAGE_SIZE) };
      return page("Suppressions", suppressionsPage(q, offset, result, PAGE_SIZE), session);
    }
    if (path === "/doctor") {
      return page("DNS doctor", doctorPage(await d.doctor(), session.csrf), session);
    }
    const match = /^\/message\/([0-9A-Z]{16})(\/delete)?$/.exec(path);
    if (match) {
      if (match[2]) {
        return page("Delete message", confirmDeletePage(match[1], session.csrf), session);
      }
      const found = await d.readMessage(match[1]);
      if (!found) {
        return page(
          "Not found",
          notice(`No message ${match[1]} in the queue (delivered or deleted).`),
          session,
          404,
        );
      }
      return page(
        `Message ${match[1]}`,
        messagePage(found.meta, found.headers, session.csrf, url.searchParams.get("done")),
        session,
      );
    }
    return page("Not found", notice("No such page."), session, 404);
  }

  async #post(
    req: Request,
    path: string,
    current: { id: string; session: Session },
  ): Promise<Response> {
    const form = await readForm(req, MAX_ACTION_BODY_BYTES);
    if (form === null) return tooLarge();
    if (!csrfValid(current.session, form.get("csrf") as string | null)) {
      return text("Refused: missing or wrong CSRF token. Reload the page and try again.", 403);
    }
    if (path === "/logout") return redirect("/login", this.#sessions.destroy(current.id));
    if (path === "/doctor") {
      // Check again: waits for the new run, so the page it redirects to shows it.
      await this.#deps.doctor(true);
      return redirect("/doctor");
    }
    const match = /^\/message\/([0-9A-Z]{16})\/(retry|hold|release|delete)$/.exec(path);
    if (!match) return text("Not found", 404);
    const [, id, op] = match;
    if (op === "delete" && form.get("confirm") !== "yes") return redirect(`/message/${id}/delete`);
    let result: string;
    try {
      result = await this.#deps.operate(id, op as "retry");
    } catch {
      result = `${id}: no such message`;
    }
    logger.info("Web action {op} on {queue_id} by {user}: {result}", {
      op,
      queue_id: id,
      user: current.session.user,
      result,
    });
    return redirect(
      op === "delete" ? `/queue` : `/message/${id}?done=${encodeURIComponent(result)}`,
    );
  }
}

// A POST whose body is not a form (no body, JSON, …) is treated as an empty
// form: refused by the CSRF check or the login, never a 500. A body longer
// than `maxBytes` gives null (413): a declared Content-Length is refused
// unread; a chunked one is read up to the cap and the rest cancelled.
async function readForm(req: Request, maxBytes: number): Promise<FormData | null> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  // Refused unread; a client that sent Expect: 100-continue (RFC 9110 §10.1.1) stops at the 413.
  if (!(declared <= maxBytes)) return null;
  const body = await readCapped(req.body, maxBytes);
  if (body === null) return null;
  try {
    const type = req.headers.get("content-type") ?? "";
    return await new Response(body, { headers: { "content-type": type } }).formData();
  } catch {
    return new FormData();
  }
}

/** The whole stream if it holds at most `maxBytes`, else null (and the stream is cancelled). */
async function readCapped(
  stream: ReadableStream<Uint8Array> | null,
  maxBytes: number,
): Promise<Uint8Array<ArrayBuffer> | null> {
  if (!stream) return new Uint8Array(0);
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > maxBytes) {
        await reader.cancel().catch(() => {});
        return null;
      }
      chunks.push(value);
    }
  } catch {
    // The client went away mid-body: what arrived is parsed (and will not log anyone in).
  } finally {
    reader.releaseLock();
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

function tooLarge(): Response {
  return text("Request body too large", 413);
}

function notice(message: string): Html {
  return html`<p>${message}</p>`;
}

function page(title: string, body: Html, session: Session | null = null, status = 200): Response {
  return text(
    layout(title, body, { user: session?.user ?? null, csrf: session?.csrf }),
    status,
    "text/html; charset=utf-8",
  );
}

function text(
  body: string,
  status = 200,
  type = "text/plain; charset=utf-8",
  cache?: string,
): Response {
  return new Response(body, {
    status,
    headers: {
      ...SECURITY_HEADERS,
      "content-type": type,
      ...(cache ? { "cache-control": cache } : {}),
    },
  });
}

function json(value: unknown, status: number): Response {
  return text(JSON.stringify(value), status, "application/json");
}

function redirect(location: string, cookie?: string): Response {
  const headers: Record<string, string> = { ...SECURITY_HEADERS, location };
  if (cookie) headers["set-cookie"] = cookie;
  return new Response(null, { status: 303, headers });
}
