import type { ControllerHandlers } from '../generated/csi/v1/Controller.js';
import type { Volume as CsiVolume } from '../generated/csi/v1/Volume.js';
import type { VolumeContentSource__Output } from '../generated/csi/v1/VolumeContentSource.js';
import type { ContentSource } from '../backends/backend.js';
import { SNAPSHOT_CAPABILITIES } from './snapshots.js';
import type { ServiceSpecs } from '../rpc/handler.js';
import { invalidArgument } from '../rpc/errors.js';
import { fingerprintParameters } from '../backends/params.js';
import {
  capabilityProblem,
  int64,
  required,
  requireCapabilities,
  requireCapability,
} from '../rpc/validate.js';
import type { Provisioner, Volume, VolumeCondition } from '../volumes/provisioner.js';

const CAPABILITIES = [
  'CREATE_DELETE_VOLUME',
  'LIST_VOLUMES',
  'GET_CAPACITY',
  'GET_VOLUME',
  'VOLUME_CONDITION',
  'SINGLE_NODE_MULTI_WRITER',
  'CLONE_VOLUME',
  'EXPAND_VOLUME',
  ...SNAPSHOT_CAPABILITIES,
] as const;

function toCsiVolume(volume: Volume): CsiVolume {
  const source = volume.record.contentSource;
  return {
    volume_id: volume.id,
    capacity_bytes: volume.record.capacityBytes,
    volume_context: volume.context,
    // external-provisioner refuses a restored or cloned volume whose answer does not name its source.
    ...(source
      ? {
          content_source:
            source.kind === 'snapshot'
              ? { snapshot: { snapshot_id: source.id } }
              : { volume: { volume_id: source.id } },
        }
      : {}),
  };
}

function contentSource(source: VolumeContentSource__Output | null): ContentSource | undefined {
  if (!source) return undefined;
  if (source.snapshot)
    return {
      kind: 'snapshot',
      id: required(source.snapshot.snapshot_id, 'volume_content_source.snapshot.snapshot_id'),
    };
  if (source.volume)
    return {
      kind: 'volume',
      id: required(source.volume.volume_id, 'volume_content_source.volume.volume_id'),
    };
  throw invalidArgument('volume_content_source names neither a snapshot nor a volume');
}

const toCsiCondition = (condition: VolumeCondition) => ({
  abnormal: condition.abnormal,
  message: condition.message,
});

/** Controller service: CSI messages in, Provisioner calls, CSI messages out. */
export function controllerService(provisioner: Provisioner): ServiceSpecs<ControllerHandlers> {
  return {
    CreateVolume: {
      volume: (req) => req.name,
      handle: async (req, call) => {
        const name = required(req.name, 'name');
        requireCapabilities(req.volume_capabilities);
        if (Object.keys(req.mutable_parameters).length > 0)
          throw invalidArgument('mutable_parameters are not supported');
        const capacity = {
          requiredBytes: int64(req.capacity_range?.required_bytes, 'capacity_range.required_bytes'),
          limitBytes: int64(req.capacity_range?.limit_bytes, 'capacity_range.limit_bytes'),
        };
        const source = contentSource(req.volume_content_source);
        const request = {
          name,
          capacity,
          parameters: req.parameters,
          secrets: req.secrets,
          ...(source ? { contentSource: source } : {}),
        };
        return { volume: toCsiVolume(await provisioner.create(request, call)) };
      },
    },

    ControllerExpandVolume: {
      volume: (req) => req.volume_id,
      handle: async (req) => {
        const id = required(req.volume_id, 'volume_id');
        if (req.volume_capability) requireCapability(req.volume_capability);
        if (!req.capacity_range) throw invalidArgument('capacity_range is required');
        const capacity = {
          requiredBytes: int64(req.capacity_range.required_bytes, 'capacity_range.required_bytes'),
          limitBytes: int64(req.capacity_range.limit_bytes, 'capacity_range.limit_bytes'),
        };
        // Shared file systems grow on the server: nothing for the node to do.
        return { capacity_bytes: await provisioner.expand(id, capacity), node_expansion_required: false };
      },
    },

    DeleteVolume: {
      volume: (req) => req.volume_id,
      handle: async (req) => {
        await provisioner.delete(required(req.volume_id, 'volume_id'));
        return {};
      },
    },

    ValidateVolumeCapabilities: {
      volume: (req) => req.volume_id,
      handle: async (req) => {
        const id = required(req.volume_id, 'volume_id');
        if (req.volume_capabilities.length === 0) throw invalidArgument('volume_capabilities is required');
        const { volume } = await provisioner.get(id);
        const problem = req.volume_capabilities.map(capabilityProblem).find(Boolean);
        if (problem) return { message: problem };
        const parameters = fingerprintParameters(req.parameters);
        if (
          Object.keys(parameters).length > 0 &&
          JSON.stringify(parameters) !== JSON.stringify(volume.record.parameters)
        ) {
          return { message: `parameters differ from those volume ${volume.id} was created with` };
        }
        return {
          confirmed: {
            volume_context: req.volume_context,
            volume_capabilities: req.volume_capabilities,
            parameters: req.parameters,
          },
        };
      },
    },

    ListVolumes: {
      quiet: true,
      handle: async (req) => {
        if (req.max_entries < 0) throw invalidArgument('max_entries must not be negative');
        const { volumes, nextToken } = await provisioner.list(req.starting_token, req.max_entries);
        const entries = volumes.map(({ volume, condition }) => ({
          volume: toCsiVolume(volume),
          status: { published_node_ids: [], volume_condition: toCsiCondition(condition) },
        }));
        return { entries, next_token: nextToken };
      },
    },

    GetCapacity: {
      quiet: true,
      handle: async (req) => {
        for (const cap of req.volume_capabilities) {
          if (capabilityProblem(cap)) return { available_capacity: 0 };
        }
        return { available_capacity: await provisioner.capacity(req.parameters) };
      },
    },

    ControllerGetVolume: {
      volume: (req) => req.volume_id,
      handle: async (req) => {
        const { volume, condition } = await provisioner.get(required(req.volume_id, 'volume_id'));
        return {
          volume: toCsiVolume(volume),
          status: { published_node_ids: [], volume_condition: toCsiCondition(condition) },
        };
      },
    },

    ControllerGetCapabilities: {
      quiet: true,
      handle: async () => ({ capabilities: CAPABILITIES.map((type) => ({ rpc: { type } })) }),
    },
  };
}
