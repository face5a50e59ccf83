import { randomBytes } from "node:crypto";
import {
  Authenticator,
  AuthThrottle,
  type LimitRecord,
  plaintextUsers,
  readUsersFile,
  SendingLimits,
  type User,
} from "../auth/mod.ts";
import {
  BUILTIN_PROVIDERS,
  BUILTIN_THROTTLE_RULES,
  type Config,
  ConfigError,
  loadConfig,
  type LoadedConfig,
  reason,
  splitHostPort,
} from "../config/mod.ts";
import {
  DeliveryEngine,
  mergeProviders,
  ProviderShaper,
  QueueIndex,
  SmtpTransport,
  type SmtpTransportOptions,
} from "../delivery/mod.ts";
import {
  DkimSigner,
  rotatingKeyConfig,
  ROTATION_STATE_FILE,
  RotationWatcher,
} from "../dkim/mod.ts";
import { type EmitEvent, EventStream, writeMailLog } from "../events/mod.ts";
import { Metrics } from "../http/mod.ts";
import { Resolver } from "../dns/mod.ts";
import { stageTimeouts } from "../smtp_client/mod.ts";
import { closeLogging, log, reopenLogFile, setupLogging } from "../log/mod.ts";
import { Spool, type SuppressionList } from "../spool/mod.ts";
import { type Intake, LocalConnectionGate, type SubmissionServer } from "../submission/mod.ts";
import {
  type Pending,
  postalSignatures,
  WebhookDispatcher,
  type WebhookTarget,
} from "../webhooks/mod.ts";
import { type ControlHandler, controlPath, ControlServer } from "./control.ts";
import { controlHandler, localSubmitHandler } from "./control_handler.ts";
import { startStatusServer } from "./status_server.ts";
import { buildIntake, buildSubmission } from "./build_intake.ts";
import { IntakePool } from "./intake_pool.ts";
import { CliError } from "./errors.ts";
import { prepareDataFolder } from "./first_start.ts";
import { loadTlsPair } from "./tls.ts";

const logger = log("serve");

/**
 * What a stop gives a client to finish its message, and deliveries in
 * flight to get their answer (webhook posts get 2 s more); those still
 * waiting then are abandoned and retried after the restart. Under 10 s in
 * all, near `postfix stop`, far within systemd's TimeoutStopSec (90 s).
 */
const STOP_GRACE_MS = 5_000;

/**
 * `minimta serve`: the one place the daemon is wired together. Loads keys,
 * users and the spool, starts the intake, and handles SIGTERM/SIGINT (stop,
 * exit 0), SIGHUP (reload users and DKIM keys) and SIGUSR1 (reopen the log
 * file).
 */
export async function serve(loaded: LoadedConfig): Promise<number> {
  const { config } = loaded;
  setupLogging({
    level: config.log.level,
    format: config.log.format,
    file: config.log.file,
    maxSize: config.log.max_size,
    maxFiles: config.log.max_files,
  });
  if (loaded.embedded) await prepareDataFolder(config);
  const parts = await loadParts(loaded);
  let spool: Spool;
  try {
    spool = await Spool.open(config.queue.dir, { fsync: config.queue.fsync });
  } catch (error) {
    throw new CliError(
      `Cannot use the spool folder "${config.queue.dir}" (queue.dir): ${reason(error)}`,
      { cause: error },
    );
  }
  if (!(await lockSpool(spool))) {
    throw new CliError(`Spool "${config.queue.dir}" is in use by another minimta process`);
  }
  // Start-up repair fills the queue index as it reads, one batch of full
  // metadata alive at a time; the engine schedules from the index. After a
  // clean stop the index it left is taken instead, if the spool has not
  // changed since (then no metadata file is read).
  const snapshot = await indexFromSnapshot(spool);
  let index = new QueueIndex();
  const report = await spool.recover({
    onMessage: (meta) => index.set(meta),
    expected: snapshot ?? undefined,
  });
  if (report.matched) index = snapshot!;
  else if (snapshot) {
    logger.info("Reading every message: an interrupted write left temporary files in the spool");
  }
  for (const q of report.quarantined) {
    logger.warn("Moved corrupt queue entry {id} to corrupt/: {reason}", {
      id: q.id,
      reason: q.reason,
    });
  }
  for (const u of report.unreadable) {
    logger.error("Queue entry {id} is not delivered: {reason}, then restart minimta", {
      id: u.id,
      reason: u.reason,
    });
  }
  if (report.tmpRemoved.length || report.orphanBodiesRemoved.length) {
    logger.info("Removed {tmp} temporary and {orphans} orphaned files from the spool", {
      tmp: report.tmpRemoved.length,
      orphans: report.orphanBodiesRemoved.length,
    });
  }
  parts.rotation.start(config.dkim_rotation_check);
  const suppressions = await openSuppressions(spool, config);
  const enabled = config.suppression.enabled ? suppressions : null;
  // Every mail event goes to the mail log, the metrics and the webhooks.
  const events = new EventStream();
  const metrics = new Metrics();
  const webhooks = config.webhooks.length
    ? new WebhookDispatcher({
      targets: await webhookTargets(loaded),
      outbox: await spool.outbox<Pending>("webhooks"),
    })
    : null;
  events.on(writeMailLog);
  events.on(metrics.record);
  if (webhooks) events.on(webhooks.record, webhooks.stored);
  // Per-user counts live in <spool>/limits/, one small file a user.
  const limits = await SendingLimits.open(await spool.outbox<LimitRecord>("limits"));
  const intake = buildIntake(config, {
    spool,
    sign: (message, domain) => parts.signer.sign(message, domain),
    suppressions: enabled,
    emit: events.emit,
    limits,
  });
  const throttle = new AuthThrottle({
    failureDelayMs: config.auth.failure_delay,
    maxPerConnection: config.auth.max_failures_per_connection,
    maxPerIp: config.auth.max_failures_per_ip,
    windowMs: config.auth.failure_window,
  });
  const workers = intakeWorkers(config);
  // One thread: the server is built here. More: each worker builds its own,
  // and asks this thread for what must be one view (intake_pool.ts).
  const submission: IntakeServer = workers === 1
    ? buildSubmission(config, {
      cert: parts.cert,
      key: parts.key,
      emit: events.emit,
      intake,
      authenticator: parts.authenticator,
      throttle,
    })
    : new IntakePool({
      loaded,
      workers,
      cert: parts.cert,
      key: parts.key,
      users: parts.users,
      authKey: parts.authKey,
      throttle,
      checks: {
        checkSuppressed: (address) => intake.checkSuppressed(address),
        checkLimit: (user, pending) => intake.checkLimit(user, pending),
        count: (username, recipients) => limits.add(username, recipients),
      },
      dkim: parts.dkim,
      gate: new LocalConnectionGate({
        maxConnections: config.server.max_connections,
        maxConnectionsPerIp: config.server.max_connections_per_ip,
      }),
      emit: events.emit,
      queued: (meta) => {
        if (!engine.index.get(meta.id)) engine.schedule(meta);
      },
      adopt: () => adoptStored(spool, engine),
    });
  const pool = submission instanceof IntakePool ? submission : null;
  // A DKIM rotation switch in this thread: the workers sign with the new keys too.
  parts.signerChanged = (dkim) => void pool?.reload(null, dkim);
  const transport = transportOptions(config, parts.caCerts);
  const shaper = buildShaper(config, transport, spool, events.emit);
  await shaper?.load();
  transport.shaper = shaper;
  const engine = new DeliveryEngine({
    spool,
    transport: new SmtpTransport(transport),
    shaper,
    hostname: config.server.hostname,
    concurrency: config.delivery.concurrency,
    perDomainConcurrency: config.delivery.per_domain_concurrency,
    retrySchedule: config.delivery.retry_schedule,
    maxQueueLifetimeMs: config.delivery.max_queue_lifetime,
    delayWarningMs: config.delivery.delay_warning,
    emit: events.emit,
    eventsStored: events.stored,
    suppressions: enabled,
    index,
  });
  webhooks?.start();
  await engine.start("index");
  const http = config.http.listen_addr
    ? startStatusServer(config, {
      engine,
      spool,
      submission,
      authenticator: parts.authenticator,
      metrics,
      emit: events.emit,
      suppressions,
      limits,
    })
    : null;
  const control = await ControlServer.listen(
    controlPath(config.queue.dir),
    withTestHooks(
      controlHandler(engine, intake, {
        hostname: config.server.hostname,
        reloadAll: () => reload(loaded, parts, pool),
        suppressions,
        emit: events.emit,
      }),
      pool,
    ),
  );
  const local = await listenLocal(config, intake);
  // Intake workers start one by one and a port accepts once the first
  // listens: a stop asked for meanwhile is honoured once all are up.
  // (SIGHUP too: its default would end the process.)
  let stopAsked = false;
  let reloadAsked = false;
  const askStop = () => (stopAsked = true);
  const askReload = () => (reloadAsked = true);
  Deno.addSignalListener("SIGTERM", askStop);
  Deno.addSignalListener("SIGINT", askStop);
  Deno.addSignalListener("SIGHUP", askReload);
  try {
    await submission.listen();
  } catch (error) {
    throw new CliError(
      `Cannot listen on ${config.server.listen_addr} / ${config.server.listen_tls_addr}: ${
        reason(error)
      }`,
      { cause: error },
    );
  }
  logger.info(
    "minimta listening: submission {plain} (STARTTLS), {tls} (TLS); {messages} messages in the queue",
    {
      plain: config.server.listen_addr || "off",
      tls: config.server.listen_tls_addr || "off",
      messages: report.messages,
    },
  );
  if (pool) logger.info("Intake on {workers} worker threads", { workers });
  // After the ports accept, so the collection does not delay the start.
  setTimeout(collectStartupGarbage, 0);
  Deno.removeSignalListener("SIGTERM", askStop);
  Deno.removeSignalListener("SIGINT", askStop);
  Deno.removeSignalListener("SIGHUP", askReload);
  if (reloadAsked && !stopAsked) void reload(loaded, parts, pool);
  return await waitForSignals({
    stopNow: stopAsked,
    reload: () => reload(loaded, parts, pool),
    stop: async () => {
      logger.info(
        "Stopping: no new connections; idle sessions closed, messages in progress get {grace} s",
        { grace: STOP_GRACE_MS / 1000 },
      );
      await http?.shutdown();
      // The control and local sockets stay open meanwhile, so `minimta
      // sendmail` still queues (delivered after the restart); once they are
      // closed it waits for the spool lock and writes to the spool itself.
      await Promise.all([
        submission.close(STOP_GRACE_MS),
        // Webhook events of the last deliveries are stored before it stops.
        engine.stop(STOP_GRACE_MS).then(() => webhooks && bounded(webhooks.stop(), 2_000)),
      ]);
      await control.close();
      await local?.close();
      // Nothing else writes messages now: the index is left for the next start.
      if (!engine.abandoned) {
        await spool.saveSnapshot(engine.index).catch((error) =>
          logger.warn("Cannot leave the queue index for the next start: {error}", {
            error: reason(error),
          })
        );
      }
      await parts.rotation.stop();
      spool.close();
      logger.info("Stopped");
      closeLogging();
    },
  });
}

/**
 * The queue index the last clean stop left (Spool.takeSnapshot), checked
 * entry by entry; null when there is none or it cannot be used (logged).
 */
async function indexFromSnapshot(spool: Spool): Promise<QueueIndex | null> {
  const taken = await spool.takeSnapshot().catch((error) => ({ stale: reason(error) }));
  if (taken === null) return null;
  if ("stale" in taken) {
    logger.info(
      "Reading every message: the queue index left at the last stop is stale ({reason})",
      {
        reason: taken.stale,
      },
    );
    return null;
  }
  try {
    return QueueIndex.fromSnapshot(taken.lines);
  } catch (error) {
    logger.warn(
      "Reading every message: the queue index left at the last stop in {dir} is unusable: {reason}",
      {
        dir: spool.dir,
        reason: reason(error),
      },
    );
    return null;
  }
}

// Read and compacted at start-up (removed and expired entries dropped);
// kept open even when suppression is off, so the CLI can still edit it.
async function openSuppressions(spool: Spool, config: Config): Promise<SuppressionList> {
  try {
    const list = await spool.suppressions({ ttlMs: config.suppression.ttl });
    await list.compact();
    return list;
  } catch (error) {
    throw new CliError(
      `Cannot read the suppression list in "${config.queue.dir}" (queue.dir): ${reason(error)}`,
      { cause: error },
    );
  }
}

/** The `webhooks[]` of the config as the dispatcher takes them, Postal signing keys read. */
async function webhookTargets(loaded: LoadedConfig): Promise<WebhookTarget[]> {
  return await Promise.all(loaded.config.webhooks.map(async (w, i) => {
    let signingKey: string | null = null;
    if (w.signing_key_file) {
      try {
        signingKey = await Deno.readTextFile(w.signing_key_file);
        postalSignatures(signingKey, ""); // a key that cannot sign fails here, not per event
      } catch (error) {
        throw new ConfigError(
          loaded.source,
          `webhooks[${i}].signing_key_file`,
          `cannot use "${w.signing_key_file}" as an RSA private key: ${reason(error)}`,
          { cause: error },
        );
      }
    }
    return {
      url: w.url,
      events: [...w.events],
      secret: w.secret,
      format: w.format,
      username: w.username,
      password: w.password,
      signingKey,
    };
  }));
}

interface Parts {
  cert: string;
  key: string;
  caCerts: string[];
  users: User[];
  /** The HMAC key of login attempts, shared with the intake workers. */
  authKey: Uint8Array;
  authenticator: Authenticator;
  signer: DkimSigner;
  /** The `dkim` entries `signer` was built from (reread on SIGHUP). */
  dkim: Config["dkim"];
  /** Called when a rotation switch replaced `signer` (tells the intake workers). */
  signerChanged?: (dkim: Config["dkim"]) => void;
  /** Switches DKIM keys rotated by `minimta dkim rotate` once their records are in DNS. */
  rotation: RotationWatcher;
}

/** What the daemon uses of its submission server: one, or the intake workers. */
type IntakeServer = Pick<
  SubmissionServer,
  "listen" | "close" | "ports" | "listening" | "connections"
>;

/**
 * A full garbage collection once the daemon is up. Reading every
 * metadata file at start-up leaves the heap grown by what was parsed and
 * dropped (with 100,000 messages queued, 162 MiB RSS against 143 MiB after
 * this), and V8 does not shrink it on its own while the daemon idles. The
 * start task (deno.json), and so the compiled binary, runs with
 * `--expose-gc`; without it this does nothing.
 */
function collectStartupGarbage(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return;
  const started = performance.now();
  gc();
  logger.debug("Start-up garbage collected in {ms} ms", {
    ms: Math.round(performance.now() - started),
  });
}

/**
 * `server.workers`: 0 means one per CPU; "auto" one per CPU, at most
 * {@linkcode AUTO_WORKERS_MAX}, when the daemon signs (a DKIM key is
 * configured), else 1, as workers pay for themselves only with CPU-bound
 * work to spread (README, "Intake workers").
 */
function intakeWorkers(config: Config): number {
  const cpus = Math.max(1, navigator.hardwareConcurrency || 1);
  const workers = config.server.workers;
  if (workers === "auto") return config.dkim.length ? Math.min(cpus, AUTO_WORKERS_MAX) : 1;
  return workers || cpus;
}

// Each worker holds about 30 MiB more at rest, and past a few signing
// workers the main thread (delivery, the one view of limits) is the limit.
const AUTO_WORKERS_MAX = 4;

/**
 * After an intake worker died: messages it stored whose announcement never
 * arrived are put on the delivery schedule from the spool.
 */
async function adoptStored(spool: Spool, engine: DeliveryEngine): Promise<void> {
  for (const id of await spool.ids()) {
    if (engine.index.get(id)) continue;
    try {
      engine.schedule(await spool.get(id));
    } catch {
      // Delivered and removed meanwhile, or being written: the worker's own message or the next start brings it.
    }
  }
}

/**
 * Test-only control command `test-crash-worker` (kills intake worker 1),
 * honoured only when the daemon was started with MINIMTA_TEST_HOOKS=1. The
 * control socket is the daemon user's alone; nothing on SMTP reaches it.
 */
function withTestHooks(handler: ControlHandler, pool: IntakePool | null): ControlHandler {
  let enabled = false;
  try {
    enabled = Deno.env.get("MINIMTA_TEST_HOOKS") === "1";
  } catch {
    // No permission to read it: the hooks stay off.
  }
  if (!enabled) return handler;
  return (req) => {
    if ((req.command as string) !== "test-crash-worker") return handler(req);
    const crashed = pool?.crash(1) ?? false;
    return Promise.resolve(
      crashed
        ? { ok: true, lines: ["intake worker 1 told to crash"] }
        : { ok: false, lines: [], error: "no intake worker" },
    );
  };
}

async function loadParts(loaded: LoadedConfig): Promise<Parts> {
  const { config, source } = loaded;
  const readPem = async (key: string, path: string) => {
    try {
      return await Deno.readTextFile(path);
    } catch (error) {
      throw new ConfigError(source, key, `cannot read "${path}": ${reason(error)}`, {
        cause: error,
      });
    }
  };
  const { cert, key } = await loadTlsPair(loaded);
  const caCerts = config.delivery.tls_ca_file
    ? [await readPem("delivery.tls_ca_file", config.delivery.tls_ca_file)]
    : [];
  const users = await readUsersFile(config.auth.users_file);
  warnPlaintext(users);
  warnTrusted(config);
  const authKey = new Uint8Array(randomBytes(32));
  const parts = {
    cert,
    key,
    caCerts,
    users,
    authKey,
    authenticator: new Authenticator(users, { key: authKey }),
    dkim: config.dkim,
  } as Parts;
  parts.rotation = dkimRotation(config, config.dkim, parts);
  parts.signer = new DkimSigner(await parts.rotation.load());
  return parts;
}

/**
 * The watcher of rotated DKIM keys for the `dkim` entries: on a switch it
 * replaces the signer the intake uses and says what DNS must keep.
 */
function dkimRotation(
  config: Config,
  dkim: Config["dkim"],
  parts: Pick<Parts, "signer" | "signerChanged">,
): RotationWatcher {
  const resolver = new Resolver({ servers: config.delivery.dns_servers });
  return new RotationWatcher({
    entries: dkim.map(rotatingKeyConfig),
    statePath: `${config.queue.dir}/${ROTATION_STATE_FILE}`,
    resolveTxt: (name) => resolver.resolveTxt(name),
    onSwitch: (keys, change) => {
      parts.signer = new DkimSigner(keys);
      parts.signerChanged?.(dkim);
      logger.info(
        "DKIM for {domain} now signs with selector {to}, whose record is in DNS; keep {from}._domainkey.{domain} published until {until}",
        { ...change, until: change.keepUntil.toISOString(), keepUntil: undefined },
      );
    },
    onError: (error, name) => {
      logger.warn("DKIM rotation: cannot check {name} in DNS, trying again later: {error}", {
        name,
        error: reason(error),
      });
    },
  });
}

function warnPlaintext(users: Awaited<ReturnType<typeof readUsersFile>>): void {
  const plain = plaintextUsers(users);
  if (plain.length) {
    logger.warn(
      "{count} user(s) have plaintext passwords ({users}); set hashed ones with `minimta user passwd`",
      {
        count: plain.length,
        users: plain.join(", "),
      },
    );
  }
}

function warnTrusted(config: Config): void {
  const open = config.server.trusted_networks.filter((c) => !/^(127\.|::1(\/128)?$)/.test(c));
  if (open.length) {
    logger.warn("server.trusted_networks lets {networks} submit without authentication", {
      networks: open.join(", "),
    });
  }
}

async function reload(loaded: LoadedConfig, parts: Parts, pool: IntakePool | null): Promise<void> {
  let users: User[] | null = null;
  let usersError: unknown = null;
  try {
    users = await readUsersFile(loaded.config.auth.users_file);
  } catch (error) {
    usersError = error;
  }
  let dkimError: unknown = null;
  try {
    // The dkim entries are read again: `minimta dkim rotate` edits them.
    const dkim = loaded.embedded
      ? loaded.config.dkim
      : (await loadConfig({ path: loaded.source, checkFiles: false })).config.dkim;
    const rotation = dkimRotation(loaded.config, dkim, parts);
    const keys = await rotation.load();
    await parts.rotation.stop();
    parts.rotation = rotation;
    parts.signer = new DkimSigner(keys);
    parts.dkim = dkim;
    rotation.start(loaded.config.dkim_rotation_check);
  } catch (error) {
    dkimError = error;
  }
  // The workers too: once "Reloaded" is logged, every thread has the new users and keys.
  await pool?.reload(users, dkimError ? null : parts.dkim);
  if (users) {
    parts.users = users;
    parts.authenticator.replaceUsers(users);
    warnPlaintext(users);
    logger.info("Reloaded {count} users", { count: users.length });
  } else {
    logger.error("Users not reloaded, keeping the old ones: {error}", {
      error: (usersError as Error).message,
    });
  }
  if (dkimError) {
    logger.error("DKIM keys not reloaded, keeping the old ones: {error}", {
      error: (dkimError as Error).message,
    });
  } else {
    logger.info("Reloaded DKIM keys");
  }
}

/**
 * Limits per mailbox provider and throttle rules over the transport's
 * resolver; none with a smarthost, which shapes its own traffic. State that
 * outlives a restart (suspensions, warm-up counts) is the spool's
 * `throttle.json`.
 */
function buildShaper(
  config: Config,
  transport: SmtpTransportOptions,
  spool: Spool,
  emit: EmitEvent,
): ProviderShaper | null {
  const d = config.delivery;
  if (d.relay_host) return null;
  return new ProviderShaper({
    providers: mergeProviders(structuredClone(BUILTIN_PROVIDERS), structuredClone(d.providers)),
    rules: [...d.throttle_rules, ...BUILTIN_THROTTLE_RULES].map((r) => ({ ...r })),
    perDomainConcurrency: d.per_domain_concurrency,
    probeIntervalMs: d.retry_schedule[0],
    warmup: d.warmup.map((w) => ({ ...w })),
    route: (domain) => transport.resolver.route(domain, { allowLoopback: d.allow_loopback }),
    store: {
      read: () => spool.readState("throttle"),
      write: (value) => spool.writeState("throttle", value),
    },
    emit,
  });
}

/** How long the delivery engine uses a found MX route again (Resolver.routeCacheMs). */
const ROUTE_CACHE_MS = 60_000;

function transportOptions(config: Config, caCerts: string[]): SmtpTransportOptions {
  const d = config.delivery;
  const relay = d.relay_host ? splitHostPort(d.relay_host)! : null;
  return {
    // A route found is used again for a minute: one MX and address lookup per domain,
    // not per message, on a campaign's burst (README, "How a message flows").
    resolver: new Resolver({ servers: d.dns_servers, routeCacheMs: ROUTE_CACHE_MS }),
    heloName: d.helo_name || config.server.hostname,
    port: d.port,
    tls: d.tls,
    sourceAddress: d.source_address,
    relay: relay &&
      {
        host: relay.host,
        port: relay.port,
        username: d.relay_username,
        password: d.relay_password,
      },
    allowLoopback: d.allow_loopback,
    caCerts,
    timeouts: stageTimeouts({
      connect: d.connect_timeout,
      command: d.command_timeout,
      data: d.data_timeout,
    }),
  };
}

/**
 * Takes the spool lock, waiting a few seconds for it: a `minimta sendmail`
 * that wrote to the spool while no daemon ran holds it for a moment, and a
 * restart must not fail for that. Another daemon holds it for good.
 */
async function lockSpool(spool: Spool): Promise<boolean> {
  for (let waited = 0; !(await spool.lock()); waited += 100) {
    if (waited >= 5_000) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
  return true;
}

/** Waits for `work`, but no longer than `ms`; what it leaves undone is retried after the restart. */
async function bounded(work: Promise<void>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([work, new Promise((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}

function waitForSignals(
  handlers: { reload: () => Promise<void>; stop: () => Promise<void>; stopNow?: boolean },
): Promise<number> {
  return new Promise((resolve) => {
    let stopping = false;
    const stop = () => {
      if (stopping) return;
      stopping = true;
      handlers.stop().then(() => resolve(0), () => resolve(1));
    };
    Deno.addSignalListener("SIGTERM", stop);
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGHUP", () => void handlers.reload());
    // After an outside logrotate moved log.file away: new lines go to a new file.
    Deno.addSignalListener("SIGUSR1", () => {
      reopenLogFile();
      logger.info("Reopened the log file");
    });
    if (handlers.stopNow) stop();
  });
}

/**
 * The local submission socket (`server.local_socket`): mode 0666 in a
 * world-searchable folder, so any local user's `minimta sendmail` (cron,
 * PHP's mail()) can hand over mail, as Postfix's sendmail can. Not having it
 * is not fatal: root and the minimta user still use the control socket.
 */
async function listenLocal(config: Config, intake: Intake): Promise<ControlServer | null> {
  const path = config.server.local_socket;
  if (!path) return null;
  try {
    const dir = path.slice(0, path.lastIndexOf("/")) || "/";
    try {
      await Deno.mkdir(dir);
      await Deno.chmod(dir, 0o755); // whatever the umask: other users must reach the socket
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    }
    const server = await ControlServer.listen(
      path,
      localSubmitHandler(intake, config.server.hostname),
      {
        mode: 0o666,
        // A base64 message in JSON, at most max_message_size of it.
        maxRequest: Math.ceil(config.server.max_message_size * 4 / 3) + 64 * 1024,
        maxConcurrent: 10,
      },
    );
    logger.info("Local submission socket {path}", { path });
    return server;
  } catch (error) {
    logger.warn(
      "No local submission socket at {path} ({error}): only root and the minimta user can use minimta sendmail",
      { path, error: reason(error) },
    );
    return null;
  }
}
