import type { SendingLimits } from "../auth/mod.ts";
import type { Config } from "../config/mod.ts";
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
import { Intake, type SignFunction } from "../submission/mod.ts";

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
  });
}

/**
 * A signer with the keys the daemon signs with: each `dkim[]` entry's key,
 * or its rotated one once the daemon has switched to it (`minimta dkim rotate`).
 */
export async function loadSigner(config: Config): Promise<DkimSigner> {
  const state = await readRotationState(`${config.queue.dir}/${ROTATION_STATE_FILE}`);
  return new DkimSigner(
    await loadDkimKeys(config.dkim.map((d) => rotationView(rotatingKeyConfig(d), state).signing)),
  );
}
