import type { IdentityHandlers } from '../generated/csi/v1/Identity.js';
import type { Logger } from 'winston';
import type { BackendRegistry } from '../backends/registry.js';
import type { ServiceSpecs } from '../rpc/handler.js';

export interface IdentityOptions {
  driverName: string;
  version: string;
  controller: boolean;
  topology: boolean;
  /** Bound on each backend probe, so that one hung server cannot hang the liveness probe. */
  probeTimeoutMs: number;
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export function identityService(
  backends: BackendRegistry,
  options: IdentityOptions,
  logger: Logger,
): ServiceSpecs<IdentityHandlers> {
  const capabilities = [
    ...(options.controller ? [{ service: { type: 'CONTROLLER_SERVICE' as const } }] : []),
    ...(options.topology ? [{ service: { type: 'VOLUME_ACCESSIBILITY_CONSTRAINTS' as const } }] : []),
    // ControllerExpandVolume raises the limit while pods use the volume; no node step follows.
    ...(options.controller ? [{ volume_expansion: { type: 'ONLINE' as const } }] : []),
  ];
  return {
    GetPluginInfo: {
      quiet: true,
      handle: async () => ({ name: options.driverName, vendor_version: options.version }),
    },
    GetPluginCapabilities: {
      quiet: true,
      handle: async () => ({ capabilities }),
    },
    Probe: {
      quiet: true,
      handle: async () => {
        if (!options.controller) return { ready: { value: true } };
        const results = await Promise.allSettled(
          backends.all().map((b) => withTimeout(b.probe(), options.probeTimeoutMs, `backend ${b.instance}`)),
        );
        const failures = results.flatMap((r) =>
          r.status === 'rejected' ? [String((r.reason as Error).message ?? r.reason)] : [],
        );
        if (failures.length > 0) logger.warn('probe: backends not ready', { failures });
        return { ready: { value: failures.length === 0 } };
      },
    },
  };
}
