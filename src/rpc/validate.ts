import type { VolumeCapability__Output } from '../generated/csi/v1/VolumeCapability.js';
import { invalidArgument } from './errors.js';

export function required(value: string | undefined, field: string): string {
  if (!value) throw invalidArgument(`${field} is required`);
  return value;
}

/** int64 fields arrive as decimal strings; refuse what a JavaScript number cannot hold exactly. */
export function int64(value: string | number | undefined, field: string): number {
  const n = Number(value ?? 0);
  if (!Number.isSafeInteger(n) || n < 0)
    throw invalidArgument(`${field} must be a non-negative integer, got ${value}`);
  return n;
}

/** Why a capability is unsupported, or undefined when it is fine. Shared file volumes: mount only, any mode. */
export function capabilityProblem(cap: VolumeCapability__Output): string | undefined {
  if (cap.access_type === 'block' || cap.block)
    return 'block access is not supported: volumes are shared file systems';
  if (cap.access_type !== 'mount') return 'access_type must be mount';
  if (!cap.access_mode || cap.access_mode.mode === 'UNKNOWN') return 'access_mode is required';
  return undefined;
}

export function requireCapabilities(caps: VolumeCapability__Output[], field = 'volume_capabilities'): void {
  if (caps.length === 0) throw invalidArgument(`${field} is required`);
  for (const cap of caps) {
    const problem = capabilityProblem(cap);
    if (problem) throw invalidArgument(`${field}: ${problem}`);
  }
}

export function requireCapability(
  cap: VolumeCapability__Output | null,
  field = 'volume_capability',
): VolumeCapability__Output {
  if (!cap) throw invalidArgument(`${field} is required`);
  requireCapabilities([cap], field);
  return cap;
}
