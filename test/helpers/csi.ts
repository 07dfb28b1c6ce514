import type { ServiceError } from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import type { VolumeCapability } from '../../src/generated/csi/v1/VolumeCapability.js';

type AccessMode = NonNullable<NonNullable<VolumeCapability['access_mode']>['mode']>;

/** A mount capability with the given access mode, as a CO sends it. */
export function mountCapability(
  mode: AccessMode = 'MULTI_NODE_MULTI_WRITER',
  extra: { mount_flags?: string[]; volume_mount_group?: string } = {},
): VolumeCapability {
  return {
    mount: {
      fs_type: '',
      mount_flags: extra.mount_flags ?? [],
      volume_mount_group: extra.volume_mount_group ?? '',
    },
    access_mode: { mode },
  };
}

/** Asserts the promise rejects with the given gRPC code, and optionally that the message matches. */
export async function rejectsWith(
  promise: Promise<unknown>,
  code: status,
  message?: RegExp,
): Promise<ServiceError> {
  try {
    await promise;
  } catch (err) {
    const e = err as ServiceError;
    assert.equal(
      status[e.code],
      status[code],
      `expected ${status[code]}, got ${status[e.code]}: ${e.details}`,
    );
    if (message) assert.match(e.details, message);
    return e;
  }
  assert.fail(`expected ${status[code]}, but the call succeeded`);
}
