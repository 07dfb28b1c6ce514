import { z } from 'zod';
import { parseWith } from '../backends/params.js';
import { invalidArgument } from '../rpc/errors.js';
import { isValidBucket, isValidPrefix } from './snapshot-id.js';
import { COMPRESSIONS, type Compression } from './stream.js';

/** Keys external-snapshotter adds with --extra-create-metadata. */
const SNAPSHOT_METADATA_KEYS = [
  'csi.storage.k8s.io/volumesnapshot/name',
  'csi.storage.k8s.io/volumesnapshot/namespace',
  'csi.storage.k8s.io/volumesnapshotcontent/name',
];

/** VolumeSnapshotClass parameters: the single source for validation and for the table in docs/snapshots.md. */
export const snapshotParamsSchema = z.strictObject({
  snapshotLocation: z
    .string()
    .default('backend')
    .meta({
      description:
        'Where snapshots are kept: "backend" (beside the volume, on the same backend instance) or "s3://bucket/prefix" (an S3 bucket; credentials from the snapshotter secret).',
      examples: ['s3://backups/k8s'],
    }),
  snapshotType: z.enum(['archive', 'native']).default('archive').meta({
    description:
      'With snapshotLocation "backend": "archive" (a tar archive, any backend) or "native" (a read-only btrfs snapshot; local backend on btrfs with quota enabled).',
  }),
  compression: z
    .enum(COMPRESSIONS)
    .optional()
    .meta({ description: 'Compression of archives. Default: zstd. Not allowed with snapshotType "native".' }),
  s3Endpoint: z
    .url()
    .optional()
    .meta({
      description: 'S3 API endpoint, for S3-compatible stores (MinIO, Ceph RGW). Default: AWS, for s3Region.',
      examples: ['https://minio.storage.svc:9000'],
    }),
  s3Region: z.string().min(1).default('us-east-1').meta({ description: 'S3 region.' }),
  s3ForcePathStyle: z.enum(['true', 'false']).optional().meta({
    description: 'Address buckets as endpoint/bucket, not bucket.endpoint. Default: true with s3Endpoint.',
  }),
  ...Object.fromEntries(
    SNAPSHOT_METADATA_KEYS.map((key) => [
      key,
      z.string().optional().meta({ description: 'Set by external-snapshotter (--extra-create-metadata).' }),
    ]),
  ),
});

export interface S3Location {
  bucket: string;
  prefix: string;
  endpoint: string | undefined;
  region: string;
  forcePathStyle: boolean;
}

export type SnapshotPlan =
  | { type: 'archive'; compression: Compression }
  | { type: 'btrfs' }
  | { type: 's3'; compression: Compression; s3: S3Location };

function parseS3Url(url: string): { bucket: string; prefix: string } {
  const match = /^s3:\/\/([^/]+)\/?(.*?)\/?$/.exec(url);
  if (!match || !isValidBucket(match[1]!) || !isValidPrefix(match[2]!)) {
    throw invalidArgument(
      `parameter "snapshotLocation": "${url}" is not s3://bucket[/prefix] (bucket: 3-63 lowercase letters, digits, "." or "-"; prefix: segments of letters, digits, "_", ".", "-")`,
    );
  }
  return { bucket: match[1]!, prefix: match[2]! };
}

/** Validates the class parameters into what CreateSnapshot will do (INVALID_ARGUMENT naming the key). */
export function planSnapshot(raw: Record<string, string>): SnapshotPlan {
  const params = parseWith(snapshotParamsSchema, raw);
  const { snapshotLocation: location, snapshotType: type, compression } = params;
  if (location === 'backend') {
    if (type === 'archive') return { type: 'archive', compression: compression ?? 'zstd' };
    if (compression) throw invalidArgument('parameter "compression": native snapshots are not archives');
    return { type: 'btrfs' };
  }
  if (!location.startsWith('s3://')) {
    throw invalidArgument(
      `parameter "snapshotLocation": expected "backend" or "s3://bucket/prefix", got "${location}"`,
    );
  }
  if (type === 'native')
    throw invalidArgument('parameter "snapshotType": "native" needs snapshotLocation "backend"');
  const endpoint = params.s3Endpoint;
  return {
    type: 's3',
    compression: compression ?? 'zstd',
    s3: {
      ...parseS3Url(location),
      endpoint,
      region: params.s3Region,
      forcePathStyle: params.s3ForcePathStyle ? params.s3ForcePathStyle === 'true' : endpoint !== undefined,
    },
  };
}
