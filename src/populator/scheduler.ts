import { backoffDelay, nextSyncDelay } from './backoff.js';
import type { SyncStatus } from './state.js';

/**
 * When a volume's next sync is due, from the status on the backend alone. Every replica computes
 * the same answer, so after one replica syncs the others see the new status and wait: the
 * schedule survives restarts and is shared without any coordination beyond the lease.
 */

/**
 * Milliseconds until the next sync (0 = now), or undefined when none is due: a volume that fills
 * once (`intervalMs` 0) and has succeeded. After a failure: exponential backoff with jitter.
 */
export function dueIn(
  status: SyncStatus | undefined,
  intervalMs: number,
  now: number,
  random: () => number = Math.random,
): number | undefined {
  if (!status?.lastAttempt || status.inProgress) return 0;
  if (status.lastError) {
    const retryAt = Date.parse(status.lastAttempt) + backoffDelay(status.consecutiveFailures - 1, { random });
    return Math.max(0, retryAt - now);
  }
  if (!status.lastSuccess) return 0;
  if (intervalMs === 0) return undefined;
  return Math.max(0, Date.parse(status.lastSuccess) + nextSyncDelay(intervalMs, 0.1, random) - now);
}

// setTimeout fires at once for delays beyond 2^31-1 ms; a later tick recomputes anyway.
const MAX_TIMER_MS = 2 ** 31 - 1;

/** One timer per volume; scheduling again replaces the previous one. */
export class Scheduler {
  private readonly timers = new Map<string, { timer: NodeJS.Timeout; at: number }>();

  constructor(private readonly fire: (id: string) => void) {}

  schedule(id: string, delayMs: number): void {
    this.cancel(id);
    const delay = Math.min(Math.max(0, delayMs), MAX_TIMER_MS);
    const timer = setTimeout(() => {
      this.timers.delete(id);
      this.fire(id);
    }, delay);
    // The servers keep the process alive; a pending sync alone should not.
    timer.unref();
    this.timers.set(id, { timer, at: Date.now() + delay });
  }

  cancel(id: string): void {
    const entry = this.timers.get(id);
    if (entry) clearTimeout(entry.timer);
    this.timers.delete(id);
  }

  /** When the volume's timer fires (epoch ms), if it has one. */
  nextAt(id: string): number | undefined {
    return this.timers.get(id)?.at;
  }

  clear(): void {
    for (const id of [...this.timers.keys()]) this.cancel(id);
  }
}
