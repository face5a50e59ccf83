/**
 * @module
 * One intake worker (`server.workers` > 1): a Worker thread with its own
 * event loop running the SMTP submission server on the shared ports
 * (SO_REUSEPORT: the kernel spreads connections), the normaliser, header
 * handling, DKIM signing and the spool write of its sessions. What must be
 * one view across workers stays in the main thread and is asked for by
 * message (src/cli/intake_protocol.ts): the connection limits, the AUTH
 * throttle, the suppression list and the sending limits (asked at RCPT and
 * DATA, counted at queue time), and the delivery engine, told of each queued
 * message in the turn of its 250. DKIM keys are the ones the main thread signs with:
 * it sends its `dkim` entries on SIGHUP and on a rotation switch. The worker never takes the spool lock: the main thread holds it.
 */
import { Authenticator, type FailureVerdict } from "../auth/mod.ts";
import { type Config, reason } from "../config/mod.ts";
import type { DkimSigner } from "../dkim/mod.ts";
import type { EmitEvent } from "../events/mod.ts";
import { log, setupLogging } from "../log/mod.ts";
import { Spool } from "../spool/mod.ts";
import {
  type Admission,
  type ConnectionGate,
  type LoginThrottle,
  type SharedChecks,
  SmtpRejection,
  type SubmissionServer,
} from "../submission/mod.ts";
import { buildIntake, buildSubmission, loadSigner } from "./build_intake.ts";
import type { FromWorker, Refusal, Replies, ToWorker } from "./intake_protocol.ts";
import { PostBatch } from "./post_batch.ts";

/** The parts of a worker's global scope used here (messages go in batches: post_batch.ts). */
interface WorkerScope {
  postMessage(messages: FromWorker[]): void;
  onmessage: ((event: MessageEvent<ToWorker[]>) => void) | null;
}

const scope = globalThis as unknown as WorkerScope;
const out = new PostBatch<FromWorker>(scope);
const logger = log("workers");
const waiting = new Map<number, (value: unknown) => void>();
let nextId = 0;
let running: {
  submission: SubmissionServer;
  spool: Spool;
  authenticator: Authenticator;
  reloadSigner: (dkim: Config["dkim"]) => Promise<void>;
} | null = null;

function post(message: FromWorker): void {
  out.post(message);
}

/** Sends a request to the main thread; resolves with its reply. */
function ask<K extends keyof Replies>(
  request: Omit<Extract<FromWorker, { t: K }>, "id">,
): Promise<Replies[K]> {
  const id = ++nextId;
  return new Promise((resolve) => {
    waiting.set(id, resolve as (value: unknown) => void);
    post({ ...request, id } as unknown as FromWorker);
  });
}

const gate: ConnectionGate = {
  admit: (ip, trusted): Promise<Admission> => ask<"admit">({ t: "admit", ip, trusted }),
  release: (ip) => post({ t: "release", ip }),
};

const throttle: LoginThrottle = {
  async reserve(ip, key) {
    const attempt = await ask<"reserve">({ t: "reserve", ip, key });
    if (attempt === null) return null;
    return {
      succeeded: (username) => post({ t: "succeeded", attempt, username }),
      failed: (username, failures): Promise<FailureVerdict> =>
        ask<"failed">({ t: "failed", attempt, username, failures }),
    };
  },
};

/** Suppression and sending limits: the main thread's list and counts. */
const shared: SharedChecks = {
  checkSuppressed: async (address) =>
    rejection(await ask<"suppressed">({ t: "suppressed", address })),
  checkLimit: async (user, pending) => rejection(await ask<"limit">({ t: "limit", user, pending })),
  count: async (username, recipients) => {
    await ask<"count">({ t: "count", username, recipients });
  },
};

function rejection(refusal: Refusal | null): SmtpRejection | null {
  if (!refusal) return null;
  const space = refusal.message.indexOf(" ");
  return new SmtpRejection(
    refusal.code,
    refusal.message.slice(0, space),
    refusal.message.slice(space + 1),
  );
}

async function start(init: Extract<ToWorker, { t: "init" }>): Promise<void> {
  const { config } = init.loaded;
  setupLogging({ level: config.log.level, format: config.log.format });
  const spool = await Spool.open(config.queue.dir, { fsync: config.queue.fsync });
  // Queued before create() resolves, so before the 250, and posted at the end of that
  // turn; a worker that dies first leaves the file in the spool, and the pool's adopt()
  // rescans it.
  spool.subscribe((meta) => post({ t: "queued", meta }));
  let signer: DkimSigner = await loadSigner(config, init.dkim);
  const emit: EmitEvent = (event) => post({ t: "event", event });
  const intake = buildIntake(config, {
    spool,
    sign: (message, domain) => signer.sign(message, domain),
    emit,
    suppressions: null,
    shared,
  });
  const authenticator = new Authenticator(init.users, { key: init.authKey });
  const submission = buildSubmission(config, {
    cert: init.cert,
    key: init.key,
    emit,
    intake,
    authenticator,
    throttle,
    gate,
    reusePort: true,
  });
  running = {
    submission,
    spool,
    authenticator,
    reloadSigner: async (dkim) => {
      try {
        signer = await loadSigner(config, dkim);
      } catch (error) {
        // The main thread has switched to these keys: this worker signs with its old ones.
        logger.error("Worker {index}: DKIM keys not reloaded, signing with the old ones: {error}", {
          index: init.index,
          error: reason(error),
        });
      }
    },
  };
  await submission.listen();
  post({ t: "listening", ports: submission.ports });
}

scope.onmessage = (event) => {
  for (const message of event.data) handle(message);
};

function handle(message: ToWorker): void {
  switch (message.t) {
    case "init":
      start(message).catch((error) => post({ t: "start_failed", error: reason(error) }));
      break;
    case "reply": {
      const resolve = waiting.get(message.id);
      waiting.delete(message.id);
      resolve?.(message.value);
      break;
    }
    case "reload":
      if (!running) break;
      if (message.users) running.authenticator.replaceUsers(message.users);
      (message.dkim ? running.reloadSigner(message.dkim) : Promise.resolve())
        .then(() => post({ t: "reloaded" }));
      break;
    case "close": {
      const current = running;
      if (!current) {
        post({ t: "closed" });
        break;
      }
      current.submission.close(message.graceMs).then(() => {
        current.spool.close();
        post({ t: "closed" });
      });
      break;
    }
    case "crash":
      setTimeout(() => {
        throw new Error("Intake worker crash requested by a test (MINIMTA_TEST_HOOKS)");
      });
      break;
  }
}
