import { status } from '@grpc/grpc-js';

/**
 * Why a sync failed. Permanent reasons need a user to change the spec, the Secret or the source;
 * transient ones are retried with backoff.
 */
export type SyncErrorReason =
  | 'auth' // credentials refused or missing, host key mismatch
  | 'not-found' // repository, bucket or URL does not exist
  | 'bad-ref' // branch, tag or commit does not exist
  | 'invalid' // the spec or the source data cannot be published (unsupported entry, name conflict)
  | 'unsafe' // the source tried to write outside the volume
  | 'limit' // limits.maxBytes or limits.maxFiles exceeded
  | 'network' // connection failed, server error
  | 'timeout' // syncTimeout elapsed
  | 'aborted' // the caller's signal fired
  | 'busy' // another sync of the same volume is running
  | 'io'; // local file system error

const PERMANENT: ReadonlySet<SyncErrorReason> = new Set([
  'auth',
  'not-found',
  'bad-ref',
  'invalid',
  'unsafe',
  'limit',
]);

export class SyncError extends Error {
  readonly permanent: boolean;

  constructor(
    readonly reason: SyncErrorReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'SyncError';
    this.permanent = PERMANENT.has(reason);
  }
}

export const syncError = (reason: SyncErrorReason, message: string, cause?: unknown) =>
  new SyncError(reason, message, cause === undefined ? undefined : { cause });

/** gRPC code a CreateVolume should answer with for a failed initial fill. */
export function statusForSyncError(err: SyncError): status {
  switch (err.reason) {
    case 'auth':
      return status.PERMISSION_DENIED;
    case 'not-found':
    case 'bad-ref':
      return status.NOT_FOUND;
    case 'invalid':
    case 'unsafe':
      return status.INVALID_ARGUMENT;
    case 'limit':
      return status.RESOURCE_EXHAUSTED;
    case 'timeout':
      return status.DEADLINE_EXCEEDED;
    case 'busy':
    case 'aborted':
      return status.ABORTED;
    default:
      return status.UNAVAILABLE;
  }
}

/** Wraps anything thrown into a SyncError; file system errors are transient `io`. */
export function toSyncError(err: unknown, signal?: AbortSignal): SyncError {
  if (err instanceof SyncError) return err;
  if (signal?.aborted) {
    const timedOut = (signal.reason as Error | undefined)?.name === 'TimeoutError';
    return syncError(timedOut ? 'timeout' : 'aborted', timedOut ? 'sync timed out' : 'sync aborted', err);
  }
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const message = err instanceof Error ? err.message : String(err);
  if (code && ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN'].includes(code)) {
    return syncError('network', message, err);
  }
  return syncError('io', message, err);
}
