import type { ControllerHandlers } from '../generated/csi/v1/Controller.js';
import type { Snapshot as CsiSnapshot } from '../generated/csi/v1/Snapshot.js';
import { invalidArgument } from '../rpc/errors.js';
import type { ServiceSpecs } from '../rpc/handler.js';
import { required } from '../rpc/validate.js';
import type { SnapshotRecord } from '../snapshots/catalog.js';
import type { Snapshotter } from '../snapshots/snapshotter.js';

/** The controller capabilities these handlers implement. */
export const SNAPSHOT_CAPABILITIES = ['CREATE_DELETE_SNAPSHOT', 'LIST_SNAPSHOTS'] as const;

function toCsiSnapshot(record: SnapshotRecord): CsiSnapshot {
  const created = Date.parse(record.createdAt);
  return {
    snapshot_id: record.id,
    source_volume_id: record.sourceVolumeId,
    size_bytes: record.sizeBytes,
    creation_time: { seconds: Math.floor(created / 1000), nanos: (created % 1000) * 1e6 },
    ready_to_use: record.state === 'ready',
  };
}

/** Controller snapshot RPCs: CSI messages in, Snapshotter calls, CSI messages out. */
export function snapshotHandlers(snapshotter: Snapshotter): ServiceSpecs<ControllerHandlers> {
  return {
    CreateSnapshot: {
      // Keyed apart from volumes, so that a snapshot and a volume of the same name do not block each other.
      volume: (req) => (req.name ? `snapshot/${req.name}` : undefined),
      handle: async (req, call) => {
        const name = required(req.name, 'name');
        const source = required(req.source_volume_id, 'source_volume_id');
        const record = await snapshotter.create(name, source, req.parameters, req.secrets, call);
        return { snapshot: toCsiSnapshot(record) };
      },
    },

    DeleteSnapshot: {
      volume: (req) => (req.snapshot_id ? `snapshot/${req.snapshot_id}` : undefined),
      handle: async (req) => {
        await snapshotter.delete(required(req.snapshot_id, 'snapshot_id'), req.secrets);
        return {};
      },
    },

    ListSnapshots: {
      quiet: true,
      handle: async (req) => {
        if (req.max_entries < 0) throw invalidArgument('max_entries must not be negative');
        const { records, nextToken } = await snapshotter.list({
          snapshotId: req.snapshot_id,
          sourceVolumeId: req.source_volume_id,
          startingToken: req.starting_token,
          maxEntries: req.max_entries,
          secrets: req.secrets,
        });
        return { entries: records.map((r) => ({ snapshot: toCsiSnapshot(r) })), next_token: nextToken };
      },
    },
  };
}
