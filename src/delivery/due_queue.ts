/**
 * The in-memory schedule: message ids ordered by when they are next due, as
 * a binary min-heap. Re-scheduling an id leaves its old entry in the heap;
 * stale entries are recognised by their time and skipped.
 */
export class DueQueue {
  #heap: { id: string; due: number }[] = [];
  #due = new Map<string, number>();

  /** Number of scheduled ids. */
  get size(): number {
    return this.#due.size;
  }

  /** Schedules (or re-schedules) `id` at `due` (ms since the epoch). */
  set(id: string, due: number): void {
    this.#due.set(id, due);
    this.#heap.push({ id, due });
    this.#up(this.#heap.length - 1);
  }

  /** Forgets `id`. */
  delete(id: string): void {
    this.#due.delete(id);
  }

  /** True when `id` is scheduled. */
  has(id: string): boolean {
    return this.#due.has(id);
  }

  /** The earliest due time, or null when empty. */
  peek(): number | null {
    this.#dropStale();
    return this.#heap.length ? this.#heap[0].due : null;
  }

  /** The latest due time, or null when empty (a scan: for rare checks). */
  peekLast(): number | null {
    let last: number | null = null;
    for (const due of this.#due.values()) if (last === null || due > last) last = due;
    return last;
  }

  /** Brings every id due after `limit` forward to `limit`; returns how many moved. */
  clampAfter(limit: number): number {
    let moved = 0;
    for (const [id, due] of this.#due) {
      if (due > limit) {
        this.set(id, limit);
        moved++;
      }
    }
    return moved;
  }

  /** Removes and returns the earliest id due at or before `now`, or null. */
  popDue(now: number): string | null {
    this.#dropStale();
    const top = this.#heap[0];
    if (!top || top.due > now) return null;
    this.#pop();
    this.#due.delete(top.id);
    return top.id;
  }

  #dropStale(): void {
    while (this.#heap.length && this.#due.get(this.#heap[0].id) !== this.#heap[0].due) this.#pop();
  }

  #pop(): void {
    const last = this.#heap.pop()!;
    if (this.#heap.length) {
      this.#heap[0] = last;
      this.#down(0);
    }
  }

  #up(i: number): void {
    const h = this.#heap;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent].due <= h[i].due) break;
      [h[parent], h[i]] = [h[i], h[parent]];
      i = parent;
    }
  }

  #down(i: number): void {
    const h = this.#heap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && h[l].due < h[m].due) m = l;
      if (r < h.length && h[r].due < h[m].due) m = r;
      if (m === i) return;
      [h[m], h[i]] = [h[i], h[m]];
      i = m;
    }
  }
}
