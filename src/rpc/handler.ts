import {
  status,
  type handleUnaryCall,
  type sendUnaryData,
  type ServerUnaryCall,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { Logger } from 'winston';
import type { DriverMetrics } from '../metrics/registry.js';
import { scrub } from '../logging/logger.js';
import { toStatus } from './errors.js';
import type { VolumeLocks } from './locks.js';

export interface RpcRuntime {
  logger: Logger;
  metrics: DriverMetrics;
  locks: VolumeLocks;
}

/** What a handler may know about the call beyond its request. */
export interface CallContext {
  /** When the caller stops waiting, in ms since the epoch; Infinity when it set no deadline. */
  deadline: number;
  /** Aborted when the caller cancels the call (or its deadline passes). */
  signal: AbortSignal;
}

/** What a service declares per RPC; the wrapper supplies everything cross-cutting. */
export interface RpcSpec<Req, Res> {
  /** The volume (id, or name for CreateVolume) the call works on: lock key and log field. */
  volume?: (req: Req) => string | undefined;
  /** Log successful calls at debug instead of info (probes and capability queries). */
  quiet?: boolean;
  handle: (req: Req, call: CallContext) => Promise<Res>;
}

type SpecFor<H> = H extends handleUnaryCall<infer Req, infer Res> ? RpcSpec<Req, Res> : never;

/** Methods left out are answered UNIMPLEMENTED by grpc-js. */
export type ServiceSpecs<H> = { [K in keyof H]?: SpecFor<H[K]> };

const codeName = (code: status) => status[code] ?? String(code);

function secretValues(request: unknown): string[] {
  const secrets = (request as { secrets?: Record<string, string> } | null)?.secrets;
  return secrets ? Object.values(secrets) : [];
}

/** The call's deadline, and a cancellation signal made only for handlers that ask for it (most never do). */
function callContext(call: ServerUnaryCall<unknown, unknown>): CallContext {
  const deadline = call.getDeadline();
  let cancelled: AbortController | undefined;
  return {
    deadline: deadline instanceof Date ? deadline.getTime() : deadline,
    get signal() {
      if (!cancelled) {
        const controller = (cancelled = new AbortController());
        if (call.cancelled) controller.abort();
        else call.once('cancelled', () => controller.abort());
      }
      return cancelled.signal;
    },
  };
}

/**
 * Wraps one RPC with the cross-cutting concerns, in one place: per-volume lock (ABORTED when held),
 * error-to-status mapping, secret scrubbing, one log line and metrics. Requests are never logged whole.
 */
export function wrapRpc<Req, Res>(
  method: string,
  spec: RpcSpec<Req, Res>,
  rt: RpcRuntime,
): handleUnaryCall<Req, Res> {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    const started = process.hrtime.bigint();
    const request = call.request;
    const context = callContext(call);
    let volume: string | undefined;
    const run = async () => {
      volume = spec.volume?.(request) || undefined;
      const release = volume ? rt.locks.acquire(volume) : undefined;
      try {
        return await spec.handle(request, context);
      } finally {
        release?.();
      }
    };
    run().then(
      (response) => {
        finish(status.OK);
        callback(null, response);
      },
      (err: unknown) => {
        const mapped = toStatus(err);
        const secrets = secretValues(request);
        const message = secrets.length ? scrub(mapped.message, secrets) : mapped.message;
        finish(mapped.code, message);
        callback({ code: mapped.code, details: message });
      },
    );

    function finish(code: status, error?: string) {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      rt.metrics.observe(method, codeName(code), seconds);
      const level = error
        ? code === status.INTERNAL || code === status.UNKNOWN
          ? 'error'
          : 'warn'
        : spec.quiet
          ? 'debug'
          : 'info';
      if (!rt.logger.isLevelEnabled(level)) return;
      rt.logger.log(level, 'rpc', {
        method,
        ...(volume ? { volume } : {}),
        durationMs: Math.round(seconds * 1e6) / 1e3,
        code: codeName(code),
        ...(error ? { error } : {}),
      });
    }
  };
}

export function wrapService<H>(specs: ServiceSpecs<H>, rt: RpcRuntime): UntypedServiceImplementation {
  const implementation: UntypedServiceImplementation = {};
  for (const [method, spec] of Object.entries(specs)) {
    if (spec) implementation[method] = wrapRpc(method, spec as RpcSpec<unknown, unknown>, rt);
  }
  return implementation;
}
