import type { Authenticator, SendingLimits } from "../auth/mod.ts";
import { type Config, splitHostPort } from "../config/mod.ts";
import {
  DkimSigner,
  loadDkimKeys,
  readRotationState,
  rotatingKeyConfig,
  ROTATION_STATE_FILE,
  rotationView,
} from "../dkim/mod.ts";
import type { EmitEvent } from "../events/mod.ts";
import type { Spool, SuppressionList } from "../spool/mod.ts";
import {
  type ConnectionGate,
  Intake,
  type LoginThrottle,
  type SharedChecks,
  type SignFunction,
  SubmissionServer,
} from "../submission/mod.ts";

/** Options for {@linkcode buildIntake}. */
export interface BuildIntakeOptions {
  spool: Spool;
  /** DKIM signing (the daemon swaps its signer on SIGHUP, so it passes a function). */
  sign: SignFunction;
  emit: EmitEvent;
  /** Recipients refused because they hard-bounced; null when `suppression.enabled` is off. */
  suppressions: SuppressionList | null;
  /** Per-user sending limits (the daemon's); none when absent. */
  limits?: SendingLimits;
  /** In an intake worker: suppression and limits asked of the main thread. */
  shared?: SharedChecks;
}

/**
 * The intake as the config describes it. The daemon and an offline
 * `minimta sendmail` both build theirs here, so every `server.*` key means
 * the same whichever of them queues the message.
 */
export function buildIntake(config: Config, options: BuildIntakeOptions): Intake {
  return new Intake({
    hostname: config.server.hostname,
    spool: options.spool,
    sign: options.sign,
    maxMessageSize: config.server.max_message_size,
    bareNewline: config.server.bare_newline,
    bulkLint: config.server.bulk_lint,
    emit: options.emit,
    suppressions: options.suppressions,
    limits: options.limits,
    shared: options.shared,
  });
}

/**
 * A signer with the keys the daemon signs with: each `dkim[]` entry's key,
 * or its rotated one once the daemon has switched to it (`minimta dkim rotate`).
 */
export async function loadSigner(
  config: Config,
  dkim: Config["dkim"] = config.dkim,
): Promise<DkimSigner> {
  const state = await readRotationState(`${config.queue.dir}/${ROTATION_STATE_FILE}`);
  return new DkimSigner(
    await loadDkimKeys(dkim.map((d) => rotationView(rotatingKeyConfig(d), state).signing)),
  );
}

/** Options for {@linkcode buildSubmission}. */
export interface BuildSubmissionOptions {
  cert: string;
  key: string;
  emit: EmitEvent;
  intake: Intake;
  authenticator: Authenticator;
  throttle: LoginThrottle;
  /** The connection limits kept elsewhere (intake workers); default: this server's own. */
  gate?: ConnectionGate;
  reusePort?: boolean;
}

/**
 * The SMTP submission server as the config describes it, built alike in the
 * main thread (`server.workers: 1`) and in each intake worker.
 */
export function buildSubmission(config: Config, options: BuildSubmissionOptions): SubmissionServer {
  const s = config.server;
  return new SubmissionServer({
    hostname: s.hostname,
    listen: listenAddr(s.listen_addr),
    listenTls: listenAddr(s.listen_tls_addr),
    ...options,
    maxMessageSize: s.max_message_size,
    maxRecipients: s.max_recipients,
    maxConnections: s.max_connections,
    maxConnectionsPerIp: s.max_connections_per_ip,
    trustedNetworks: s.trusted_networks,
    idleTimeoutMs: s.idle_timeout,
    transactionTimeoutMs: s.transaction_timeout,
  });
}

function listenAddr(addr: string): { host: string; port: number } | null {
  return addr === "" ? null : splitHostPort(addr);
}
