import type { Backend, Filling } from '../backends/backend.js';
import type { SnapshotCatalog, SnapshotRecord } from './catalog.js';

/** Everything a store needs to write one snapshot. */
export interface WriteJob {
  record: SnapshotRecord;
  catalog: SnapshotCatalog;
  backend: Backend;
  /** The tree to save: the volume directory, or a read-only cut of it. */
  sourceDir: string;
  secrets: Record<string, string>;
  signal: AbortSignal;
}

/** Where in the catalog and store a snapshot's data lives. */
export interface StoredSnapshot {
  record: SnapshotRecord;
  /** Undefined only for an S3 snapshot found through its manifest, with no backend record. */
  catalog: SnapshotCatalog | undefined;
  secrets: Record<string, string>;
}

/** One place snapshots can live (beside the volume as an archive, btrfs, S3). */
export interface SnapshotStore {
  /** Writes the data; resolves to the record as it is once the data is complete and verified. */
  write(job: WriteJob): Promise<SnapshotRecord>;
  /** How to fill a new volume from a ready snapshot; NOT_FOUND when its data is gone. */
  filling(snapshot: StoredSnapshot): Promise<Filling>;
  /** Removes the snapshot's data, and whatever a write left behind; never touches the source volume. */
  remove(snapshot: StoredSnapshot, backend: Backend): Promise<void>;
}
