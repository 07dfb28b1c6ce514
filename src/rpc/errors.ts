import { status } from '@grpc/grpc-js';
import { ZodError } from 'zod';

/** A failure that already knows which gRPC status code the CO should see. */
export class CsiError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
    this.name = 'CsiError';
  }
}

export const invalidArgument = (msg: string) => new CsiError(status.INVALID_ARGUMENT, msg);
export const notFound = (msg: string) => new CsiError(status.NOT_FOUND, msg);
export const alreadyExists = (msg: string) => new CsiError(status.ALREADY_EXISTS, msg);
export const outOfRange = (msg: string) => new CsiError(status.OUT_OF_RANGE, msg);
export const aborted = (msg: string) => new CsiError(status.ABORTED, msg);
export const failedPrecondition = (msg: string) => new CsiError(status.FAILED_PRECONDITION, msg);
export const resourceExhausted = (msg: string) => new CsiError(status.RESOURCE_EXHAUSTED, msg);
export const unavailable = (msg: string) => new CsiError(status.UNAVAILABLE, msg);
export const internal = (msg: string) => new CsiError(status.INTERNAL, msg);

const errnoCodes: Record<string, status> = {
  ENOSPC: status.RESOURCE_EXHAUSTED,
  EDQUOT: status.RESOURCE_EXHAUSTED,
  ETIMEDOUT: status.UNAVAILABLE,
  ENOTCONN: status.UNAVAILABLE,
  // What a FUSE mount whose client died answers to some calls (readlink, for one).
  ECONNABORTED: status.UNAVAILABLE,
  EHOSTUNREACH: status.UNAVAILABLE,
  ECONNREFUSED: status.UNAVAILABLE,
};

// Node 20 has no name for EDQUOT and reports it as "Unknown system error -122".
const EDQUOT_ERRNO = -122;

function errnoName(err: NodeJS.ErrnoException | undefined): string | undefined {
  return err?.errno === EDQUOT_ERRNO ? 'EDQUOT' : err?.code;
}

/** Maps any thrown value to a gRPC status code and a message fit for the CO. */
export function toStatus(err: unknown): { code: status; message: string } {
  if (err instanceof CsiError) return { code: err.code, message: err.message };
  if (err instanceof ZodError) return { code: status.INVALID_ARGUMENT, message: describeZodError(err) };
  const errno = errnoName(err as NodeJS.ErrnoException | undefined);
  const message = err instanceof Error ? err.message : String(err);
  if (errno && errno in errnoCodes) return { code: errnoCodes[errno]!, message };
  return { code: status.INTERNAL, message };
}

/** One sentence per problem, always naming the parameter key. */
export function describeZodError(err: ZodError, prefix = ''): string {
  return err.issues
    .map((issue) => {
      if (issue.code === 'unrecognized_keys') {
        return `unknown parameter ${issue.keys.map((k) => `"${prefix}${k}"`).join(', ')}`;
      }
      const key = prefix + issue.path.map(String).join('.');
      return `parameter "${key}": ${issue.message}`;
    })
    .join('; ');
}
