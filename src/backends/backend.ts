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

/** Where a volume's initial content comes from: CreateVolume's volume_content_source. */
export interface ContentSource {
  kind: 'volume' | 'snapshot';
  id: string;
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
  /** Set for clones and restores; part of the idempotency check. */
  contentSource?: ContentSource;
  /** Extra volume_context, fixed at creation (CSI: the same on every call for this volume). */
  volumeContext?: Record<string, string>;
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
  contentSource?: ContentSource;
  volumeContext?: Record<string, string>;
}

/** How a new volume gets its content: a copy of a directory tree, or whatever `write` puts into it. */
export type Filling =
  { kind: 'copy'; from: string } | { kind: 'write'; write: (dir: string) => Promise<void> };

export interface DeleteOptions {
  /** Removes the data whatever the volume's onDelete says: a volume that never became usable. */
  discard?: boolean;
  /** Runs once the record is read, before anything is removed; a failure stops the deletion. */
  beforeDelete?: (record: VolumeRecord) => Promise<void>;
}

/** Byte usage of a mounted volume, for NodeGetVolumeStats where statfs does not show the limit. */
export interface VolumeUsage {
  totalBytes: number;
  usedBytes: number;
  availableBytes: number;
}

/** Read-only point-in-time copies made by the storage itself: btrfs today, CephFS later. */
export interface NativeSnapshots {
  readonly kind: string;
  /** Whether this volume directory can be snapshotted natively (a btrfs subvolume, for example). */
  supports(volumeDir: string): Promise<boolean>;
  /** Makes a read-only snapshot of `volumeDir` at `target`, which must not exist yet. */
  create(volumeDir: string, target: string): Promise<void>;
  remove(target: string): Promise<void>;
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
  /** Creates the share; for a name that already has one, returns that volume's record, untouched. */
  createShare(input: CreateShareInput): Promise<VolumeRecord>;
  /** Creates a volume whose content is filled in a staging directory before it appears under its path. */
  createFilledShare(input: CreateShareInput, filling: Filling): Promise<VolumeRecord>;
  /** Raises the capacity: always in the record, and in the enforced limit where the backend has one. */
  expandShare(path: string, capacityBytes: number): Promise<VolumeRecord>;
  /** The volume's directory as this controller reaches it. */
  shareDirectory(record: VolumeRecord): Promise<string>;
  /** A directory on the backend outside every volume, for the driver's own data (snapshots). */
  metadataDirectory(): Promise<string>;
  readonly nativeSnapshots?: NativeSnapshots;
  /** Node side: usage of a mounted volume where statfs does not show its limit (btrfs qgroups). */
  volumeUsage?(mountedPath: string): Promise<VolumeUsage | undefined>;
  /** Returns false when there was nothing to delete. */
  deleteShare(path: string, options?: DeleteOptions): Promise<boolean>;
  getRecord(path: string): Promise<VolumeRecord | undefined>;
  findByName(name: string): Promise<VolumeRecord | undefined>;
  /** Record paths in a stable order, starting after `after`. */
  listRecords(after: string | undefined, limit: number): Promise<VolumeRecord[]>;
  shareExists(path: string): Promise<boolean>;
  nodeMount(path: string, volumeContext: Record<string, string>): MountSpec;
  close(): Promise<void>;
}
