import { aborted } from '../rpc/errors.js';
import type { CallContext } from '../rpc/handler.js';

/** How long before the caller's deadline a waiting call gives up, so that its answer still arrives. */
const ANSWER_MARGIN_MS = 1000;

interface Operation {
  startedAt: number;
  done: Promise<unknown>;
  /** Set once the work failed and no caller has been told yet. */
  failure?: { error: unknown };
}

export type Outcome<T> = { done: true; value: T } | { done: false; startedAt: number };

/**
 * Work that outlives the RPC that started it: restores and clones of large volumes, snapshots being
 * written, a populator's first fill. A call starts the work under a key (the volume name, say) and
 * waits for it until shortly before its own deadline; if the work is not done by then, `run` answers
 * ABORTED ("still in progress"), and so does every retry until it is done. Then a retry gets the
 * result. A failure is answered once, to the call waiting then or to the next one, and forgotten, so
 * that the call after it starts afresh. Success is not kept: the work's own output (a committed
 * record) answers later calls.
 */
export class Operations {
  private readonly running = new Map<string, Operation>();

  /** Whether work runs under `key`, or failed and has not been reported yet. */
  state(key: string): 'running' | 'failed' | undefined {
    const operation = this.running.get(key);
    if (!operation) return undefined;
    return operation.failure ? 'failed' : 'running';
  }

  has(key: string): boolean {
    return this.running.has(key);
  }

  /** Resolves once the work under `key`, if any, has finished; its result or failure stays for the callers. */
  async settled(key: string): Promise<void> {
    await this.running.get(key)?.done;
  }

  /** Drops an unreported failure (its error is returned), so that the next call starts afresh. */
  forget(key: string): unknown {
    const operation = this.running.get(key);
    if (!operation?.failure) return undefined;
    this.running.delete(key);
    return operation.failure.error;
  }

  /**
   * Joins the work under `key`, or calls `prepare` (which checks everything that must fail before any
   * work starts, and returns the work) and starts it; then waits for it as long as `call` allows.
   * ABORTED if it is still running then.
   */
  async run<T>(key: string, prepare: () => Promise<() => Promise<T>>, call?: CallContext): Promise<T> {
    const outcome = await this.attempt(key, prepare, call);
    if (outcome.done) return outcome.value;
    const seconds = Math.round((Date.now() - outcome.startedAt) / 1000);
    throw aborted(`"${key}" is still in progress (started ${seconds} s ago); retry later`);
  }

  /** Like run, but answers "not done yet" instead of ABORTED; waits at most `maxWaitMs` if given. */
  async attempt<T>(
    key: string,
    prepare: () => Promise<() => Promise<T>>,
    call?: CallContext,
    maxWaitMs?: number,
  ): Promise<Outcome<T>> {
    let operation = this.running.get(key);
    if (!operation) {
      const work = await prepare();
      operation = this.running.get(key) ?? this.start(key, work);
    }
    if (operation.failure) return this.report(key, operation);
    const budget = waitBudget(call);
    const wait = maxWaitMs === undefined ? budget : Math.min(budget ?? maxWaitMs, maxWaitMs);
    if ((await this.waitFor(operation, wait, call?.signal)) === 'waiting') {
      return { done: false, startedAt: operation.startedAt };
    }
    if (operation.failure) return this.report(key, operation);
    return { done: true, value: (await operation.done) as T };
  }

  private start<T>(key: string, work: () => Promise<T>): Operation {
    const operation: Operation = { startedAt: Date.now(), done: Promise.resolve() };
    operation.done = work().then(
      (value) => {
        this.running.delete(key);
        return value;
      },
      (error: unknown) => {
        operation.failure = { error };
      },
    );
    this.running.set(key, operation);
    return operation;
  }

  private report(key: string, operation: Operation): never {
    if (this.running.get(key) === operation) this.running.delete(key);
    throw operation.failure!.error;
  }

  private async waitFor(
    operation: Operation,
    budgetMs: number | undefined,
    signal: AbortSignal | undefined,
  ): Promise<'settled' | 'waiting'> {
    if (budgetMs === undefined && !signal) return operation.done.then(() => 'settled');
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const giveUp = new Promise<'waiting'>((resolve) => {
      if (signal?.aborted) return resolve('waiting');
      if (budgetMs !== undefined) timer = setTimeout(() => resolve('waiting'), budgetMs);
      onAbort = () => resolve('waiting');
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([operation.done.then(() => 'settled' as const), giveUp]);
    } finally {
      clearTimeout(timer);
      if (onAbort) signal?.removeEventListener('abort', onAbort);
    }
  }
}

/** Milliseconds a call may wait; undefined when its caller set no deadline. */
export function waitBudget(call: CallContext | undefined): number | undefined {
  if (!call || !Number.isFinite(call.deadline)) return undefined;
  const remaining = call.deadline - Date.now();
  return Math.max(0, remaining - Math.min(ANSWER_MARGIN_MS, remaining / 2));
}
