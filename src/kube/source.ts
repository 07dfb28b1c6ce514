import { parse as parseYaml } from 'yaml';
import {
  ALLOW_PVC_SOURCE,
  classDefaults,
  parseSourceParameters,
  parseClassPolicy,
  parseSourceSpec,
  SourceSpecError,
  splitSourceParameters,
  type SourceSpec,
} from '../populator/spec.js';
import { CsiError, failedPrecondition, invalidArgument, notFound, unavailable } from '../rpc/errors.js';
import { KubeApiError, type KubeClientFactory, type Pvc, type PvcRef } from './client.js';

/**
 * Which source fills a new volume: the StorageClass's (`source.*` parameters) or, when the class
 * allows it, the PVC's own `sharedvolume.io/source` annotation. The cluster admin owns the class;
 * tenants own PVCs, so a PVC's source may only name Secrets in the PVC's own namespace.
 */

export const SOURCE_ANNOTATION = 'sharedvolume.io/source';

export interface SecretRef {
  namespace: string;
  name: string;
}

export interface VolumeSource {
  spec: SourceSpec;
  /** The Secret to read credentials from at every sync. */
  secretRef?: SecretRef;
  origin: 'storageclass' | 'pvc';
  /** The PVC, for Events; `uid` is known when it was read. */
  pvc?: PvcRef;
}

export interface SourceRequest {
  /** CreateVolume's parameters; only the populator's keys are looked at. */
  parameters: Record<string, string>;
  /** From `csi.storage.k8s.io/pvc/namespace` and `/pvc/name` (external-provisioner --extra-create-metadata). */
  pvc?: { namespace: string; name: string };
  kube: KubeClientFactory;
}

/**
 * The effective source of a volume, or undefined for a plain volume. Throws CsiError:
 * INVALID_ARGUMENT naming the parameter or annotation key at fault, NOT_FOUND or UNAVAILABLE when
 * the PVC cannot be read. The annotation is read only when the class sets allowPVCSource: "true".
 */
export async function resolveVolumeSource(request: SourceRequest): Promise<VolumeSource | undefined> {
  const { source: params } = splitSourceParameters(request.parameters);
  const pvcRef = request.pvc && { namespace: request.pvc.namespace, name: request.pvc.name };
  if (!allowsPvcSource(params)) return fromClass(params, pvcRef);
  if (!pvcRef) {
    throw invalidArgument(
      `parameter "${ALLOW_PVC_SOURCE}": the PVC's name and namespace are unknown; run external-provisioner with --extra-create-metadata`,
    );
  }
  const classSpec = parseClassDefaults(params);
  const pvc = await readPvc(request.kube, pvcRef);
  const annotation = pvc.annotations[SOURCE_ANNOTATION];
  if (annotation === undefined) return hasClassSource(params) ? fromClass(params, pvc) : undefined;
  return fromAnnotation(annotation, params, classSpec, pvc);
}

function allowsPvcSource(params: Record<string, string>): boolean {
  return specOrInvalid(() => parseClassPolicy(params), '').allowPVCSource;
}

const hasClassSource = (params: Record<string, string>) =>
  Object.keys(params).some((key) => key.startsWith('source.'));

function fromClass(params: Record<string, string>, pvc: PvcRef | undefined): VolumeSource | undefined {
  const spec = specOrInvalid(() => parseSourceParameters(params), '');
  if (!spec) return undefined;
  return { spec, secretRef: classSecretRef(spec, pvc), origin: 'storageclass', ...(pvc ? { pvc } : {}) };
}

/** A class may name a Secret anywhere; without a namespace it is the PVC's own. */
function classSecretRef(spec: SourceSpec, pvc: PvcRef | undefined): SecretRef | undefined {
  if (!spec.secretRef) return undefined;
  const namespace = spec.secretRef.namespace ?? pvc?.namespace;
  if (!namespace) {
    throw invalidArgument(
      'parameter "source.secretRef.namespace": required when the PVC\'s namespace is unknown (external-provisioner --extra-create-metadata)',
    );
  }
  return { namespace, name: spec.secretRef.name };
}

/**
 * The class's syncInterval, limits and the like, validated on their own (with a placeholder source)
 * so that errors name the class's keys even when every PVC brings its own source.
 */
function parseClassDefaults(params: Record<string, string>): SourceSpec {
  const placeholder = hasClassSource(params)
    ? params
    : { ...params, 'source.type': 'http', 'source.http.url': 'http://class-defaults.invalid/' };
  return specOrInvalid(() => parseSourceParameters(placeholder), '')!;
}

function fromAnnotation(
  text: string,
  params: Record<string, string>,
  classSpec: SourceSpec,
  pvc: Pvc,
): VolumeSource {
  const where = `annotation "${SOURCE_ANNOTATION}" of PVC ${pvc.namespace}/${pvc.name}: `;
  const raw = parseAnnotation(text, where);
  const namespace = (raw.secretRef as { namespace?: unknown } | undefined)?.namespace;
  if (namespace !== undefined && namespace !== pvc.namespace) {
    throw invalidArgument(
      `${where}parameter "secretRef.namespace": a PVC may only use Secrets in its own namespace "${pvc.namespace}"`,
    );
  }
  // The class's keys are defaults the annotation may override; its limits are ceilings.
  const spec = specOrInvalid(() => parseSourceSpec({ ...classDefaults(params), ...raw }), where)!;
  spec.limits = capLimits(spec.limits, classSpec.limits, params);
  const secretRef = spec.secretRef && { namespace: pvc.namespace, name: spec.secretRef.name };
  return {
    spec,
    ...(secretRef ? { secretRef } : {}),
    origin: 'pvc',
    pvc: { namespace: pvc.namespace, name: pvc.name, uid: pvc.uid },
  };
}

function parseAnnotation(text: string, where: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = parseYaml(text);
  } catch (err) {
    throw invalidArgument(`${where}not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalidArgument(`${where}must be a YAML mapping with "type" and that type's keys`);
  }
  return value as Record<string, unknown>;
}

function capLimits(
  limits: SourceSpec['limits'],
  ceilings: SourceSpec['limits'],
  params: Record<string, string>,
): SourceSpec['limits'] {
  const out = { ...limits };
  if (params['limits.maxBytes'] !== undefined && ceilings.maxBytes !== undefined) {
    out.maxBytes = Math.min(out.maxBytes ?? Infinity, ceilings.maxBytes);
  }
  if (params['limits.maxFiles'] !== undefined) out.maxFiles = Math.min(out.maxFiles, ceilings.maxFiles);
  return out;
}

function specOrInvalid<T>(parse: () => T, where: string): T {
  try {
    return parse();
  } catch (err) {
    if (err instanceof SourceSpecError) throw invalidArgument(`${where}${err.message}`);
    throw err;
  }
}

async function readPvc(kube: KubeClientFactory, ref: PvcRef): Promise<Pvc> {
  try {
    return await (await kube()).readPvc(ref.namespace, ref.name);
  } catch (err) {
    throw csiErrorForKube(err);
  }
}

/** API failures as the CO should see them: a missing PVC is final, RBAC is the admin's to fix. */
export function csiErrorForKube(err: unknown): CsiError {
  if (err instanceof CsiError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (!(err instanceof KubeApiError)) return unavailable(message);
  if (err.status === 404) return notFound(message);
  if (err.status === 401 || err.status === 403) {
    return failedPrecondition(`${message} (check the sharedvolume-csi-driver ClusterRole)`);
  }
  return unavailable(message);
}
