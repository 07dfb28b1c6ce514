import type { Backend, VolumeRecord } from '../backends/backend.js';
import { POLICY_KEYS } from '../populator/spec.js';
import { failedPrecondition } from '../rpc/errors.js';

/**
 * What the provisioner needs from the populator: a new volume's source, checked before anything is
 * made; its first fill; and its removal. The populator itself loads only with --populator, so the
 * provisioner depends on this interface, not on it.
 */

/** volume_context key that makes the node publish a volume read-only, whatever the pod asks. */
export const READ_ONLY_CONTEXT = 'readOnly';

export interface PopulationRequest {
  /** The populator's keys of CreateVolume's parameters (source.*, syncInterval, allowPVCSource, ...). */
  parameters: Record<string, string>;
  /** From external-provisioner's --extra-create-metadata, for the PVC annotation and Events. */
  pvc?: { namespace: string; name: string };
  /** The capacity being provisioned: the default ceiling of the source's size. */
  capacityBytes: number;
  /** CreateVolume's secrets (provisioner-secret-*): credentials for the first fill. */
  secrets: Record<string, string>;
}

/** A source that passed every check; opaque to the provisioner except for how pods see the volume. */
export interface PlannedSource {
  readOnly: boolean;
}

export interface VolumeTarget {
  id: string;
  backend: Backend;
  record: VolumeRecord;
}

export interface Population {
  /** The source of a new volume, or undefined for a plain one. Throws CsiError naming the bad key. */
  plan(request: PopulationRequest): Promise<PlannedSource | undefined>;
  /** Registers the volume for syncing and fills it; resolves once its content is in place. */
  fill(planned: PlannedSource, target: VolumeTarget): Promise<void>;
  /** Whether an existing volume has had its first fill (false: a crash or failure interrupted it). */
  filled(target: VolumeTarget): Promise<boolean>;
  /** Stops syncing the volume and removes its sync state; called before its directory goes. */
  release(target: VolumeTarget): Promise<void>;
}

/** A controller running without --populator: classes with a source are refused before anything is made. */
export const withoutPopulator: Population = {
  plan: async (request) => {
    const key = Object.keys(request.parameters).find((k) => !POLICY_KEYS.includes(k));
    if (!key && request.parameters.allowPVCSource !== 'true') return undefined;
    throw failedPrecondition(
      `parameter "${key ?? 'allowPVCSource'}": this controller runs without the populator; start it with --populator`,
    );
  },
  fill: () => Promise.reject(failedPrecondition('the populator is not running (--populator)')),
  filled: async () => true,
  // Sync state left by an earlier controller that ran the populator still goes with the volume.
  release: async ({ id, backend }) => {
    const { removeVolumeSyncState } = await import('../populator/registration.js');
    await removeVolumeSyncState(await backend.metadataDirectory(), id);
  },
};
