import type { Backend, ContentSource, CreateShareInput, VolumeRecord } from '../backends/backend.js';
import type { BackendRegistry } from '../backends/registry.js';
import { fingerprintParameters, PVC_NAME, PVC_NAMESPACE } from '../backends/params.js';
import { MOUNT_OPTIONS_CONTEXT } from '../backends/nfs/index.js';
import {
  aborted,
  alreadyExists,
  failedPrecondition,
  invalidArgument,
  notFound,
  outOfRange,
} from '../rpc/errors.js';
import type { CallContext } from '../rpc/handler.js';
import type { ContentSources } from './content.js';
import { Operations } from './operations.js';
import {
  READ_ONLY_CONTEXT,
  withoutPopulator,
  type PlannedSource,
  type Population,
  type PopulationRequest,
  type VolumeTarget,
} from './population.js';
import { classMayHaveSource, splitSourceParameters } from '../populator/spec.js';
import { renderSubDir } from './template.js';
import { formatVolumeId, parseVolumeId, type VolumeRef } from './volume-id.js';

export interface CapacityRequest {
  requiredBytes: number;
  limitBytes: number;
}

export interface CreateRequest {
  name: string;
  capacity: CapacityRequest;
  parameters: Record<string, string>;
  /** The call's secrets: a snapshot store or a populator source may need them. */
  secrets: Record<string, string>;
  /** volume_content_source: a clone or a restore. */
  contentSource?: ContentSource;
}

export interface Volume {
  id: string;
  record: VolumeRecord;
  context: Record<string, string>;
}

export interface VolumeCondition {
  abnormal: boolean;
  message: string;
}

export interface ListedVolume {
  volume: Volume;
  condition: VolumeCondition;
}

/** Resolves the capacity to provision: the request if any, else the limit, else 0 (unspecified). */
export function resolveCapacity({ requiredBytes, limitBytes }: CapacityRequest): number {
  if (limitBytes > 0 && requiredBytes > limitBytes) {
    throw outOfRange(`required_bytes ${requiredBytes} exceeds limit_bytes ${limitBytes}`);
  }
  return requiredBytes > 0 ? requiredBytes : limitBytes;
}

function satisfies(capacity: number, { requiredBytes, limitBytes }: CapacityRequest): boolean {
  return capacity >= requiredBytes && (limitBytes === 0 || capacity <= limitBytes);
}

function sameParameters(a: Record<string, string>, b: Record<string, string>): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export function volumeContext(record: VolumeRecord): Record<string, string> {
  const context: Record<string, string> = { ...record.volumeContext };
  if (record.mountOptions.length > 0) context[MOUNT_OPTIONS_CONTEXT] = record.mountOptions.join(',');
  return context;
}

const LIST_TOKEN_PREFIX = 'v1:';

/** The controller's domain: volumes on backends, free of CSI message shapes. */
export class Provisioner {
  private population: Population = withoutPopulator;

  constructor(
    private readonly backends: BackendRegistry,
    private readonly content?: ContentSources,
    private readonly operations = new Operations(),
  ) {}

  /** The populator, once the driver has loaded it (--populator). */
  attachPopulation(population: Population): void {
    this.population = population;
  }

  private toVolume(backend: Backend, record: VolumeRecord): Volume {
    return {
      id: formatVolumeId({ instance: backend.instance, path: record.path }),
      record,
      context: volumeContext(record),
    };
  }

  backendFor(parameters: Record<string, string>): Backend {
    const backend = this.backends.select(parameters.backend);
    if (!backend) {
      const known = this.backends
        .all()
        .map((b) => b.instance)
        .join(', ');
      throw invalidArgument(
        `parameter "backend": no backend instance "${parameters.backend}" (configured: ${known})`,
      );
    }
    return backend;
  }

  async create(request: CreateRequest, call?: CallContext): Promise<Volume> {
    const { name, capacity, parameters, contentSource: source } = request;
    const backend = this.backendFor(parameters);
    const { source: sourceKeys, rest } = splitSourceParameters(parameters);
    const share = backend.parseParameters(rest);
    const capacityBytes = resolveCapacity(capacity);
    const populated = Object.keys(sourceKeys).length > 0;
    if (populated && source) {
      throw invalidArgument('volume_content_source cannot be combined with a populator source (source.*)');
    }
    const fingerprint = fingerprintParameters(parameters);
    // A plain volume's name is looked up by the backend's create itself (one round trip fewer).
    const existing = populated || source ? await backend.findByName(name) : undefined;
    if (existing) this.checkCompatible(existing, capacity, fingerprint, source);
    if (existing && !populated) return this.toVolume(backend, existing);

    const path = existing?.path ?? renderSubDir(share.subDir, name, parameters);
    formatVolumeId({ instance: backend.instance, path });
    const input = { name, path, capacityBytes, parameters: fingerprint, share };
    if (populated) {
      const population = {
        parameters: sourceKeys,
        capacityBytes,
        secrets: request.secrets,
        pvc: pvcOf(rest),
      };
      return this.createPopulated(backend, input, population, existing, call);
    }
    const record = source
      ? await this.createWithContent(backend, { ...input, contentSource: source }, request, call)
      : await this.createPlain(backend, input);
    return this.toVolume(backend, this.checkCompatible(record, capacity, fingerprint, source));
  }

  /** Creates the share, or finds the one the name already has (its compatibility is checked after). */
  private async createPlain(backend: Backend, input: CreateShareInput): Promise<VolumeRecord> {
    if (input.capacityBytes > 0) {
      try {
        await this.checkFits(backend, input.capacityBytes);
      } catch (err) {
        const existing = await backend.findByName(input.name);
        if (existing) return existing;
        throw err;
      }
    }
    return backend.createShare(input);
  }

  /**
   * A volume filled by the populator: the source is checked before anything is made; the share, its
   * registration and its first fill run as an operation (ABORTED until done). A fill that fails takes
   * the share and its sync state with it. A volume a crash left unfilled is filled by the next call.
   */
  private async createPopulated(
    backend: Backend,
    input: CreateShareInput,
    request: PopulationRequest,
    existing: VolumeRecord | undefined,
    call: CallContext | undefined,
  ): Promise<Volume> {
    const planned = await this.population.plan(request);
    if (!planned) return this.plainAfterAll(backend, input, existing);
    if (existing && (await this.population.filled(this.target(backend, existing)))) {
      return this.toVolume(backend, existing);
    }
    // In the record, so that every later call reports the same volume_context.
    const filled = planned.readOnly ? { ...input, volumeContext: { [READ_ONLY_CONTEXT]: 'true' } } : input;
    const record = await this.operations.run(
      `CreateVolume/${input.name}`,
      async () => {
        if (input.capacityBytes > 0) await this.checkFits(backend, input.capacityBytes);
        return () => this.fillNew(backend, filled, planned);
      },
      call,
    );
    return this.toVolume(backend, record);
  }

  private async fillNew(backend: Backend, input: CreateShareInput, planned: PlannedSource) {
    const record = (await backend.findByName(input.name)) ?? (await backend.createShare(input));
    const target = this.target(backend, record);
    try {
      await this.population.fill(planned, target);
      return record;
    } catch (err) {
      // Registration first, so that no replica syncs into a directory about to go.
      try {
        await this.population.release(target);
      } finally {
        await backend.deleteShare(record.path, { discard: true });
      }
      throw err;
    }
  }

  /** A class that allows PVC sources, for a PVC that brings none: an ordinary volume. */
  private async plainAfterAll(backend: Backend, input: CreateShareInput, existing: VolumeRecord | undefined) {
    return this.toVolume(backend, existing ?? (await this.createPlain(backend, input)));
  }

  private target(backend: Backend, record: VolumeRecord): VolumeTarget {
    return { id: formatVolumeId({ instance: backend.instance, path: record.path }), backend, record };
  }

  /** A backend that only records capacity cannot hold a volume larger than itself. */
  private async checkFits(backend: Backend, capacityBytes: number): Promise<void> {
    const { totalBytes, enforced } = await backend.capacity();
    if (capacityBytes > totalBytes && !enforced) {
      throw outOfRange(
        `requested ${capacityBytes} bytes, but backend ${backend.instance} has ${totalBytes} bytes in all`,
      );
    }
  }

  /**
   * Clone or restore: the source is resolved (NOT_FOUND, OUT_OF_RANGE) before anything is made; the
   * copy runs as an operation that outlives this call, answered ABORTED until it is done.
   */
  private async createWithContent(
    backend: Backend,
    input: CreateShareInput & { contentSource: ContentSource },
    request: CreateRequest,
    call: CallContext | undefined,
  ): Promise<VolumeRecord> {
    const source = input.contentSource;
    return this.operations.run(
      `CreateVolume/${input.name}`,
      async () => {
        if (!this.content) throw invalidArgument('volume_content_source is not supported');
        const resolved = await this.content.resolve(source, request.secrets);
        const capacityBytes = input.capacityBytes || resolved.sizeBytes;
        if (capacityBytes < resolved.sizeBytes) {
          throw outOfRange(
            `requested ${capacityBytes} bytes, but the ${source.kind} "${source.id}" needs at least ${resolved.sizeBytes}`,
          );
        }
        if (capacityBytes > 0) await this.checkFits(backend, capacityBytes);
        return async () => {
          // A call that found no record may race the commit of the work it would have joined.
          const done = await backend.findByName(input.name);
          return done ?? backend.createFilledShare({ ...input, capacityBytes }, resolved.filling);
        };
      },
      call,
    );
  }

  /**
   * Raises a volume's capacity. A request at or below the current capacity is already satisfied
   * (volumes never shrink); a limit below it cannot be met. Returns the capacity after the call; a
   * volume created without a capacity has no limit and satisfies any request.
   */
  async expand(id: string, capacity: CapacityRequest): Promise<number> {
    if (capacity.requiredBytes === 0 && capacity.limitBytes === 0) {
      throw invalidArgument('capacity_range is required');
    }
    const wanted = resolveCapacity(capacity);
    const found = this.resolve(id);
    const record = found && (await found.backend.getRecord(found.ref.path));
    if (!found || !record) throw notFound(`volume "${id}" does not exist`);
    if (record.capacityBytes === 0) return wanted;
    if (capacity.limitBytes > 0 && record.capacityBytes > capacity.limitBytes) {
      throw outOfRange(
        `volume "${id}" already has ${record.capacityBytes} bytes, more than limit_bytes ${capacity.limitBytes}: volumes cannot shrink`,
      );
    }
    if (wanted <= record.capacityBytes) return record.capacityBytes;
    await this.checkFits(found.backend, wanted);
    return (await found.backend.expandShare(record.path, wanted)).capacityBytes;
  }

  private checkCompatible(
    record: VolumeRecord,
    capacity: CapacityRequest,
    fingerprint: Record<string, string>,
    source?: ContentSource,
  ) {
    if (!sameParameters(record.parameters, fingerprint)) {
      throw alreadyExists(`volume "${record.name}" already exists with different parameters`);
    }
    if (record.contentSource?.kind !== source?.kind || record.contentSource?.id !== source?.id) {
      throw alreadyExists(`volume "${record.name}" already exists with a different content source`);
    }
    if (!satisfies(record.capacityBytes, capacity)) {
      throw alreadyExists(
        `volume "${record.name}" already exists with capacity ${record.capacityBytes} bytes, outside the requested range`,
      );
    }
    return record;
  }

  /** Resolves an id to its backend; undefined when the id cannot be one of ours. */
  resolve(id: string): { ref: VolumeRef; backend: Backend } | undefined {
    const ref = parseVolumeId(id);
    if (!ref) return undefined;
    const backend = this.backends.get(ref.instance);
    if (!backend)
      throw failedPrecondition(
        `volume_id "${id}": backend instance "${ref.instance}" is not configured on this driver`,
      );
    return { ref, backend };
  }

  async delete(id: string): Promise<boolean> {
    const found = this.resolve(id);
    if (!found) return false;
    const { backend } = found;
    return backend.deleteShare(found.ref.path, {
      beforeDelete: async (record) => {
        if (classMayHaveSource(record.parameters)) await this.population.release({ id, backend, record });
      },
    });
  }

  async get(id: string): Promise<{ volume: Volume; condition: VolumeCondition }> {
    const found = this.resolve(id);
    const record = found && (await found.backend.getRecord(found.ref.path));
    if (!found || !record) throw notFound(`volume "${id}" does not exist`);
    return {
      volume: this.toVolume(found.backend, record),
      condition: await this.condition(found.backend, record),
    };
  }

  async condition(backend: Backend, record: VolumeRecord): Promise<VolumeCondition> {
    return (await backend.shareExists(record.path))
      ? { abnormal: false, message: 'volume directory present' }
      : {
          abnormal: true,
          message: `volume directory "${record.path}" is missing on backend ${backend.instance}`,
        };
  }

  /** Pages across instances in configuration order; the token names the last volume returned. */
  async list(token: string, maxEntries: number): Promise<{ volumes: ListedVolume[]; nextToken: string }> {
    const backends = this.backends.all();
    let start = 0;
    let after: string | undefined;
    if (token) {
      const ref = this.decodeToken(token);
      start = backends.findIndex((b) => b.instance === ref.instance);
      if (start < 0) throw aborted(`starting_token "${token}" names an unknown backend instance`);
      after = ref.path;
    }
    const limit = maxEntries > 0 ? maxEntries : Number.MAX_SAFE_INTEGER;
    const found: { backend: Backend; record: VolumeRecord }[] = [];
    for (let i = start; i < backends.length && found.length < limit + 1; i++) {
      const backend = backends[i]!;
      const records = await backend.listRecords(i === start ? after : undefined, limit + 1 - found.length);
      found.push(...records.map((record) => ({ backend, record })));
    }
    // VOLUME_CONDITION is advertised, so every entry carries its condition (health monitors read it from here).
    const volumes = await Promise.all(
      found.slice(0, limit).map(async ({ backend, record }) => ({
        volume: this.toVolume(backend, record),
        condition: await this.condition(backend, record),
      })),
    );
    if (found.length <= limit) return { volumes, nextToken: '' };
    return { volumes, nextToken: this.encodeToken(volumes[volumes.length - 1]!.volume.id) };
  }

  private encodeToken(id: string): string {
    return LIST_TOKEN_PREFIX + Buffer.from(id).toString('base64url');
  }

  private decodeToken(token: string): VolumeRef {
    const ref = token.startsWith(LIST_TOKEN_PREFIX)
      ? safeParse(Buffer.from(token.slice(LIST_TOKEN_PREFIX.length), 'base64url').toString())
      : undefined;
    if (!ref) throw aborted(`starting_token "${token}" was not issued by this driver`);
    return ref;
  }

  async capacity(parameters: Record<string, string>): Promise<number> {
    const backend = this.backendFor(parameters);
    backend.parseParameters(parameters);
    return (await backend.capacity()).availableBytes;
  }
}

function safeParse(id: string): VolumeRef | undefined {
  try {
    return parseVolumeId(id);
  } catch {
    return undefined;
  }
}

function pvcOf(parameters: Record<string, string>): { namespace: string; name: string } | undefined {
  const namespace = parameters[PVC_NAMESPACE];
  const name = parameters[PVC_NAME];
  return namespace && name ? { namespace, name } : undefined;
}
