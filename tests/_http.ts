/**
 * Helpers for the status-server tests (issue 5): a daemon with the web UI
 * on, an admin user and an admin token; a cookie-keeping HTTP client that
 * logs in and posts forms with the page's CSRF token; headless Chromium
 * through playwright-core; the Prometheus text format; webhook receivers.
 *
 * The harness users file has no admin, so {@linkcode startWebMta} writes its
 * own (same path, written before the daemon starts): alice (submission, not
 * an admin) and ops (admin).
 */
import { freePorts, Mta, type MtaOptions, ROOT, testUsers, userRecord } from "./_harness.ts";

/** An admin of the web UI (users file entry with `"admin": true`). */
export const ADMIN = { user: "ops@ours.test", pass: "ops-Secret-4kq8Zt" };
/** `http.admin_token` of every daemon {@linkcode startWebMta} starts. */
export const ADMIN_TOKEN = "token-" + crypto.randomUUID().replaceAll("-", "");
/** Where screenshots go (git-ignored). */
export const ARTIFACTS = `${ROOT}/tests/artifacts`;

let usersJson: Promise<string> | null = null;

function users(): Promise<string> {
  usersJson ??=
    (async () =>
      JSON.stringify([...await testUsers(), await userRecord(ADMIN, { admin: true })], null, 2))();
  return usersJson;
}

/** Options of {@linkcode startWebMta}. */
export interface WebMtaOptions extends Omit<MtaOptions, "noStart"> {
  /** The `webhooks:` list (the harness merges sections as mappings, so lists go here). */
  webhooks?: ({ url: string; events?: string[]; secret?: string } & Record<string, unknown>)[];
  /** Runs after the files are written, before the daemon starts (e.g. spool fixtures). */
  prepare?: (mta: Mta) => Promise<void>;
  /** Prepare only; the caller launches. @default false */
  noStart?: boolean;
}

/** A daemon with `http.listen_addr` on a free loopback port, the admin token and an admin user. */
export async function startWebMta(options: WebMtaOptions = {}): Promise<Mta> {
  const [httpPort] = freePorts(1);
  const config = { ...(options.config ?? {}) };
  config.http = { listen_addr: `127.0.0.1:${httpPort}`, admin_token: ADMIN_TOKEN, ...config.http };
  const mta = await Mta.start({ ...options, config, noStart: true });
  try {
    await Deno.writeTextFile(`${mta.dir}/users.json`, await users(), { mode: 0o600 });
    if (options.webhooks) {
      const written = await mta.config() as Record<string, unknown>;
      written.webhooks = options.webhooks;
      await Deno.writeTextFile(mta.configPath, JSON.stringify(written, null, 2));
    }
    await options.prepare?.(mta);
    if (!options.noStart) await mta.launch();
    return mta;
  } catch (error) {
    await mta[Symbol.asyncDispose]();
    throw error;
  }
}

/** `http://127.0.0.1:PORT` of a daemon's status server. */
export async function httpBase(mta: Mta): Promise<string> {
  const config = await mta.config();
  return `http://${(config.http as Record<string, string>).listen_addr}`;
}

/** The CSRF token in a page's forms (the hidden `csrf` input). */
export function csrfOf(page: string): string | null {
  return /name="csrf" value="([^"]+)"/.exec(page)?.[1] ?? null;
}

/** A small cookie-keeping HTTP client for the status server (redirects are not followed). */
export class WebClient {
  cookie: string | null = null;
  /** The Set-Cookie header of the last login. */
  setCookie: string | null = null;
  constructor(readonly base: string) {}

  static async forMta(mta: Mta): Promise<WebClient> {
    return new WebClient(await httpBase(mta));
  }

  /** Logs in; returns the response (303 on success). */
  async login(user: string, pass: string): Promise<Response> {
    const res = await fetch(`${this.base}/login`, {
      method: "POST",
      body: new URLSearchParams({ username: user, password: pass }),
      redirect: "manual",
    });
    await res.body?.cancel();
    const cookie = res.headers.getSetCookie()[0];
    if (res.status === 303 && cookie) {
      this.setCookie = cookie;
      this.cookie = cookie.split(";")[0];
    }
    return res;
  }

  /** GET with the session cookie. */
  get(path: string): Promise<Response> {
    return fetch(`${this.base}${path}`, {
      headers: this.cookie ? { cookie: this.cookie } : {},
      redirect: "manual",
    });
  }

  /** GET and read the body as text (asserting nothing). */
  async page(path: string): Promise<{ status: number; body: string; headers: Headers }> {
    const res = await this.get(path);
    return { status: res.status, body: await res.text(), headers: res.headers };
  }

  /** The CSRF token this session's pages carry. */
  async csrf(): Promise<string> {
    const token = csrfOf((await this.page("/")).body);
    if (!token) throw new Error("No CSRF token on the dashboard (not logged in?)");
    return token;
  }

  /** POST a form with the session cookie. */
  async post(path: string, fields: Record<string, string>): Promise<Response> {
    const res = await fetch(`${this.base}${path}`, {
      method: "POST",
      headers: this.cookie ? { cookie: this.cookie } : {},
      body: new URLSearchParams(fields),
      redirect: "manual",
    });
    return res;
  }
}

/** A message's state as stored in its metadata file, or null once gone. */
export async function storedState(mta: Mta, id: string): Promise<string | null> {
  try {
    return (await mta.readMeta(id)).state;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

// ---------------------------------------------------------------- the browser

/** Debian's Chromium, as the node machine doc says it runs here. */
export const CHROMIUM = "/usr/bin/chromium";

/**
 * Headless Chromium through playwright-core. Playwright gives every launch
 * a new empty profile (its own temporary --user-data-dir) and removes it on
 * close; the flags are the ones known to work on this machine.
 */
export async function launchChromium(): Promise<import("playwright-core").Browser> {
  const { chromium } = await import("playwright-core");
  return await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    timeout: 60_000,
  });
}

/** Size of a file in bytes, or 0 when missing. */
export async function fileSize(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch {
    return 0;
  }
}

/** True when `bytes` start with the PNG signature. */
export function isPng(bytes: Uint8Array): boolean {
  return [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a].every((b, i) => bytes[i] === b);
}

/** Width and height from a PNG's IHDR. */
export function pngSize(bytes: Uint8Array): { width: number; height: number } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

// ---------------------------------------------------------------- Prometheus text format

/** One sample of the exposition: name, labels and value. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * Reads samples from Prometheus text (after promtool has validated it):
 * `name{a="b",…} value`, with the format's escapes in label values.
 */
export function samples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$/.exec(line);
    if (!m) throw new Error(`Unparsable sample line: ${line}`);
    const labels: Record<string, string> = {};
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g;
    for (const l of (m[2] ?? "").matchAll(re)) {
      labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    const value = m[3] === "+Inf" ? Infinity : m[3] === "-Inf" ? -Infinity : Number(m[3]);
    out.push({ name: m[1], labels, value });
  }
  return out;
}

/** The value of the one sample with this name and (at least) these labels; 0 when absent. */
export function value(all: Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = all.filter((s) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  );
  return found.reduce((n, s) => n + s.value, 0);
}

// ---------------------------------------------------------------- webhooks

/** One POST a webhook receiver got. */
export interface Received {
  body: string;
  headers: Record<string, string>;
  at: number;
}

/** A webhook receiver on loopback (Deno.serve) recording every POST, answering 204. */
export class WebhookReceiver {
  readonly received: Received[] = [];
  #server: Deno.HttpServer<Deno.NetAddr>;

  private constructor(server: Deno.HttpServer<Deno.NetAddr>, received: Received[]) {
    this.#server = server;
    this.received = received;
  }

  /** Listens on `port` (0: any free one). */
  static start(port = 0): WebhookReceiver {
    const received: Received[] = [];
    const server = Deno.serve(
      { hostname: "127.0.0.1", port, onListen: () => {} },
      async (req) => {
        received.push({
          body: await req.text(),
          headers: Object.fromEntries(req.headers),
          at: Date.now(),
        });
        return new Response(null, { status: 204 });
      },
    );
    return new WebhookReceiver(server, received);
  }

  get port(): number {
    return this.#server.addr.port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/hook`;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#server.shutdown();
  }
}

/** HMAC-SHA256 of `body` under `secret`, hex (WebCrypto: independent of minimta's node:crypto). */
export async function hmacHex(secret: string, body: string): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(body)));
  return Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join("");
}
