/**
 * Retry and schedule delays. Jitter spreads the syncs of many volumes (and of many replicas after
 * a restart) so that they do not hit one server at the same instant.
 */

export interface BackoffOptions {
  /** Delay of the first retry before jitter. */
  baseMs?: number;
  /** Ceiling of the delay before jitter. */
  maxMs?: number;
  /** Source of randomness in [0, 1); injectable for tests. */
  random?: () => number;
}

/**
 * Delay before retry number `attempt` (0 for the first retry): exponential, capped, with "equal
 * jitter": half fixed so retries never bunch at zero, half random.
 */
export function backoffDelay(attempt: number, options: BackoffOptions = {}): number {
  const { baseMs = 1000, maxMs = 5 * 60_000, random = Math.random } = options;
  const exponential = Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(attempt, 0), 30));
  return Math.round(exponential / 2 + (random() * exponential) / 2);
}

/** Delay until the next periodic sync: the interval plus up to `fraction` of it at random. */
export function nextSyncDelay(
  intervalMs: number,
  fraction = 0.1,
  random: () => number = Math.random,
): number {
  return Math.round(intervalMs + random() * intervalMs * fraction);
}
