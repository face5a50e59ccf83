import { BlockList, isIPv4 } from "node:net";
import {
  SMTPServer,
  type SMTPServerAddress,
  type SMTPServerAuthentication,
  type SMTPServerAuthenticationResponse,
  type SMTPServerDataStream,
  type SMTPServerSession,
} from "smtp-server";
import {
  type Authenticator,
  type AuthResult,
  type AuthThrottle,
  senderAllowed,
  type User,
} from "../auth/mod.ts";
import type { EmitEvent } from "../events/mod.ts";
import { log } from "../log/mod.ts";
import "./_smtp_server_patches.ts";
import { keepTlsEndOfStream } from "./_tls_end_of_stream.ts";
import { checkRecipient, checkSender } from "./envelope_address.ts";
import { concat, type Intake } from "./intake.ts";
import { LineEndingNormalizer } from "./normalizer.ts";
import { SmtpRejection } from "./rejection.ts";

/** Options for {@linkcode SubmissionServer}. */
export interface SubmissionOptions {
  hostname: string;
  /** STARTTLS listener, or null for none. */
  listen: { host: string; port: number } | null;
  /** Implicit-TLS listener (RFC 8314), or null for none. */
  listenTls: { host: string; port: number } | null;
  /** PEM certificate chain and key. */
  cert: string;
  key: string;
  /** Receives the `connect`, `auth_*` and `rejected` events. */
  emit: EmitEvent;
  /** What happens to a message after DATA (shared with `minimta sendmail`). */
  intake: Intake;
  authenticator: Authenticator;
  throttle: AuthThrottle;
  /** Announced with SIZE and enforced while streaming (`server.max_message_size`). */
  maxMessageSize: number;
  /** `server.max_recipients`. */
  maxRecipients: number;
  /** `server.max_connections`. */
  maxConnections: number;
  /** Connections from one client address (trusted networks exempt), like Postfix's smtpd_client_connection_count_limit (`server.max_connections_per_ip`). */
  maxConnectionsPerIp: number;
  /** CIDRs that may send without AUTH (`server.trusted_networks`). */
  trustedNetworks: string[];
  /** Inactivity timeout (`server.idle_timeout`). */
  idleTimeoutMs: number;
  /** Longest time from connect, or from the end of the previous message, to the end of the next (`server.transaction_timeout`). */
  transactionTimeoutMs: number;
}

interface SessionState {
  user: User | null;
  trusted: boolean;
  authFailures: number;
  deadline: ReturnType<typeof setTimeout> | undefined;
  connection: OpenConnection | null;
}

/** What shutting down uses of an smtp-server connection. */
interface OpenConnection {
  session?: SMTPServerSession;
  /** The message stream while in DATA (smtp-server's own field). */
  _dataStream?: unknown;
  send(code: number, text: string): void;
}

const logger = log("submission");

/**
 * The intake: SMTP submission (RFC 6409) on npm smtp-server, with STARTTLS
 * on one port and implicit TLS on another. Only this file imports
 * smtp-server. Everything it accepts is in the spool before the 250.
 */
export class SubmissionServer {
  #o: SubmissionOptions;
  #servers: SMTPServer[] = [];
  #trusted = new BlockList();
  #state = new WeakMap<SMTPServerSession, SessionState>();
  #perIp = new Map<string, number>();
  #closing = false;

  constructor(options: SubmissionOptions) {
    this.#o = options;
    for (const cidr of this.#o.trustedNetworks) {
      const [ip, bits] = cidr.split("/");
      const type = isIPv4(ip) ? "ipv4" : "ipv6";
      this.#trusted.addSubnet(
        ip,
        bits === undefined ? (type === "ipv4" ? 32 : 128) : Number(bits),
        type,
      );
    }
  }

  /** Starts the listeners; resolves once they accept connections. */
  async listen(): Promise<void> {
    if (this.#o.listen) await this.#start(this.#o.listen, false);
    if (this.#o.listenTls) await this.#start(this.#o.listenTls, true);
  }

  /** True while every configured listener accepts connections. */
  get listening(): boolean {
    return this.#servers.length > 0 && this.#servers.every((s) => s.server.listening);
  }

  /** Open client connections. */
  get connections(): number {
    return this.#servers.reduce((n, s) => n + s.connections.size, 0);
  }

  /**
   * Stops accepting and ends the open sessions with 421 4.3.2 (RFC 5321
   * §3.8: a server that must shut down says so with 421, even unasked;
   * RFC 3463 §3.4: 4.3.2, system not accepting network messages). Sessions
   * outside a transaction are ended at once; one inside a transaction (after
   * MAIL FROM, or in DATA) may finish its message, gets its 250 once the
   * message is in the spool, and is ended then or after `graceMs`, whichever
   * comes first.
   */
  close(graceMs = 5_000): Promise<void> {
    this.#closing = true;
    for (const connection of this.#openConnections()) {
      if (!inTransaction(connection)) shutDown(connection);
    }
    const cut = setTimeout(() => this.#openConnections().forEach(shutDown), graceMs);
    return Promise.all(this.#servers.map((server) =>
      new Promise<void>((resolve) => {
        // smtp-server's own close timeout is only the backstop.
        (server.options as { closeTimeout?: number }).closeTimeout = graceMs + 500;
        const timer = setTimeout(() => resolve(), graceMs + 1_000);
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
      })
    )).then(() => clearTimeout(cut));
  }

  #openConnections(): OpenConnection[] {
    return this.#servers.flatMap((server) => [...server.connections] as OpenConnection[]);
  }

  #start(addr: { host: string; port: number }, implicitTls: boolean): Promise<void> {
    const server = new SMTPServer({
      secure: implicitTls,
      name: this.#o.hostname,
      banner: "minimta",
      key: this.#o.key,
      cert: this.#o.cert,
      minVersion: "TLSv1.2",
      size: this.#o.maxMessageSize,
      maxClients: this.#o.maxConnections,
      socketTimeout: this.#o.idleTimeoutMs,
      closeTimeout: 10_000,
      authMethods: ["PLAIN", "LOGIN"],
      authOptional: true,
      disabledCommands: [],
      hideENHANCEDSTATUSCODES: true,
      hideDSN: true,
      hideREQUIRETLS: true,
      disableReverseLookup: true,
      maxAllowedUnauthenticatedCommands: 10,
      logger: false,
      onConnect: (session, cb) => this.#onConnect(server, session, cb),
      onSecure: (socket, session, cb) => {
        keepTlsEndOfStream(socket);
        session.disabledCommands = [];
        cb();
      },
      onAuth: (auth, session, cb) => this.#onAuth(auth, session, cb),
      onMailFrom: (address, session, cb) => this.#onMailFrom(address, session, cb),
      onRcptTo: (address, session, cb) => this.#onRcptTo(address, session, cb),
      onData: (stream, session, cb) => this.#onData(stream, session, cb),
      onClose: (session) => this.#onClose(session),
    });
    server.on(
      "error",
      (error: Error) => {
        // A client that hangs up before or during the TLS handshake (health
        // checks, port scanners) or offers only what we refuse (TLS 1.0, NULL
        // ciphers) is not a fault of ours. smtp-server marks every handshake
        // failure with stage "connect"; the messages are the TLS stack's own
        // ("peer is incompatible: NoCipherSuitesInCommon" from rustls).
        const handshake = (error as { meta?: { stage?: string } }).meta?.stage === "connect";
        const clientSide = handshake ||
          /socket closed|ECONNRESET|EPIPE|handshake|ssl|tls/i.test(error.message);
        logger[clientSide ? "debug" : "error"]("Listener error: {error}", { error: error.message });
      },
    );
    this.#servers.push(server);
    return new Promise((resolve, reject) => {
      server.server.once("error", reject);
      server.listen(addr.port, addr.host, () => {
        server.server.off("error", reject);
        resolve();
      });
    });
  }

  #onConnect(
    server: SMTPServer,
    session: SMTPServerSession,
    cb: (err?: Error | null) => void,
  ): void {
    const ip = session.remoteAddress;
    const trusted = this.#trusted.check(ip, isIPv4(ip) ? "ipv4" : "ipv6");
    const open = this.#perIp.get(ip) ?? 0;
    if (!trusted && open >= this.#o.maxConnectionsPerIp) {
      // docs/testing.md R7: one address cannot take every connection slot.
      this.#o.emit({
        type: "rejected",
        session: session.id,
        client_ip: ip,
        stage: "connect",
        code: 421,
        reason: "too many connections",
      });
      return cb(
        new SmtpRejection(421, "4.7.0", "Too many connections from your address, try again later"),
      );
    }
    this.#perIp.set(ip, open + 1);
    // RFC 4954 §4 and Postfix's smtpd_tls_auth_only: AUTH is neither
    // offered nor accepted until the session is encrypted.
    session.disabledCommands = session.secure ? [] : ["AUTH"];
    const connection = [...server.connections].find((c) => c.session === session) ?? null;
    const state: SessionState = {
      user: null,
      trusted,
      authFailures: 0,
      deadline: undefined,
      connection,
    };
    this.#state.set(session, state);
    this.#armDeadline(state);
    this.#o.emit({
      type: "connect",
      session: session.id,
      client_ip: ip,
      trusted,
    });
    cb();
  }

  // smtp-server's socketTimeout is an inactivity timer, so a client that
  // trickles a byte every few seconds would hold a session forever
  // (docs/testing.md R5). Each message must be complete within the transaction deadline.
  #armDeadline(state: SessionState): void {
    clearTimeout(state.deadline);
    state.deadline = setTimeout(() => {
      state.connection?.send(421, "4.4.2 Session time limit exceeded, closing connection");
    }, this.#o.transactionTimeoutMs);
  }

  #onClose(session: SMTPServerSession): void {
    const state = this.#state.get(session);
    if (!state) return; // refused in onConnect: never counted
    clearTimeout(state.deadline);
    this.#state.delete(session);
    const ip = session.remoteAddress;
    const open = (this.#perIp.get(ip) ?? 1) - 1;
    if (open > 0) this.#perIp.set(ip, open);
    else this.#perIp.delete(ip);
  }

  async #onAuth(
    auth: SMTPServerAuthentication,
    session: SMTPServerSession,
    cb: (err: Error | null | undefined, response?: SMTPServerAuthenticationResponse) => void,
  ): Promise<void> {
    const state = this.#state.get(session)!;
    const ip = session.remoteAddress;
    const username = auth.username ?? "";
    const password = auth.password ?? "";
    // Counted before the check, so parallel connections cannot all slip under the limit.
    const attempt = this.#o.throttle.reserve(
      ip,
      this.#o.authenticator.attemptKey(username, password),
    );
    if (!attempt) {
      this.#o.emit({
        type: "auth_failure",
        session: session.id,
        client_ip: ip,
        username,
        reason: "ip_throttled",
      });
      return cb(
        new SmtpRejection(
          421,
          "4.7.0",
          "Too many failed logins from your address, try again later",
        ),
      );
    }
    // RFC 4616: an authorization identity other than the login would let
    // one user act as another; refuse it.
    const authzMismatch = auth.method === "PLAIN" && !!auth.authzid && auth.authzid !== username;
    let result: AuthResult | { ok: false; reason: string };
    try {
      result = authzMismatch
        ? { ok: false as const, reason: "authzid_mismatch" }
        : await this.#o.authenticator.verify(username, password);
    } catch (error) {
      attempt.failed(username, ++state.authFailures);
      throw error;
    }
    if (result.ok) {
      state.user = result.user;
      attempt.succeeded(username);
      this.#o.emit({
        type: "auth_success",
        session: session.id,
        client_ip: ip,
        username: result.user.username,
      });
      return cb(null, { user: result.user.username });
    }
    state.authFailures++;
    const verdict = attempt.failed(username, state.authFailures);
    this.#o.emit({
      type: "auth_failure",
      session: session.id,
      client_ip: ip,
      username,
      reason: result.reason,
    });
    await new Promise((r) => setTimeout(r, verdict.delayMs));
    if (verdict.disconnect) {
      return cb(new SmtpRejection(421, "4.7.0", "Too many failed logins, closing connection"));
    }
    cb(new SmtpRejection(535, "5.7.8", "Authentication credentials invalid"));
  }

  #onMailFrom(
    address: SMTPServerAddress,
    session: SMTPServerSession,
    cb: (err?: Error | null) => void,
  ): void {
    const state = this.#state.get(session)!;
    const sender = address.address;
    let refusal: SmtpRejection | null = null;
    if (this.#closing) {
      // No new transaction once the stop has begun (RFC 5321 §3.8).
      refusal = new SmtpRejection(421, "4.3.2", SHUTTING_DOWN);
    } else if (!state.user && !state.trusted) {
      // No relay without authentication (RFC 5321 §7.1).
      refusal = new SmtpRejection(530, "5.7.0", "Authentication required");
    } else if (state.user && sender === "") {
      refusal = new SmtpRejection(553, "5.7.1", "The null sender is reserved for bounces");
    } else if (state.user && !senderAllowed(state.user, sender)) {
      refusal = new SmtpRejection(
        553,
        "5.7.1",
        `Sender address <${sender}> not owned by user ${state.user.username}`,
      );
    } else {
      refusal = checkSender(sender);
    }
    if (refusal) {
      this.#reject(session, "mail_from", refusal, { from: sender });
      return cb(refusal);
    }
    const args = address.args as Record<string, unknown> | false;
    const declared = args ? Number(args.SIZE ?? 0) || 0 : 0;
    this.#o.intake.checkRoom(declared).then((full) => {
      if (full) this.#reject(session, "mail_from", full, { from: sender });
      cb(full);
    }, (error) => cb(error));
  }

  #onRcptTo(
    address: SMTPServerAddress,
    session: SMTPServerSession,
    cb: (err?: Error | null) => void,
  ): void {
    let refusal: SmtpRejection | null = null;
    if (session.envelope.rcptTo.length >= this.#o.maxRecipients) {
      // RFC 5321 §4.5.3.1.10: 452, and the transaction goes on with those accepted.
      refusal = new SmtpRejection(452, "4.5.3", "Too many recipients");
    } else {
      refusal = checkRecipient(address.address) ??
        this.#o.intake.checkSuppressed(address.address) ??
        // Nothing is queued over a user's sending limit; the client keeps the rest.
        this.#o.intake.checkLimit(
          this.#state.get(session)?.user ?? null,
          session.envelope.rcptTo.length + 1,
        );
    }
    if (refusal) this.#reject(session, "rcpt_to", refusal, { to: address.address });
    cb(refusal);
  }

  #reject(
    session: SMTPServerSession,
    stage: string,
    error: SmtpRejection,
    extra: { from?: string; to?: string },
  ): void {
    this.#o.emit({
      type: "rejected",
      session: session.id,
      client_ip: session.remoteAddress,
      stage,
      code: error.responseCode,
      reason: error.message,
      ...extra,
    });
  }

  #onData(
    stream: SMTPServerDataStream,
    session: SMTPServerSession,
    cb: (err?: Error | null, message?: string) => void,
  ): void {
    const normalizer = new LineEndingNormalizer();
    const chunks: Uint8Array[] = [];
    let size = 0;
    stream.on("data", (chunk: Uint8Array) => {
      // An oversized body is discarded as it streams, never stored (docs/testing.md L7).
      if (stream.sizeExceeded) return;
      for (const part of normalizer.push(chunk)) {
        chunks.push(part);
        size += part.length;
      }
    });
    stream.on("end", () => {
      chunks.push(...normalizer.end());
      this.#accept(session, stream, normalizer, concat(chunks)).then(
        (id) => cb(null, `2.0.0 Ok: queued as ${id}`),
        (error) => {
          const refusal = error as SmtpRejection;
          this.#reject(session, "data", refusal, {
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
          });
          cb(refusal);
        },
      ).then(() => {
        // The reply to the dot is written; a stopping server ends the session now.
        const connection = this.#state.get(session)?.connection;
        if (this.#closing && connection) shutDown(connection);
      });
    });
  }

  #accept(
    session: SMTPServerSession,
    stream: SMTPServerDataStream,
    normalizer: LineEndingNormalizer,
    bytes: Uint8Array,
  ): Promise<string> {
    const state = this.#state.get(session)!;
    this.#armDeadline(state);
    const envelope = session.envelope;
    const tls = session.secure && session.tlsOptions
      ? {
        version: session.tlsOptions.version ?? "TLS",
        cipher: session.tlsOptions.name ?? "unknown",
      }
      : null;
    return this.#o.intake.accept({
      from: envelope.mailFrom ? envelope.mailFrom.address : "",
      recipients: envelope.rcptTo.map((r) => r.address),
      bytes,
      normalizer,
      sizeExceeded: stream.sizeExceeded,
      user: state.user,
      clientIp: session.remoteAddress,
      heloName: session.hostNameAppearsAs ?? "",
      tls,
      smtputf8: Boolean(
        envelope.mailFrom && envelope.mailFrom.args && envelope.mailFrom.args.SMTPUTF8,
      ),
    });
  }
}

const SHUTTING_DOWN = "Server shutting down, try again later";

/** Ends a session with 421 4.3.2; smtp-server closes the connection after any 421. */
function shutDown(connection: OpenConnection): void {
  connection.send(421, `4.3.2 ${SHUTTING_DOWN}`);
}

/** True from MAIL FROM until the reply to the message's final dot. */
function inTransaction(connection: OpenConnection): boolean {
  return Boolean(connection.session?.envelope?.mailFrom) || Boolean(connection._dataStream);
}
