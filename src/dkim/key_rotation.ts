import type { DkimKeyConfig } from "./dkim_key.ts";

/**
 * How long a replaced selector's record must stay in DNS: mail signed with
 * the old key may sit in queues and be verified for days after the switch.
 */
export const RETIRED_KEEP_MS = 7 * 86_400_000;

/** The name of the file in the spool where the daemon records the keys it switched to. */
export const ROTATION_STATE_FILE = "dkim_rotation.json";

/** One `dkim:` entry with its rotation fields (see the README's `dkim rotate`). */
export interface RotatingKeyConfig extends DkimKeyConfig {
  /** The key waiting for its DNS record, "" for none. */
  nextSelector: string;
  /** Its private key file, "" for none. */
  nextPrivateKeyFile: string;
  /** Selectors replaced earlier, and until when their records must stay published. */
  retired: { selector: string; until: string }[];
}

/** A `dkim:` entry as the config holds it (snake_case keys). */
export interface DkimConfigEntry {
  domain: string;
  selector: string;
  private_key_file: string;
  next_selector: string;
  next_private_key_file: string;
  retired: readonly { selector: string; until: string }[];
}

/** The entry of the config file as {@linkcode RotatingKeyConfig}. */
export function rotatingKeyConfig(entry: DkimConfigEntry): RotatingKeyConfig {
  return {
    domain: entry.domain,
    selector: entry.selector,
    privateKeyFile: entry.private_key_file,
    nextSelector: entry.next_selector,
    nextPrivateKeyFile: entry.next_private_key_file,
    retired: entry.retired.map((r) => ({ selector: r.selector, until: r.until })),
  };
}

/** When the daemon saw a pending key's record and switched to it, by `domain/selector`. */
export type RotationState = Record<string, string>;

/** What an entry signs with, what waits for DNS and what DNS must keep, at one moment. */
export interface RotationView {
  /** The key signing now. */
  signing: DkimKeyConfig;
  /** The key waiting for its record; null when there is none. */
  pending: DkimKeyConfig | null;
  /** Replaced selectors, newest first, with the time their records may go. */
  retired: { selector: string; until: Date }[];
  /** When the daemon switched to `signing` on its own (its record was seen), if it did. */
  activatedAt: Date | null;
}

/** The key in {@linkcode RotationState} of a domain's selector. */
export function stateKey(domain: string, selector: string): string {
  return `${domain.toLowerCase().replace(/\.$/, "")}/${selector}`;
}

/**
 * Combines an entry of the config with the daemon's record: once a pending
 * key was switched to, it signs and the entry's selector is retired for
 * {@linkcode RETIRED_KEEP_MS} from the switch.
 */
export function rotationView(entry: RotatingKeyConfig, state: RotationState): RotationView {
  const current = {
    domain: entry.domain,
    selector: entry.selector,
    privateKeyFile: entry.privateKeyFile,
  };
  const retired = entry.retired.map((r) => ({ selector: r.selector, until: new Date(r.until) }));
  if (!entry.nextSelector) return { signing: current, pending: null, retired, activatedAt: null };
  const next = {
    domain: entry.domain,
    selector: entry.nextSelector,
    privateKeyFile: entry.nextPrivateKeyFile,
  };
  const at = state[stateKey(entry.domain, entry.nextSelector)];
  if (at === undefined) return { signing: current, pending: next, retired, activatedAt: null };
  const activatedAt = new Date(at);
  const old = {
    selector: entry.selector,
    until: new Date(activatedAt.getTime() + RETIRED_KEEP_MS),
  };
  return { signing: next, pending: null, retired: [old, ...retired], activatedAt };
}

/** Reads the daemon's record of switched keys; empty when there is none yet. */
export async function readRotationState(path: string): Promise<RotationState> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return {};
    throw new Error(`Cannot read "${path}": ${(error as Error).message}`, { cause: error });
  }
  try {
    const data = JSON.parse(text);
    return typeof data?.activated === "object" && data.activated !== null ? data.activated : {};
  } catch (cause) {
    throw new Error(`Cannot parse "${path}": not JSON`, { cause });
  }
}

/** Replaces the record atomically (write, fsync, rename), so a reader never sees half of it. */
export async function writeRotationState(path: string, state: RotationState): Promise<void> {
  const tmp = `${path}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  const file = await Deno.open(tmp, { write: true, createNew: true, mode: 0o600 });
  try {
    const bytes = new TextEncoder().encode(JSON.stringify({ activated: state }, null, 2) + "\n");
    let offset = 0;
    while (offset < bytes.length) offset += await file.write(bytes.subarray(offset));
    await file.sync();
  } finally {
    file.close();
  }
  await Deno.rename(tmp, path);
}
