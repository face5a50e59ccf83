/**
 * How long to wait before the next attempt after `attempts` attempts:
 * the schedule's step for that attempt, the last step repeating, with up to
 * ±`jitter` of it added so that a burst of deferred mail does not come back
 * all at once.
 */
export function retryDelay(
  attempts: number,
  schedule: readonly number[],
  jitter = 0.1,
  random = Math.random,
): number {
  const step = schedule[Math.min(Math.max(attempts, 1), schedule.length) - 1];
  return Math.round(step * (1 + jitter * (2 * random() - 1)));
}

/** True once a message queued at `createdAt` has been queued longer than `lifetimeMs`. */
export function isExpired(createdAt: Date, now: Date, lifetimeMs: number): boolean {
  return now.getTime() - createdAt.getTime() >= lifetimeMs;
}
