import type { KubeClientFactory } from '../kube/client.js';
import { resolveVolumeSource, type VolumeSource } from '../kube/source.js';
import { CsiError, invalidArgument } from '../rpc/errors.js';
import type { PlannedSource, Population, PopulationRequest, VolumeTarget } from '../volumes/population.js';
import { credentialsFromSecret, type SourceCredentials } from './credentials.js';
import { SyncError, statusForSyncError } from './errors.js';
import { syncStateDir } from './registration.js';
import type { PopulatorService } from './service.js';
import { parseClassPolicy, SourceSpecError } from './spec.js';
import { readSyncStatus } from './state.js';

interface Planned extends PlannedSource {
  source: VolumeSource;
  /** Provisioner secrets of the CreateVolume call, for the first fill only. */
  credentials?: SourceCredentials;
}

/** The populator behind CreateVolume and DeleteVolume (src/volumes/population.ts). */
export class PopulatedVolumes implements Population {
  constructor(
    private readonly service: PopulatorService,
    private readonly kube: KubeClientFactory,
  ) {}

  async plan(request: PopulationRequest): Promise<Planned | undefined> {
    const { parameters } = request;
    const { writable } = classPolicy(parameters);
    const source = await resolveVolumeSource({
      parameters,
      kube: this.kube,
      ...(request.pvc ? { pvc: request.pvc } : {}),
    });
    if (!source) return undefined;
    // Without an explicit limit, a source may not outgrow the capacity the user asked for.
    if (request.capacityBytes > 0) source.spec.limits.maxBytes ??= request.capacityBytes;
    return {
      readOnly: !writable,
      source,
      ...(Object.keys(request.secrets).length > 0
        ? { credentials: credentialsOrInvalid(source, request.secrets) }
        : {}),
    };
  }

  async fill(planned: PlannedSource, { id, backend, record }: VolumeTarget): Promise<void> {
    const { source, credentials } = planned as Planned;
    await this.service.register({
      id,
      volumeDir: await backend.shareDirectory(record),
      stateDir: syncStateDir(await backend.metadataDirectory(), id),
      spec: source.spec,
      ...(source.secretRef ? { secretRef: source.secretRef } : {}),
      ...(source.pvc ? { pvc: source.pvc } : {}),
    });
    try {
      await this.service.initialFill(id, credentials ? { credentials } : {});
    } catch (err) {
      throw err instanceof SyncError ? new CsiError(statusForSyncError(err), fillMessage(err)) : err;
    }
  }

  async filled({ id, backend }: VolumeTarget): Promise<boolean> {
    const status = await readSyncStatus(syncStateDir(await backend.metadataDirectory(), id));
    return status?.lastSuccess !== undefined;
  }

  async release({ id, backend }: VolumeTarget): Promise<void> {
    try {
      await this.service.unregister(id, syncStateDir(await backend.metadataDirectory(), id));
    } catch (err) {
      throw err instanceof SyncError ? new CsiError(statusForSyncError(err), err.message) : err;
    }
  }
}

function classPolicy(parameters: Record<string, string>) {
  try {
    return parseClassPolicy(parameters);
  } catch (err) {
    throw err instanceof SourceSpecError ? invalidArgument(err.message) : err;
  }
}

function fillMessage(err: SyncError): string {
  const next = err.permanent ? 'fix the source or its Secret' : 'the next CreateVolume starts it again';
  return `first fill from the source failed (${err.reason}): ${err.message}; nothing was kept, ${next}`;
}

function credentialsOrInvalid(source: VolumeSource, secrets: Record<string, string>): SourceCredentials {
  try {
    return credentialsFromSecret(source.spec.type, secrets);
  } catch (err) {
    if (err instanceof SyncError)
      throw new CsiError(statusForSyncError(err), `provisioner secrets: ${err.message}`);
    throw err;
  }
}
