/**
 * @module
 * The status server, run by the daemon when `http.listen_addr` is set: a
 * web UI for the queue (dashboard, search, message pages, retry/hold/
 * release/delete), Prometheus `/metrics` counted from the mail log, and
 * `/healthz` and `/readyz` probes.
 */
export { type HttpDeps, startHttpServer } from "./server.ts";
export { Metrics } from "./metrics.ts";
