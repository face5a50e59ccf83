import { timingSafeEqual } from "node:crypto";
import { type Authenticator, AuthThrottle, type SendingLimits } from "../auth/mod.ts";
import { cachedDoctor } from "./doctor.ts";
import { type Config, DEFAULTS, splitHostPort } from "../config/mod.ts";
import type { DeliveryEngine } from "../delivery/mod.ts";
import { type HttpDeps, type Metrics, startHttpServer } from "../http/mod.ts";
import type { EmitEvent } from "../events/mod.ts";
import { log } from "../log/mod.ts";
import { MessageNotFoundError, type Spool, type SuppressionList } from "../spool/mod.ts";
import type { SubmissionServer } from "../submission/mod.ts";

const logger = log("serve");

/** The running parts the status server reads from. */
export interface Running {
  engine: DeliveryEngine;
  spool: Spool;
  submission: Pick<SubmissionServer, "connections" | "listening">;
  authenticator: Authenticator;
  /** Counted from the mail events (subscribed where the daemon is wired). */
  metrics: Metrics;
  /** Receives a failed status-page login as `auth_failure`. */
  emit: EmitEvent;
  suppressions: SuppressionList;
  /** Per-user sending counts, shown against the users' limits. */
  limits?: SendingLimits;
}

/**
 * Starts the status page, `/metrics`, `/healthz` and `/readyz` on
 * `http.listen_addr`, wired to the running engine, spool and intake.
 */
export function startStatusServer(config: Config, r: Running): Deno.HttpServer {
  const throttle = new AuthThrottle({
    failureDelayMs: config.auth.failure_delay,
    // A page login has no connection to close; this only paces a user's
    // failures, and has always used the default, not the SMTP setting.
    maxPerConnection: DEFAULTS.auth.max_failures_per_connection,
    maxPerIp: config.auth.max_failures_per_ip,
    windowMs: config.auth.failure_window,
  });
  const addr = splitHostPort(config.http.listen_addr)!;
  const deps: HttpDeps = {
    index: r.engine.index,
    metrics: r.metrics,
    gauges: () => {
      const oldest = r.engine.index.oldest();
      return {
        queue: r.engine.index.counts(),
        oldestAgeSeconds: oldest
          ? Math.round((Date.now() - Date.parse(oldest.created_at)) / 1000)
          : 0,
        connectionsIn: r.submission.connections,
        connectionsOut: r.engine.activeAttempts,
        providers: r.engine.providerStatus(),
      };
    },
    sendingLimits: () =>
      r.authenticator.all().flatMap((u) => {
        if (!u.limits || !r.limits) return [];
        const used = r.limits.usage(u.username);
        return [{ username: u.username, ...used, ...u.limits }];
      }),
    ready: async () => ({
      spool_writable: await r.spool.writable(),
      listeners: r.submission.listening,
    }),
    readMessage: async (id) => {
      try {
        const meta = await r.spool.get(id);
        return { meta, headers: await r.spool.readHeaders(id) };
      } catch (error) {
        if (error instanceof MessageNotFoundError) return null;
        throw error;
      }
    },
    operate: (id, op) => r.engine.operate(id, op),
    suppressions: () => r.suppressions.list(),
    doctor: cachedDoctor(config),
    login: async (username, password, clientIp) => {
      // Throttled like SMTP AUTH: growing delays, then the IP is refused for a while.
      // The attempt is counted before the check, so parallel posts cannot all pass.
      const attempt = throttle.reserve(clientIp, r.authenticator.attemptKey(username, password));
      if (!attempt) {
        r.emit({
          type: "auth_failure",
          client_ip: clientIp,
          username,
          reason: "status page throttled",
        });
        return null;
      }
      if (config.http.admin_token && constantTimeEqual(password, config.http.admin_token)) {
        attempt.succeeded(username);
        return "admin (token)";
      }
      const result = await r.authenticator.verify(username, password).catch((error) => {
        attempt.failed(username, 1);
        throw error;
      });
      if (result.ok && result.user.admin) {
        attempt.succeeded(username);
        return result.user.username;
      }
      const verdict = attempt.failed(username, 1);
      r.emit({ type: "auth_failure", client_ip: clientIp, username, reason: "status page login" });
      await new Promise((resolve) => setTimeout(resolve, Math.max(500, verdict.delayMs)));
      return null;
    },
  };
  const server = startHttpServer({ hostname: addr.host, port: addr.port }, deps);
  logger.info("Status page, /metrics and /healthz on http://{addr}/", {
    addr: config.http.listen_addr,
  });
  return server;
}

function constantTimeEqual(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
