import type { z } from 'zod';
import type { MountSpec } from '../mount/mounter.js';

export type OnDelete = 'delete' | 'retain' | 'archive';

/** What every backend's StorageClass parameters resolve to, after its own schema has parsed them. */
export interface ShareParams {
  /** Template for the volume directory, relative to the backend root. */
  subDir: string;
  onDelete: OnDelete;
  /** Octal mode applied to the new directory; undefined leaves it as mkdir created it. */
  mountPermissions: number | undefined;
  /** Extra mount options for every mount of this share (nfs, glusterfs). */
  mountOptions: string[];
}

export interface VolumeRecord {
  version: 1;
  name: string;
  path: string;
  capacityBytes: number;
  /** Parameters as the CO sent them, minus provisioner metadata: the idempotency fingerprint. */
  parameters: Record<string, string>;
  onDelete: OnDelete;
  mountOptions: string[];
  createdAt: string;
}

export interface Capacity {
  totalBytes: number;
  availableBytes: number;
  /** Whether a volume's capacity is enforced by the backend (quota) or only recorded. */
  enforced: boolean;
}

export interface CreateShareInput {
  name: string;
  path: string;
  capacityBytes: number;
  parameters: Record<string, string>;
  share: ShareParams;
}

/**
 * One configured backend instance. The controller side creates and removes shares and keeps their
 * records on the backend itself; the node side only needs `nodeMount`.
 */
export interface Backend {
  readonly instance: string;
  readonly kind: string;
  /** StorageClass parameter schema for this kind; the single source for validation, types and docs. */
  readonly paramsSchema: z.ZodObject;
  /** Validates raw StorageClass parameters against `paramsSchema` (INVALID_ARGUMENT naming the key). */
  parseParameters(raw: Record<string, string>): ShareParams;
  /** Prepares what the backend owns on this host (e.g. creates a local root), once at controller start. */
  init?(): Promise<void>;
  probe(): Promise<void>;
  capacity(): Promise<Capacity>;
  createShare(input: CreateShareInput): Promise<VolumeRecord>;
  /** Returns false when there was nothing to delete. */
  deleteShare(path: string): Promise<boolean>;
  getRecord(path: string): Promise<VolumeRecord | undefined>;
  findByName(name: string): Promise<VolumeRecord | undefined>;
  /** Record paths in a stable order, starting after `after`. */
  listRecords(after: string | undefined, limit: number): Promise<VolumeRecord[]>;
  shareExists(path: string): Promise<boolean>;
  nodeMount(path: string, volumeContext: Record<string, string>): MountSpec;
  close(): Promise<void>;
}
