import { type DkimKey, loadDkimKeys } from "./dkim_key.ts";
import {
  readRotationState,
  type RotatingKeyConfig,
  type RotationState,
  rotationView,
  stateKey,
  writeRotationState,
} from "./key_rotation.ts";
import { parseKeyRecord, publicKeyRecordData } from "./public_key.ts";

/** A switch the watcher made: the pending key's record was seen in DNS. */
export interface KeySwitch {
  domain: string;
  from: string;
  to: string;
  /** Until when the old selector's record must stay published. */
  keepUntil: Date;
}

/** Options of {@linkcode RotationWatcher}. */
export interface RotationWatcherOptions {
  /** The `dkim:` entries of the config. */
  entries: RotatingKeyConfig[];
  /** The daemon's record of switched keys (in the spool). */
  statePath: string;
  /** TXT lookup: each record's strings joined; empty when there is none. */
  resolveTxt: (name: string) => Promise<string[]>;
  /** Called with the new signing keys after a switch. */
  onSwitch: (keys: DkimKey[], change: KeySwitch) => void;
  /** Called when a lookup fails; the watcher tries again next time. */
  onError?: (error: unknown, name: string) => void;
  /** The clock. @default {() => new Date()} */
  now?: () => Date;
}

/**
 * Keeps signing with each entry's current key until the record of its
 * pending key (`next_selector`, written by `minimta dkim rotate`) is visible
 * in DNS with that key's `p=`, then switches: a receiver that looks the new
 * selector up must find it, or the mail fails DKIM (RFC 6376 §3.6.2.2).
 */
export class RotationWatcher {
  #options: RotationWatcherOptions;
  #state: RotationState = {};
  #timer: ReturnType<typeof setInterval> | undefined;
  #checking: Promise<void> | null = null;

  constructor(options: RotationWatcherOptions) {
    this.#options = options;
  }

  /** Reads the record and the keys; returns the keys to sign with now. */
  async load(): Promise<DkimKey[]> {
    this.#state = await readRotationState(this.#options.statePath);
    // Pending keys are read now too, so a broken one is reported at start.
    await loadDkimKeys(this.#pending().map((p) => p.pending));
    return await this.signingKeys();
  }

  /** The keys each entry signs with now. */
  signingKeys(): Promise<DkimKey[]> {
    return loadDkimKeys(this.#options.entries.map((e) => rotationView(e, this.#state).signing));
  }

  /** Checks DNS every `intervalMs`, while there is a pending key. */
  start(intervalMs: number): void {
    this.#timer = setInterval(() => {
      this.#checking ??= this.check().finally(() => (this.#checking = null));
    }, intervalMs);
  }

  /** Stops the periodic check and waits for one in progress. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#checking;
  }

  /** One round: looks up each pending record and switches to the keys that are published. */
  async check(): Promise<void> {
    for (const { entry, pending } of this.#pending()) {
      const name = `${pending.selector}._domainkey.${pending.domain}`;
      try {
        const [key] = await loadDkimKeys([pending]);
        const expected = publicKeyRecordData(key.privateKey);
        const records = (await this.#options.resolveTxt(name)).map(parseKeyRecord);
        if (!records.some((t) => t.p === expected.p)) continue;
        await this.#activate(entry);
      } catch (error) {
        this.#options.onError?.(error, name);
      }
    }
  }

  async #activate(entry: RotatingKeyConfig): Promise<void> {
    const now = (this.#options.now ?? (() => new Date()))();
    const state = {
      ...this.#state,
      [stateKey(entry.domain, entry.nextSelector)]: now.toISOString(),
    };
    await writeRotationState(this.#options.statePath, state);
    this.#state = state;
    const view = rotationView(entry, state);
    this.#options.onSwitch(await this.signingKeys(), {
      domain: entry.domain,
      from: entry.selector,
      to: entry.nextSelector,
      keepUntil: view.retired[0].until,
    });
  }

  #pending() {
    return this.#options.entries.flatMap((entry) => {
      const pending = rotationView(entry, this.#state).pending;
      return pending ? [{ entry, pending }] : [];
    });
  }
}
