import { z } from 'zod';
import { invalidArgument, describeZodError } from '../rpc/errors.js';
import type { OnDelete, ShareParams } from './backend.js';

/** Keys external-provisioner adds with --extra-create-metadata; usable in subDir templates. */
export const PVC_NAME = 'csi.storage.k8s.io/pvc/name';
export const PVC_NAMESPACE = 'csi.storage.k8s.io/pvc/namespace';
export const PV_NAME = 'csi.storage.k8s.io/pv/name';
export const PROVISIONER_METADATA_KEYS = [PVC_NAME, PVC_NAMESPACE, PV_NAME];

const octalMode = z
  .string()
  .regex(/^0?[0-7]{1,4}$/, 'must be an octal mode such as "0775" (or "0" to leave the mode alone)');

const mountOptionList = z
  .string()
  .regex(/^[A-Za-z0-9_.=:/,+-]*$/, 'must be a comma-separated list of mount options')
  .meta({ examples: ['nfsvers=4.1,hard'] });

/** Keys every directory-per-volume backend accepts. */
export const commonParamsShape = {
  backend: z.string().optional().meta({
    description:
      'Backend instance to provision on (a name from --backends). Default: the first configured instance.',
  }),
  subDir: z
    .string()
    .min(1)
    .max(200)
    .optional()
    .meta({
      description:
        'Directory of each volume, relative to the backend root. Template variables: ${pvc.metadata.name}, ${pvc.metadata.namespace}, ${pv.metadata.name}. Default: the volume name.',
      examples: ['${pvc.metadata.namespace}/${pvc.metadata.name}'],
    }),
  onDelete: z.enum(['delete', 'retain', 'archive']).default('delete').meta({
    description: 'What DeleteVolume does with the data: remove it, keep it, or rename it to archived-<dir>.',
  }),
  mountPermissions: octalMode.default('0').meta({
    description: 'Mode set on the new volume directory. "0" leaves the mode mkdir gave it.',
    examples: ['0775'],
  }),
  [PVC_NAME]: z
    .string()
    .optional()
    .meta({ description: 'Set by external-provisioner (--extra-create-metadata).' }),
  [PVC_NAMESPACE]: z
    .string()
    .optional()
    .meta({ description: 'Set by external-provisioner (--extra-create-metadata).' }),
  [PV_NAME]: z
    .string()
    .optional()
    .meta({ description: 'Set by external-provisioner (--extra-create-metadata).' }),
};

export const mountOptionsShape = {
  mountOptions: mountOptionList.default('').meta({
    description:
      'Comma-separated options for every mount of the share: node stage, and controller create, delete and archive.',
  }),
};

/** Parses raw parameters; unknown keys and bad values become INVALID_ARGUMENT naming the key. */
export function parseWith<T extends z.ZodObject>(schema: T, raw: Record<string, string>): z.output<T> {
  const result = schema.safeParse(raw);
  if (result.success) return result.data;
  const allowed = Object.keys(schema.shape).join(', ');
  throw invalidArgument(`${describeZodError(result.error)} (allowed keys: ${allowed})`);
}

export interface CommonParsed {
  subDir?: string | undefined;
  onDelete: OnDelete;
  mountPermissions: string;
  mountOptions?: string;
}

export function toShareParams(parsed: CommonParsed): ShareParams {
  const mode = parseInt(parsed.mountPermissions, 8);
  return {
    subDir: parsed.subDir ?? '${pv.metadata.name}',
    onDelete: parsed.onDelete,
    mountPermissions: mode === 0 ? undefined : mode,
    mountOptions: (parsed.mountOptions ?? '').split(',').filter(Boolean),
  };
}

/** The parameters that define a volume for idempotency: everything but provisioner metadata. */
export function fingerprintParameters(raw: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of Object.keys(raw).sort()) {
    if (!PROVISIONER_METADATA_KEYS.includes(key)) out[key] = raw[key]!;
  }
  return out;
}
