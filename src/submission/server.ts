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
  type FailureVerdict,
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
  /** Failed-AUTH throttling: an `AuthThrottle`, or one kept by another thread (intake workers). */
  throttle: LoginThrottle;
  /**
   * Admits connections against the per-IP and total limits. Defaults to a
   * count kept by this server; intake workers share one kept by the main thread.
   */
  gate?: ConnectionGate;
  /** Listen with SO_REUSEPORT, so several event loops share the ports (`server.workers`). @default false */
  reusePort?: boolean;
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

/**
 * {@linkcode AuthThrottle} as the server uses it; each answer may come
 * later, from a throttle shared by the intake workers.
 */
export interface LoginThrottle {
  reserve(ip: string, key: string): LoginAttempt | null | Promise<LoginAttempt | null>;
}

/** One reserved login attempt (see `AuthAttempt`); `failed` may answer later. */
export interface LoginAttempt {
  succeeded(username: string): void;
  failed(username: string, failuresOnConnection: number): FailureVerdict | Promise<FailureVerdict>;
}

/** Why {@linkcode ConnectionGate.admit} refused a connection, or "ok". */
export type Admission = "ok" | "ip" | "total";

/**
 * The connection limits (`server.max_connections`, `max_connections_per_ip`).
 * Every admitted connection is released exactly once when it closes.
 */
export interface ConnectionGate {
  admit(ip: string, trusted: boolean): Admission | Promise<Admission>;
  release(ip: string): void;
}

/**
 * A {@linkcode ConnectionGate} in one thread: per-IP counts (trusted
 * networks exempt) and a total.
 */
export class LocalConnectionGate implements ConnectionGate {
  #perIp = new Map<string, number>();
  #total = 0;
  #max: number;
  #maxPerIp: number;

  constructor(options: { maxConnections: number; maxConnectionsPerIp: number }) {
    this.#max = options.maxConnections;
    this.#maxPerIp = options.maxConnectionsPerIp;
  }

  /** Admitted connections now open. */
  get open(): number {
    return this.#total;
  }

  admit(ip: string, trusted: boolean): Admission {
    const open = this.#perIp.get(ip) ?? 0;
    if (!trusted && open >= this.#maxPerIp) return "ip";
    if (this.#total >= this.#max) return "total";
    this.#perIp.set(ip, open + 1);
    this.#total++;
    return "ok";
  }

  release(ip: string): void {
    const open = (this.#perIp.get(ip) ?? 1) - 1;
    if (open > 0) this.#perIp.set(ip, open);
    else this.#perIp.delete(ip);
    this.#total = Math.max(0, this.#total - 1);
  }
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
  /** Sessions whose admission is being decided, and those of them already closed. */
  #admitting = new WeakMap<SMTPServerSession, { closed: boolean }>();
  #gate: ConnectionGate;
  #closing = false;

  constructor(options: SubmissionOptions) {
    this.#o = options;
    // smtp-server's maxClients stays the backstop; this gate counts the
    // same total, so the limit holds across listeners (and workers).
    this.#gate = options.gate ?? new LocalConnectionGate({
      maxConnections: options.maxConnections,
      maxConnectionsPerIp: options.maxConnectionsPerIp,
    });
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

  /** The bound ports, in the order [STARTTLS, implicit TLS] of those configured. */
  get ports(): number[] {
    return this.#servers.map((s) => (s.server.address() as { port: number }).port);
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
      const options = { port: addr.port, host: addr.host, reusePort: this.#o.reusePort };
      server.listen(options, () => {
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
    const admitting = { closed: false };
    this.#admitting.set(session, admitting);
    const admitted = (verdict: Admission) => {
      this.#admitting.delete(session);
      if (verdict === "ok" && admitting.closed) return this.#gate.release(ip);
      this.#admitted(server, session, trusted, verdict, cb);
    };
    const verdict = this.#gate.admit(ip, trusted);
    if (typeof verdict === "string") admitted(verdict);
    else verdict.then(admitted, (error) => cb(error));
  }

  #admitted(
    server: SMTPServer,
    session: SMTPServerSession,
    trusted: boolean,
    verdict: Admission,
    cb: (err?: Error | null) => void,
  ): void {
    const ip = session.remoteAddress;
    if (verdict !== "ok") {
      // docs/testing.md R7: one address cannot take every connection slot.
      this.#o.emit({
        type: "rejected",
        session: session.id,
        client_ip: ip,
        stage: "connect",
        code: 421,
        reason: verdict === "ip" ? "too many connections" : "too many connected clients",
      });
      return cb(
        verdict === "ip"
          ? new SmtpRejection(
            421,
            "4.7.0",
            "Too many connections from your address, try again later",
          )
          : new SmtpRejection(421, "4.7.0", "Too many connected clients, try again in a moment"),
      );
    }
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
    const admitting = this.#admitting.get(session);
    if (admitting) admitting.closed = true; // released once the gate answers
    const state = this.#state.get(session);
    if (!state) return; // refused in onConnect: never counted
    clearTimeout(state.deadline);
    this.#state.delete(session);
    this.#gate.release(session.remoteAddress);
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
    const attempt = await this.#o.throttle.reserve(
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
      await attempt.failed(username, ++state.authFailures);
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
    const verdict = await attempt.failed(username, state.authFailures);
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
    this.#checkRcpt(address.address, session).then((refusal) => {
      if (refusal) this.#reject(session, "rcpt_to", refusal, { to: address.address });
      cb(refusal);
    }, (error) => cb(error));
  }

  async #checkRcpt(address: string, session: SMTPServerSession): Promise<SmtpRejection | null> {
    if (session.envelope.rcptTo.length >= this.#o.maxRecipients) {
      // RFC 5321 §4.5.3.1.10: 452, and the transaction goes on with those accepted.
      return new SmtpRejection(452, "4.5.3", "Too many recipients");
    }
    return checkRecipient(address) ??
      await this.#o.intake.checkSuppressed(address) ??
      // Nothing is queued over a user's sending limit; the client keeps the rest.
      await this.#o.intake.checkLimit(
        this.#state.get(session)?.user ?? null,
        session.envelope.rcptTo.length + 1,
      );
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
