import { randomBytes } from 'node:crypto';
import { invalidArgument } from '../rpc/errors.js';
import { isValidInstanceName, MAX_ID_BYTES } from '../volumes/volume-id.js';

/**
 * Snapshot ids name where the snapshot is, so that an operator can find it from the
 * VolumeSnapshotContent alone, and a restore can find an S3 snapshot even after the backend that
 * recorded it is gone:
 *
 * - `<instance>/archive/<token>`: an archive in `.sharedvolume/snapshots/` of that backend instance;
 * - `<instance>/btrfs/<token>`: a read-only btrfs snapshot there;
 * - `<instance>/s3/<bucket>/<prefix>/<token>`: an archive in S3 (the prefix may be empty), recorded by
 *   that backend instance.
 *
 * `token` is 24 lowercase hex digits, random. An id is at most 128 bytes.
 */
export type SnapshotRef =
  | { instance: string; type: 'archive' | 'btrfs'; token: string }
  | { instance: string; type: 's3'; token: string; bucket: string; prefix: string };

export type SnapshotType = SnapshotRef['type'];

const TOKEN = /^[0-9a-f]{24}$/;
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const PREFIX_SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

export function newToken(): string {
  return randomBytes(12).toString('hex');
}

export function isValidBucket(bucket: string): boolean {
  return BUCKET.test(bucket) && !bucket.includes('..');
}

export function isValidPrefix(prefix: string): boolean {
  return prefix === '' || prefix.split('/').every((segment) => PREFIX_SEGMENT.test(segment));
}

export function formatSnapshotId(ref: SnapshotRef): string {
  const where = ref.type === 's3' ? `s3/${ref.bucket}/${ref.prefix ? `${ref.prefix}/` : ''}` : `${ref.type}/`;
  const id = `${ref.instance}/${where}${ref.token}`;
  if (Buffer.byteLength(id) > MAX_ID_BYTES) {
    throw invalidArgument(
      `snapshot id "${id}" would exceed ${MAX_ID_BYTES} bytes; use a shorter S3 bucket or prefix`,
    );
  }
  return id;
}

/** Undefined for an id that cannot be one of this driver's snapshots (callers answer NOT_FOUND or OK). */
export function parseSnapshotId(id: string): SnapshotRef | undefined {
  if (!id || Buffer.byteLength(id) > MAX_ID_BYTES) return undefined;
  const parts = id.split('/');
  const [instance, type] = parts;
  const token = parts[parts.length - 1]!;
  if (!instance || !isValidInstanceName(instance) || !TOKEN.test(token)) return undefined;
  if ((type === 'archive' || type === 'btrfs') && parts.length === 3) return { instance, type, token };
  if (type !== 's3' || parts.length < 4) return undefined;
  const bucket = parts[2]!;
  const prefix = parts.slice(3, -1).join('/');
  if (!isValidBucket(bucket) || !isValidPrefix(prefix)) return undefined;
  return { instance, type, token, bucket, prefix };
}
