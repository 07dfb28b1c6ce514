import type { NodeHandlers } from '../generated/csi/v1/Node.js';
import type { VolumeCapability__Output } from '../generated/csi/v1/VolumeCapability.js';
import type { BackendRegistry } from '../backends/registry.js';
import type { ServiceSpecs } from '../rpc/handler.js';
import { failedPrecondition, invalidArgument, notFound } from '../rpc/errors.js';
import { required, requireCapability } from '../rpc/validate.js';
import { parseVolumeId } from '../volumes/volume-id.js';
import { READ_ONLY_CONTEXT } from '../volumes/population.js';
import type { StageRequest, VolumeMounts } from '../mount/volume-mounts.js';

const CAPABILITIES = [
  'STAGE_UNSTAGE_VOLUME',
  'GET_VOLUME_STATS',
  'VOLUME_CONDITION',
  'SINGLE_NODE_MULTI_WRITER',
  'VOLUME_MOUNT_GROUP',
] as const;

export interface NodeIdentity {
  nodeId: string;
  topology: Record<string, string>;
}

function parseGroup(value: string | undefined): number | undefined {
  if (!value) return undefined;
  if (!/^\d+$/.test(value)) throw invalidArgument(`volume_mount_group must be a numeric GID, got "${value}"`);
  return Number(value);
}

/** Node service: CSI messages in, VolumeMounts calls, CSI messages out. */
export function nodeService(
  backends: BackendRegistry,
  mounts: VolumeMounts,
  identity: NodeIdentity,
): ServiceSpecs<NodeHandlers> {
  function stageRequest(
    volumeId: string,
    stagingPath: string,
    capability: VolumeCapability__Output | null,
    context: Record<string, string>,
  ): StageRequest {
    const cap = requireCapability(capability);
    const ref = parseVolumeId(volumeId);
    if (!ref) throw notFound(`volume "${volumeId}" does not exist`);
    const backend = backends.get(ref.instance);
    if (!backend)
      throw failedPrecondition(
        `backend instance "${ref.instance}" is not configured on node ${identity.nodeId}`,
      );
    return {
      spec: backend.nodeMount(ref.path, context),
      stagingPath,
      mountFlags: cap.mount?.mount_flags ?? [],
      group: parseGroup(cap.mount?.volume_mount_group),
    };
  }

  return {
    NodeStageVolume: {
      volume: (req) => req.volume_id,
      handle: async (req) => {
        const id = required(req.volume_id, 'volume_id');
        const staging = required(req.staging_target_path, 'staging_target_path');
        await mounts.stage(stageRequest(id, staging, req.volume_capability, req.volume_context));
        return {};
      },
    },

    NodeUnstageVolume: {
      volume: (req) => req.volume_id,
      handle: async (req) => {
        required(req.volume_id, 'volume_id');
        await mounts.unstage(required(req.staging_target_path, 'staging_target_path'));
        return {};
      },
    },

    NodePublishVolume: {
      volume: (req) => req.volume_id,
      handle: async (req) => {
        const id = required(req.volume_id, 'volume_id');
        const target = required(req.target_path, 'target_path');
        // The spec's code for a stage-capable plugin called without a staging path.
        const staging = req.staging_target_path;
        if (!staging) throw failedPrecondition('staging_target_path is required: call NodeStageVolume first');
        const stage = stageRequest(id, staging, req.volume_capability, req.volume_context);
        // A populated volume is read-only for pods unless its class says writable.
        const readonly = req.readonly || req.volume_context[READ_ONLY_CONTEXT] === 'true';
        await mounts.publish({ stage, targetPath: target, readonly });
        return {};
      },
    },

    NodeUnpublishVolume: {
      volume: (req) => req.volume_id,
      handle: async (req) => {
        required(req.volume_id, 'volume_id');
        await mounts.unpublish(required(req.target_path, 'target_path'));
        return {};
      },
    },

    NodeGetVolumeStats: {
      quiet: true,
      handle: async (req) => {
        const id = required(req.volume_id, 'volume_id');
        const path = required(req.volume_path, 'volume_path');
        const { health, mounted } = await mounts.stats(path);
        if (health.state !== 'ok')
          return { usage: [], volume_condition: { abnormal: true, message: health.message } };
        const s = health.stats;
        // Where statfs shows the whole file system (btrfs), the backend knows the volume's own limit;
        // if it cannot tell, the file system's figures are still the truth about the path.
        const ref = parseVolumeId(id);
        const usage =
          ref &&
          backends
            .get(ref.instance)
            ?.volumeUsage?.(path)
            .catch(() => undefined);
        const bytes = (await usage) || {
          totalBytes: s.totalBytes,
          availableBytes: s.availableBytes,
          usedBytes: s.usedBytes,
        };
        return {
          usage: [
            {
              unit: 'BYTES',
              total: bytes.totalBytes,
              available: bytes.availableBytes,
              used: bytes.usedBytes,
            },
            { unit: 'INODES', total: s.totalInodes, available: s.freeInodes, used: s.usedInodes },
          ],
          volume_condition: mounted
            ? { abnormal: false, message: 'mounted and answering' }
            : { abnormal: true, message: `${path} is not a mount point` },
        };
      },
    },

    NodeGetInfo: {
      quiet: true,
      handle: async () => ({
        node_id: identity.nodeId,
        max_volumes_per_node: 0,
        ...(Object.keys(identity.topology).length > 0
          ? { accessible_topology: { segments: identity.topology } }
          : {}),
      }),
    },

    NodeGetCapabilities: {
      quiet: true,
      handle: async () => ({ capabilities: CAPABILITIES.map((type) => ({ rpc: { type } })) }),
    },
  };
}
