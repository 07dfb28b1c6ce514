import * as fs from 'node:fs';
import { promisify } from 'node:util';
import type { Backend } from '../backends/backend.js';
import { failedPrecondition, notFound } from '../rpc/errors.js';
import type { SnapshotRecord } from './catalog.js';
import type { SnapshotStore, StoredSnapshot, WriteJob } from './store.js';

const lstat = promisify(fs.lstat);

const exists = (path: string) =>
  lstat(path).then(
    () => true,
    () => false,
  );

function native(backend: Backend) {
  if (!backend.nativeSnapshots)
    throw failedPrecondition(`backend ${backend.instance} has no native snapshots`);
  return backend.nativeSnapshots;
}

/**
 * Read-only btrfs snapshots, in the backend's `.sharedvolume/snapshots/data/<token>`: instant,
 * point-in-time, and sharing extents with the volume. A restore is a writable snapshot of it.
 */
export const btrfsStore: SnapshotStore = {
  async write({ record, catalog, backend, sourceDir }: WriteJob): Promise<SnapshotRecord> {
    const target = catalog.dataPath(record.token);
    // Left by a crash between the snapshot and the record saying it is ready.
    if (await exists(target)) await native(backend).remove(target);
    await native(backend).create(sourceDir, target);
    return { ...record, state: 'ready' };
  },

  async filling({ record, catalog }: StoredSnapshot) {
    if (!catalog) throw notFound(`snapshot "${record.id}" has no catalog on any configured backend`);
    const from = catalog.dataPath(record.token);
    if (!(await exists(from)))
      throw notFound(`the btrfs snapshot "${record.id}" is missing from the backend`);
    return { kind: 'copy' as const, from };
  },

  async remove({ record, catalog }: StoredSnapshot, backend: Backend) {
    if (!catalog) return;
    const target = catalog.dataPath(record.token);
    if (await exists(target)) await native(backend).remove(target);
  },
};
