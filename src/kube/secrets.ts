import { credentialsFromSecret, type SourceCredentials } from '../populator/credentials.js';
import { syncError, type SyncError } from '../populator/errors.js';
import type { SourceType } from '../populator/spec.js';
import { KubeApiError, type KubeClientFactory } from './client.js';
import type { SecretRef } from './source.js';

/**
 * A source's credentials, read from its Secret at every sync (a rotated Secret takes effect at
 * the next sync, with no restart). Failures are SyncErrors, recorded like any failed sync.
 */
export async function readSourceCredentials(
  kube: KubeClientFactory,
  type: SourceType,
  ref: SecretRef,
): Promise<SourceCredentials> {
  let data: Record<string, Buffer>;
  try {
    data = await (await kube()).readSecret(ref.namespace, ref.name);
  } catch (err) {
    throw secretReadError(err, ref);
  }
  return credentialsFromSecret(type, data);
}

/** A missing or forbidden Secret needs a user's or admin's fix; anything else is retried. */
function secretReadError(err: unknown, ref: SecretRef): SyncError {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof KubeApiError && err.status === 404) {
    return syncError('auth', `Secret ${ref.namespace}/${ref.name} not found`, err);
  }
  if (err instanceof KubeApiError && (err.status === 401 || err.status === 403)) {
    return syncError('auth', `${message} (check the sharedvolume-csi-driver ClusterRole)`, err);
  }
  return syncError('network', `cannot read Secret ${ref.namespace}/${ref.name}: ${message}`, err);
}
