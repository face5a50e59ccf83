import type { HostResult, RouteResult } from "../dns/mod.ts";
import {
  openSession as defaultOpenSession,
  type SessionOptions,
  SmtpError,
  type SmtpSession,
  type Timeouts,
  type TlsPolicy,
  type TransactionResult,
} from "../smtp_client/mod.ts";
import { fromReply, local, type Peer, type RecipientOutcome } from "./outcome.ts";
import { SessionPool } from "./session_pool.ts";
import type { ProviderShaper } from "./shaper.ts";
import type { ReplyLike } from "./shaping.ts";

/** The part of the resolver the transport needs (see `src/dns`). */
export interface RouteLookup {
  route(domain: string, opts?: { allowLoopback?: boolean }): Promise<RouteResult>;
  resolveHost(host: string): Promise<HostResult>;
}

/** A smarthost that receives all mail (`delivery.relay_host`). */
export interface Relay {
  host: string;
  port: number;
  username: string;
  password: string;
}

/** Options for {@linkcode SmtpTransport}. */
export interface SmtpTransportOptions {
  resolver: RouteLookup;
  heloName: string;
  /** Remote port for MX delivery (`delivery.port`). */
  port: number;
  /** `delivery.tls`. */
  tls: TlsPolicy;
  /** Local address to send from, "" for any (`delivery.source_address`). */
  sourceAddress: string;
  /** The smarthost, or null for MX delivery (`delivery.relay_host` and its credentials). */
  relay: Relay | null;
  /** Deliver to loopback and own addresses (tests; `delivery.allow_loopback`). */
  allowLoopback: boolean;
  /** Per-stage deadlines (see `stageTimeouts` in src/smtp_client). */
  timeouts: Partial<Timeouts>;
  /** Extra PEM CA certificates (`delivery.tls_ca_file`). */
  caCerts: string[];
  /** Addresses tried per attempt, like Postfix's smtp_mx_address_limit. @default 5 */
  maxAddresses?: number;
  /** The SMTP client edge. @default openSession */
  openSession?: (options: SessionOptions) => Promise<SmtpSession>;
  pool?: SessionPool;
  /** Provider limits and throttle rules (not used with a relay). @default null */
  shaper?: ProviderShaper | null;
}

/** One message's recipients at one destination domain. */
export interface AttemptRequest {
  from: string;
  domain: string;
  recipients: string[];
  body: Uint8Array;
  smtputf8: boolean;
  eightBit: boolean;
  /** The domain's route when already resolved (by the shaper). */
  route?: RouteResult;
  /** The shaper's destination, `provider:NAME` or `domain:DOMAIN`. */
  destination?: string;
}

interface Address {
  host: string;
  ip: string;
  /** The MX preference of the host (0 for a relay host). */
  preference: number;
}

/**
 * Makes one delivery attempt for one message at one domain and returns
 * each recipient's outcome as data; scheduling and retries belong to the
 * engine. Tries the domain's MX hosts and their addresses in order until
 * one holds a transaction, reusing an idle connection when there is one.
 */
export class SmtpTransport {
  #o: SmtpTransportOptions;
  #pool: SessionPool;
  #open: (options: SessionOptions) => Promise<SmtpSession>;

  constructor(options: SmtpTransportOptions) {
    this.#o = options;
    this.#pool = options.pool ?? new SessionPool();
    this.#open = options.openSession ?? defaultOpenSession;
  }

  /** Closes idle connections. */
  close(): Promise<void> {
    return this.#pool.closeAll();
  }

  /** One attempt; never throws. */
  async attempt(req: AttemptRequest): Promise<RecipientOutcome[]> {
    const relayKey = this.#o.relay ? `relay:${this.#o.relay.host}` : null;
    if (relayKey) {
      const pooled = this.#pool.take(relayKey);
      const outcomes = pooled && await this.#tryPooled(relayKey, pooled, req);
      if (outcomes) return outcomes;
    }
    const route = await this.#addresses(req.domain, req.route);
    if (!Array.isArray(route)) {
      return req.recipients.map((r) => local(r, route.kind, route.status, route.text));
    }
    // An idle connection is kept under the MX host's name, so it carries the
    // next message for any domain whose most preferred MX hosts include that
    // host (a campaign's domains hosted at one provider share connections).
    // The name, not only the address: with `delivery.tls: verify` the
    // certificate was checked against that name. A connection to a less
    // preferred host (the better ones failed) is reused only for the domain
    // that last used it. A provider's connections are keyed under the
    // provider too, as its connection limit counts them.
    const prefix = req.destination?.startsWith("provider:") ? req.destination : "mx";
    const keyOf = (address: Address) => relayKey ?? `${prefix}|${address.host}`;
    if (!relayKey) {
      const best = Math.min(...route.map((a) => a.preference));
      const tried = new Set<string>();
      for (const address of route) {
        const key = keyOf(address);
        if (tried.has(key)) continue;
        tried.add(key);
        const pooled = this.#pool.take(key, address.preference > best ? req.domain : undefined);
        if (!pooled) continue;
        const outcomes = await this.#tryPooled(key, pooled, req);
        if (outcomes) return outcomes;
        break;
      }
    }
    let last = local("", "temporary", "4.4.1", "No MX host could be reached");
    for (const address of route.slice(0, this.#o.maxAddresses ?? 5)) {
      const key = keyOf(address);
      const session = await this.#connect(address, req.destination).catch((error) => {
        last = local(
          "",
          "temporary",
          statusOf(error),
          messageOf(error),
          `${address.host}[${address.ip}]`,
        );
        if (error instanceof SmtpError && error.reply) {
          const throttled = this.#throttled(req, req.recipients, error.reply, last.remote);
          if (throttled) return throttled;
        }
        return null;
      });
      if (Array.isArray(session)) return session;
      if (!session) continue;
      const outcomes = await this.#transact(key, session, 0, req);
      if (outcomes) return outcomes;
      last = local(
        "",
        "temporary",
        "4.4.2",
        "Connection lost during the transaction",
        `${address.host}[${address.ip}]`,
      );
    }
    return req.recipients.map((r) => ({ ...last, address: r }));
  }

  /**
   * When a rule names `reply` as throttling: the destination is suspended or
   * slowed by the shaper and `recipients` are deferred (never bounced, even
   * on a 5xx), until the suspension ends when there is one. Null otherwise.
   */
  #throttled(
    req: AttemptRequest,
    recipients: string[],
    reply: ReplyLike,
    remote: string | null,
  ): RecipientOutcome[] | null {
    const shaper = this.#o.shaper;
    if (!shaper || !req.destination || this.#o.relay) return null;
    const hit = shaper.observe(req.destination, reply, remote);
    if (!hit) return null;
    return recipients.map((address) => ({
      ...local(
        address,
        "temporary",
        reply.enhanced?.replace(/^5/, "4") ?? "4.7.0",
        reply.text,
        remote,
      ),
      code: reply.code,
      notBefore: hit.notBefore ?? undefined,
    }));
  }

  async #tryPooled(
    key: string,
    pooled: { session: SmtpSession; used: number },
    req: AttemptRequest,
  ): Promise<RecipientOutcome[] | null> {
    // No RSET first: the previous transaction ended with the reply to its
    // final dot, which resets the state (RFC 5321 §4.1.1.4), and the session
    // sends RSET itself after one that did not end. A connection the server
    // dropped while idle fails at once or answers 421; either way the
    // attempt goes on with a new connection, so the round trip a liveness
    // RSET costs per message is saved.
    return await this.#transact(key, pooled.session, pooled.used, req, true);
  }

  // Runs the transaction; null when the connection failed before any reply
  // that decides the outcome, so the caller can try the next address.
  async #transact(
    key: string,
    session: SmtpSession,
    used: number,
    req: AttemptRequest,
    reused = false,
  ): Promise<RecipientOutcome[] | null> {
    const peer: Peer = { remote: `${session.host}[${session.remoteIp}]`, tls: session.tls };
    const done = new Map<string, RecipientOutcome>();
    let rest = req.recipients;
    let sent = 0;
    try {
      for (;;) {
        const result = await session.send({
          from: req.from,
          recipients: rest,
          body: req.body,
          smtputf8: req.smtputf8,
          eightBit: req.eightBit,
        });
        sent++;
        if (reused && sent === 1 && result.mail.code === 421) {
          session.close();
          return this.#throttled(req, req.recipients, result.mail, peer.remote);
        }
        const round = this.#checkThrottle(req, outcomesOf(result, peer));
        if (round.some((o) => o.notBefore !== undefined)) {
          // Told to back off: this connection carries nothing more now.
          session.close();
          for (const outcome of round) done.set(outcome.address, outcome);
          return req.recipients.map((r) => done.get(r) ?? { ...round[0], address: r });
        }
        for (const outcome of round) done.set(outcome.address, outcome);
        // RFC 5321 §4.5.3.1.10: a server that takes fewer recipients per
        // transaction answers 452 to the rest; they go in another
        // transaction at once, for as long as each one delivers some.
        const over = round.filter((o) => o.code === 452);
        if (!over.length || !round.some((o) => o.kind === "delivered") || !session.usable) break;
        rest = over.map((o) => o.address);
      }
      this.#pool.give(key, session, used + sent, this.#maxMessages(req), req.domain);
      return req.recipients.map((r) => done.get(r)!);
    } catch (error) {
      session.close();
      if (error instanceof SmtpError && error.reply) {
        const throttled = this.#throttled(req, rest, error.reply, peer.remote);
        if (throttled) {
          for (const outcome of throttled) done.set(outcome.address, outcome);
          return req.recipients.map((r) => done.get(r)!);
        }
      }
      return afterFailure(error, { recipients: req.recipients, done, open: rest, peer });
    }
  }

  /** Outcomes with each reply a rule names as throttling turned into a deferral. */
  #checkThrottle(req: AttemptRequest, outcomes: RecipientOutcome[]): RecipientOutcome[] {
    return outcomes.map((o) => {
      if (o.code === null || o.code < 400) return o;
      const reply = { code: o.code, enhanced: o.status, text: o.text };
      return this.#throttled(req, [o.address], reply, o.remote)?.[0] ?? o;
    });
  }

  #maxMessages(req: AttemptRequest): number | undefined {
    if (!req.destination || !this.#o.shaper) return undefined;
    return this.#o.shaper.messagesPerConnection(req.destination) ?? undefined;
  }

  async #addresses(
    domain: string,
    known?: RouteResult,
  ): Promise<Address[] | { kind: "temporary" | "permanent"; status: string; text: string }> {
    const relay = this.#o.relay;
    if (relay) {
      const host = await this.#o.resolver.resolveHost(relay.host);
      if (host.kind !== "ok") {
        return { kind: "temporary", status: host.status, text: `Relay host: ${host.text}` };
      }
      return host.addresses.map((ip) => ({ host: relay.host, ip, preference: 0 }));
    }
    const route = known ??
      await this.#o.resolver.route(domain, { allowLoopback: this.#o.allowLoopback });
    if (route.kind === "permanent") {
      return { kind: "permanent", status: route.status, text: route.text };
    }
    if (route.kind === "temporary") {
      return { kind: "temporary", status: route.status, text: route.text };
    }
    return route.targets.flatMap((t) =>
      t.addresses.map((ip) => ({ host: t.host, ip, preference: t.preference }))
    );
  }

  /**
   * Opens a connection; to a provider only once it has a free connection
   * (idle ones of the provider are closed to make room), given back when
   * the session closes.
   */
  async #connect(address: Address, destination?: string): Promise<SmtpSession> {
    const shaper = this.#o.shaper;
    if (!shaper || !destination || this.#o.relay) return await this.#dial(address);
    const release = await shaper.connection(destination, async () => {
      const idle = this.#pool.takeAny(`${destination}|`);
      if (!idle) return false;
      await idle.session.quit();
      return true;
    });
    let session: SmtpSession;
    try {
      session = await this.#dial(address);
    } catch (error) {
      release();
      throw error;
    }
    const close = session.close.bind(session);
    session.close = () => {
      close();
      release();
    };
    return session;
  }

  #dial(address: Address): Promise<SmtpSession> {
    const relay = this.#o.relay;
    return this.#open({
      host: address.host,
      ip: address.ip,
      port: relay ? relay.port : this.#o.port,
      heloName: this.#o.heloName,
      sourceAddress: this.#o.sourceAddress || undefined,
      // A smarthost with credentials always gets TLS: AUTH never goes in plaintext.
      tls: relay?.username && this.#o.tls === "opportunistic" ? "required" : this.#o.tls,
      implicitTls: relay ? relay.port === 465 : false,
      auth: relay?.username ? { username: relay.username, password: relay.password } : undefined,
      timeouts: this.#o.timeouts,
      caCerts: this.#o.caCerts,
    });
  }
}

/**
 * Outcomes when a transaction failed: a permanent refusal applies to the
 * recipients still open, a broken connection leaves them for a retry, and
 * what earlier transactions on the connection delivered stands. Null when
 * nothing was decided, so the caller can try the next address.
 */
function afterFailure(
  error: unknown,
  state: {
    recipients: string[];
    done: Map<string, RecipientOutcome>;
    open: string[];
    peer: Peer;
  },
): RecipientOutcome[] | null {
  const { recipients, done, open, peer } = state;
  const refusal = error instanceof SmtpError && error.reply && !error.temporary
    ? error.reply
    : null;
  if (done.size === 0) return refusal ? recipients.map((r) => fromReply(r, refusal, peer)) : null;
  const lost = local(
    "",
    "temporary",
    "4.4.2",
    "Connection lost during the transaction",
    peer.remote,
  );
  return recipients.map((r) =>
    !open.includes(r)
      ? done.get(r)!
      : refusal
      ? fromReply(r, refusal, peer)
      : { ...lost, address: r }
  );
}

/** Each recipient's outcome: its RCPT reply, or the reply to the final dot once accepted. */
function outcomesOf(result: TransactionResult, peer: Peer): RecipientOutcome[] {
  return result.recipients.map(({ address, reply }) => {
    const rcpt = fromReply(address, reply, peer);
    if (rcpt.kind !== "delivered" || !result.data) return rcpt;
    return fromReply(address, result.data, peer);
  });
}

function statusOf(error: unknown): string {
  // RFC 3463 X.7.5: TLS could not be negotiated (policy, or a broken or hostile STARTTLS).
  if (error instanceof SmtpError && (error.stage === "starttls" || error.stage === "tls")) {
    return "4.7.5";
  }
  if (error instanceof SmtpError && error.reply?.enhanced) {
    return error.reply.enhanced.replace(/^5/, "4");
  }
  return "4.4.1";
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
