import type { Authenticator } from "../auth/mod.ts";
import { type Config, splitHostPort } from "../config/mod.ts";
import { DkimSigner, loadDkimKeys } from "../dkim/mod.ts";
import type { EmitEvent } from "../events/mod.ts";
import type { Spool } from "../spool/mod.ts";
import {
  type ConnectionGate,
  Intake,
  type LoginThrottle,
  type SignFunction,
  SubmissionServer,
} from "../submission/mod.ts";

/** Options for {@linkcode buildIntake}. */
export interface BuildIntakeOptions {
  spool: Spool;
  /** DKIM signing (the daemon swaps its signer on SIGHUP, so it passes a function). */
  sign: SignFunction;
  emit: EmitEvent;
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
    emit: options.emit,
  });
}

/** Loads the `dkim[]` keys of the config into a signer. */
export async function loadSigner(config: Config): Promise<DkimSigner> {
  return new DkimSigner(
    await loadDkimKeys(config.dkim.map((d) => ({
      domain: d.domain,
      selector: d.selector,
      privateKeyFile: d.private_key_file,
    }))),
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
