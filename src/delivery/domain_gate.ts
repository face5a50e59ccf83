/**
 * Per-domain fairness for the engine's schedule: a message whose every
 * recipient domain already has enough messages in flight to fill its
 * connections waits aside (parked) instead of taking one of the engine's
 * in-flight places, so that a 100,000-message campaign to one big provider
 * never holds up a password reset to another domain behind it.
 */
export class DomainGate {
  #busy: number;
  #load = new Map<string, number>();
  #parked = new Map<string, string[]>();

  /** `busyAt`: messages in flight per domain from which new ones are parked. */
  constructor(busyAt: number) {
    this.#busy = busyAt;
  }

  /** Messages waiting aside. */
  get parked(): number {
    let n = 0;
    for (const list of this.#parked.values()) n += list.length;
    return n;
  }

  /**
   * True when the message may start now (its domains' loads are counted);
   * false when it was parked under its first domain.
   */
  admit(id: string, domains: string[]): boolean {
    if (domains.length && domains.every((d) => (this.#load.get(d) ?? 0) >= this.#busy)) {
      const list = this.#parked.get(domains[0]) ?? [];
      list.push(id);
      this.#parked.set(domains[0], list);
      return false;
    }
    for (const d of domains) this.#load.set(d, (this.#load.get(d) ?? 0) + 1);
    return true;
  }

  /** Takes a parked message out (an operator acted on it); it is scheduled anew or not at all. */
  forget(id: string): void {
    for (const [domain, list] of this.#parked) {
      const i = list.indexOf(id);
      if (i < 0) continue;
      list.splice(i, 1);
      if (!list.length) this.#parked.delete(domain);
      return;
    }
  }

  /** A message admitted with `domains` has finished; returns parked ids to schedule again, oldest first. */
  release(domains: string[]): string[] {
    const resume: string[] = [];
    for (const d of domains) {
      const load = (this.#load.get(d) ?? 1) - 1;
      if (load > 0) this.#load.set(d, load);
      else this.#load.delete(d);
      const waiting = this.#parked.get(d);
      if (!waiting) continue;
      resume.push(waiting.shift()!);
      if (!waiting.length) this.#parked.delete(d);
    }
    return resume;
  }
}
