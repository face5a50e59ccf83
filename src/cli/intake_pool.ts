/**
 * @module
 * The main thread's side of the intake workers (`server.workers` > 1). Each
 * worker (src/cli/intake_worker.ts) runs an SMTP submission server on the
 * same ports; this pool starts them, answers what must be one view across
 * them (connection limits, the AUTH throttle, the suppression list, the
 * sending limits, the DKIM keys signed with), hands their mail events to
 * the daemon's EventStream and their queued messages to the delivery
 * engine, and restarts a worker that dies.
 */
import type { AuthAttempt, AuthThrottle, User } from "../auth/mod.ts";
import type { Config, LoadedConfig } from "../config/mod.ts";
import type { EmitEvent } from "../events/mod.ts";
import { log } from "../log/mod.ts";
import type { MessageMeta } from "../spool/mod.ts";
import type { LocalConnectionGate, SharedChecks, SmtpRejection } from "../submission/mod.ts";
import type { FromWorker, Refusal, ToWorker } from "./intake_protocol.ts";
import { PostBatch } from "./post_batch.ts";

/** Options for {@linkcode IntakePool}. */
export interface IntakePoolOptions {
  loaded: LoadedConfig;
  /** Number of workers (≥ 2). */
  workers: number;
  cert: string;
  key: string;
  users: User[];
  /** The HMAC key every worker's `Authenticator` shares. */
  authKey: Uint8Array;
  /** The one AUTH throttle of the daemon. */
  throttle: AuthThrottle;
  /** The one count of open connections (per IP and in all). */
  gate: LocalConnectionGate;
  /** The main thread's suppression list and sending limits (its intake's checks). */
  checks: SharedChecks;
  /** The `dkim` entries the main thread signs with. */
  dkim: Config["dkim"];
  /** The daemon's EventStream. */
  emit: EmitEvent;
  /** A message a worker stored (posted in the turn of its 250). */
  queued: (meta: MessageMeta) => void;
  /**
   * After a worker died: whatever it stored but had not yet announced must
   * reach the delivery engine (the daemon rescans the spool).
   */
  adopt: () => Promise<void>;
}

interface Slot {
  index: number;
  worker: Worker | null;
  /** What goes to `worker`, in batches (post_batch.ts). */
  out: PostBatch<ToWorker> | null;
  listening: boolean;
  ports: number[];
  /** Connections admitted through this worker, by IP (released if it dies). */
  ips: Map<string, number>;
  /** AUTH attempts reserved by this worker and not yet settled. */
  attempts: Map<number, AuthAttempt>;
  started: { resolve: () => void; reject: (error: Error) => void } | null;
  /** Reloads sent and not yet acknowledged, in order. */
  reloaded: (() => void)[];
  closed: (() => void) | null;
  crashes: number[];
}

const logger = log("workers");
/** The answer to a check that failed in the main thread: RFC 3463 4.3.0, the client retries. */
const TRY_LATER: Refusal = { code: 451, message: "4.3.0 Temporary failure, try again later" };
const WORKER_URL = new URL("./intake_worker.ts", import.meta.url).href;

/** The intake workers, seen from the main thread as one submission server. */
export class IntakePool {
  #o: IntakePoolOptions;
  #slots: Slot[];
  #attempts = 0;
  #users: User[];
  #dkim: Config["dkim"];
  #closing = false;

  constructor(options: IntakePoolOptions) {
    this.#o = options;
    this.#users = options.users;
    this.#dkim = options.dkim;
    this.#slots = Array.from({ length: options.workers }, (_, i) => ({
      index: i + 1,
      worker: null,
      out: null,
      listening: false,
      ports: [],
      ips: new Map(),
      attempts: new Map(),
      started: null,
      reloaded: [],
      closed: null,
      crashes: [],
    }));
  }

  /** Starts every worker; resolves once all listen, rejects if one cannot. */
  async listen(): Promise<void> {
    try {
      await Promise.all(this.#slots.map((slot) => this.#spawn(slot)));
    } catch (error) {
      for (const slot of this.#slots) slot.worker?.terminate();
      throw error;
    }
  }

  /** The bound ports, as `SubmissionServer.ports`. */
  get ports(): number[] {
    return this.#slots.find((s) => s.listening)?.ports ?? [];
  }

  /** True while every worker listens. */
  get listening(): boolean {
    return this.#slots.every((s) => s.listening);
  }

  /** Open client connections across all workers. */
  get connections(): number {
    return this.#o.gate.open;
  }

  /**
   * SIGHUP or a DKIM rotation switch: hands the new users (null: keep the
   * old ones) and the `dkim` entries the main thread now signs with (null:
   * keep the keys) to every worker; resolves once all have them.
   */
  reload(users: User[] | null, dkim: Config["dkim"] | null): Promise<void> {
    if (users) this.#users = users;
    if (dkim) this.#dkim = dkim;
    return Promise.all(this.#slots.map((slot) =>
      new Promise<void>((resolve) => {
        if (!slot.worker || !slot.listening) return resolve(); // a restart gets the new ones
        slot.reloaded.push(resolve);
        this.#send(slot, { t: "reload", users, dkim });
      })
    )).then(() => {});
  }

  /**
   * SIGTERM: every worker closes its server as `SubmissionServer.close`
   * does (421 4.3.2, messages in progress get `graceMs`) and says so.
   */
  close(graceMs: number): Promise<void> {
    this.#closing = true;
    return Promise.all(this.#slots.map((slot) =>
      new Promise<void>((resolve) => {
        if (!slot.worker) return resolve();
        const timer = setTimeout(done, graceMs + 2_000);
        function done() {
          clearTimeout(timer);
          resolve();
        }
        slot.closed = done;
        this.#send(slot, { t: "close", graceMs });
      }).then(() => {
        this.#stop(slot);
        slot.listening = false;
      })
    )).then(() => {});
  }

  /** Test hook: makes worker `index` (from 1) throw an uncaught error. */
  crash(index: number): boolean {
    const slot = this.#slots[index - 1];
    if (!slot?.worker) return false;
    this.#send(slot, { t: "crash" });
    return true;
  }

  // Ends the slot's worker thread and its outgoing batches.
  #stop(slot: Slot): void {
    slot.worker?.terminate();
    slot.worker = null;
    slot.out = null;
  }

  #send(slot: Slot, message: ToWorker): void {
    slot.out?.post(message);
  }

  #spawn(slot: Slot): Promise<void> {
    const worker = new Worker(WORKER_URL, { type: "module", name: `intake-${slot.index}` });
    slot.worker = worker;
    slot.out = new PostBatch<ToWorker>(worker);
    slot.listening = false;
    worker.onmessage = (event: MessageEvent<FromWorker[]>) => {
      for (const message of event.data) this.#handle(slot, message);
    };
    worker.onmessageerror = () =>
      logger.error("Unreadable message from intake worker {index}", { index: slot.index });
    worker.onerror = (event: ErrorEvent) => {
      // Handled here: an uncaught error in a worker must not end the daemon.
      event.preventDefault();
      this.#died(slot, worker, event.message);
    };
    const started = new Promise<void>((resolve, reject) => (slot.started = { resolve, reject }));
    const o = this.#o;
    this.#send(slot, {
      t: "init",
      index: slot.index,
      loaded: o.loaded,
      cert: o.cert,
      key: o.key,
      users: this.#users,
      authKey: o.authKey,
      dkim: this.#dkim,
    });
    return started;
  }

  #handle(slot: Slot, m: FromWorker): void {
    const o = this.#o;
    switch (m.t) {
      case "listening":
        slot.listening = true;
        slot.ports = m.ports;
        slot.started?.resolve();
        slot.started = null;
        break;
      case "start_failed":
        this.#stop(slot);
        slot.started?.reject(new Error(m.error));
        slot.started = null;
        break;
      case "event":
        o.emit(m.event);
        break;
      case "queued":
        o.queued(m.meta);
        break;
      case "admit": {
        const verdict = o.gate.admit(m.ip, m.trusted);
        if (verdict === "ok") slot.ips.set(m.ip, (slot.ips.get(m.ip) ?? 0) + 1);
        this.#send(slot, { t: "reply", id: m.id, value: verdict });
        break;
      }
      case "release": {
        const open = slot.ips.get(m.ip) ?? 0;
        if (open === 0) break;
        if (open > 1) slot.ips.set(m.ip, open - 1);
        else slot.ips.delete(m.ip);
        o.gate.release(m.ip);
        break;
      }
      case "reserve": {
        const attempt = o.throttle.reserve(m.ip, m.key);
        let value: number | null = null;
        if (attempt) {
          value = ++this.#attempts;
          slot.attempts.set(value, attempt);
        }
        this.#send(slot, { t: "reply", id: m.id, value });
        break;
      }
      case "failed": {
        const attempt = slot.attempts.get(m.attempt);
        slot.attempts.delete(m.attempt);
        const value = attempt
          ? attempt.failed(m.username, m.failures)
          : { delayMs: 0, disconnect: false };
        this.#send(slot, { t: "reply", id: m.id, value });
        break;
      }
      case "succeeded":
        slot.attempts.get(m.attempt)?.succeeded(m.username);
        slot.attempts.delete(m.attempt);
        break;
      case "suppressed":
        this.#answer(slot, m.id, o.checks.checkSuppressed(m.address).then(refusal), TRY_LATER);
        break;
      case "limit":
        this.#answer(slot, m.id, o.checks.checkLimit(m.user, m.pending).then(refusal), TRY_LATER);
        break;
      case "count":
        this.#answer(slot, m.id, o.checks.count(m.username, m.recipients).then(() => null), null);
        break;
      case "reloaded":
        slot.reloaded.shift()?.();
        break;
      case "closed":
        slot.closed?.();
        slot.closed = null;
        break;
    }
  }

  /** Replies to request `id` once `value` settles; a failure is logged and answered `failed`. */
  #answer(slot: Slot, id: number, value: Promise<unknown>, failed: unknown): void {
    const worker = slot.worker;
    value.catch((error) => {
      logger.error("Intake worker {index}: request failed: {error}", {
        index: slot.index,
        error: String(error),
      });
      return failed;
    }).then((value) => {
      if (slot.worker === worker) this.#send(slot, { t: "reply", id, value });
    });
  }

  /**
   * A worker died (an uncaught error). Mail it answered 250 for is in the
   * spool already (the 250 follows the fsync); what it held open is given
   * back, and it is started again unless the daemon is stopping.
   */
  #died(slot: Slot, worker: Worker, error: string): void {
    if (slot.worker !== worker) return;
    this.#stop(slot);
    const wasListening = slot.listening;
    slot.listening = false;
    for (const [ip, open] of slot.ips) for (let i = 0; i < open; i++) this.#o.gate.release(ip);
    slot.ips.clear();
    // An attempt it never settled counts as a failure (its slot stays used).
    for (const attempt of slot.attempts.values()) attempt.failed("", 0);
    slot.attempts.clear();
    for (const done of slot.reloaded.splice(0)) done();
    if (slot.started) {
      slot.started.reject(new Error(`intake worker ${slot.index} failed to start: ${error}`));
      slot.started = null;
      return;
    }
    if (this.#closing || !wasListening) {
      slot.closed?.();
      slot.closed = null;
      return;
    }
    const now = Date.now();
    slot.crashes = [...slot.crashes.filter((t) => t > now - 60_000), now];
    // Back off when it keeps dying: 0.1 s, 0.2 s, … up to 10 s.
    const wait = Math.min(100 * 2 ** (slot.crashes.length - 1), 10_000);
    logger.error("Intake worker {index} stopped: {error}; restarting it in {wait} ms", {
      index: slot.index,
      error,
      wait,
    });
    this.#o.adopt().catch((e) =>
      logger.error("Spool rescan after a worker stopped failed: {error}", { error: String(e) })
    );
    setTimeout(() => {
      if (this.#closing) return;
      this.#spawn(slot).then(
        () => logger.info("Intake worker {index} restarted", { index: slot.index }),
        (e) => {
          logger.error("Intake worker {index} could not be restarted: {error}", {
            index: slot.index,
            error: String(e),
          });
        },
      );
    }, wait);
  }
}

function refusal(rejection: SmtpRejection | null): Refusal | null {
  return rejection && { code: rejection.responseCode, message: rejection.message };
}
