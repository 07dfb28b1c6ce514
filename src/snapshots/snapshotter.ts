import * as fs from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'winston';
import type { Backend, VolumeRecord } from '../backends/backend.js';
import type { BackendRegistry } from '../backends/registry.js';
import {
  aborted,
  alreadyExists,
  failedPrecondition,
  internal,
  invalidArgument,
  notFound,
  unavailable,
} from '../rpc/errors.js';
import type { CallContext } from '../rpc/handler.js';
import type { ResolvedContent, SnapshotContent } from '../volumes/content.js';
import { Operations } from '../volumes/operations.js';
import { parseVolumeId } from '../volumes/volume-id.js';
import { archiveStore } from './archive.js';
import { btrfsStore } from './btrfs.js';
import { SnapshotCatalog, type SnapshotRecord } from './catalog.js';
import { planSnapshot } from './params.js';
import { readManifest, s3Store } from './s3.js';
import {
  formatSnapshotId,
  newToken,
  parseSnapshotId,
  type SnapshotRef,
  type SnapshotType,
} from './snapshot-id.js';
import type { SnapshotStore } from './store.js';

const lstat = promisify(fs.lstat);

const STORES: Record<SnapshotType, SnapshotStore> = { archive: archiveStore, btrfs: btrfsStore, s3: s3Store };

/** Without a caller deadline, CreateSnapshot waits this long, then answers ready_to_use false. */
const UNBOUNDED_WAIT_MS = 10_000;
const LIST_TOKEN_PREFIX = 'v1:';

export interface SnapshotQuery {
  snapshotId: string;
  sourceVolumeId: string;
  startingToken: string;
  maxEntries: number;
  secrets: Record<string, string>;
}

interface Place {
  backend: Backend;
  catalog: SnapshotCatalog;
}

const exists = (path: string) =>
  lstat(path).then(
    () => true,
    () => false,
  );

/**
 * The controller's snapshot domain: CreateSnapshot starts a job that writes the snapshot and returns
 * as soon as the job is done or the call's time is nearly up, with ready_to_use false until the data
 * is complete and verified. Records live on the source volume's backend, so a restart loses nothing;
 * a job a restart interrupted is started again by the next CreateSnapshot or ListSnapshots.
 */
export class Snapshotter implements SnapshotContent {
  private readonly catalogs = new Map<string, Promise<SnapshotCatalog>>();
  private readonly jobs = new Operations();
  private readonly cancels = new Map<string, AbortController>();

  constructor(
    private readonly backends: BackendRegistry,
    private readonly logger: Logger,
  ) {}

  private catalog(backend: Backend): Promise<SnapshotCatalog> {
    let catalog = this.catalogs.get(backend.instance);
    if (!catalog) {
      catalog = backend.metadataDirectory().then((dir) => new SnapshotCatalog(join(dir, 'snapshots')));
      this.catalogs.set(backend.instance, catalog);
      catalog.catch(() => this.catalogs.delete(backend.instance));
    }
    return catalog;
  }

  private async place(instance: string): Promise<Place | undefined> {
    const backend = this.backends.get(instance);
    return backend ? { backend, catalog: await this.catalog(backend) } : undefined;
  }

  private async sourceVolume(id: string): Promise<{ backend: Backend; volume: VolumeRecord }> {
    const ref = parseVolumeId(id);
    const backend = ref && this.backends.get(ref.instance);
    const volume = backend && (await backend.getRecord(ref.path));
    if (!backend || !volume) throw notFound(`source volume "${id}" does not exist`);
    return { backend, volume };
  }

  private async findByName(name: string): Promise<(Place & { record: SnapshotRecord }) | undefined> {
    for (const backend of this.backends.all()) {
      const catalog = await this.catalog(backend);
      const record = await catalog.findByName(name);
      if (record) return { backend, catalog, record };
    }
    return undefined;
  }

  async create(
    name: string,
    sourceVolumeId: string,
    parameters: Record<string, string>,
    secrets: Record<string, string>,
    call?: CallContext,
  ): Promise<SnapshotRecord> {
    const plan = planSnapshot(parameters);
    const existing = await this.findByName(name);
    if (existing) {
      if (existing.record.sourceVolumeId !== sourceVolumeId) {
        throw alreadyExists(
          `snapshot "${name}" already exists for volume "${existing.record.sourceVolumeId}", not "${sourceVolumeId}"`,
        );
      }
      if (existing.record.type !== plan.type) {
        throw alreadyExists(`snapshot "${name}" already exists as a ${existing.record.type} snapshot`);
      }
      return this.progress(existing, existing.record, secrets, call);
    }
    const { backend, volume } = await this.sourceVolume(sourceVolumeId);
    if (
      plan.type === 'btrfs' &&
      !(await backend.nativeSnapshots?.supports(await backend.shareDirectory(volume)))
    ) {
      throw invalidArgument(
        `snapshotType "native" needs a volume that is a btrfs subvolume (local backend on btrfs with quota enabled); volume "${sourceVolumeId}" is not`,
      );
    }
    if (plan.type === 's3' && (!secrets.accessKeyId || !secrets.secretAccessKey)) {
      throw invalidArgument(
        'snapshotLocation s3 needs the snapshotter secret, with accessKeyId and secretAccessKey',
      );
    }
    const token = newToken();
    const ref: SnapshotRef =
      plan.type === 's3'
        ? { instance: backend.instance, type: 's3', token, bucket: plan.s3.bucket, prefix: plan.s3.prefix }
        : { instance: backend.instance, type: plan.type, token };
    const record: SnapshotRecord = {
      version: 1,
      id: formatSnapshotId(ref),
      token,
      name,
      sourceVolumeId,
      type: plan.type,
      createdAt: new Date().toISOString(),
      sizeBytes: volume.capacityBytes,
      state: 'pending',
      ...(plan.type !== 'btrfs' ? { compression: plan.compression } : {}),
      ...(plan.type === 's3' ? { s3: plan.s3 } : {}),
    };
    const place = { backend, catalog: await this.catalog(backend) };
    await place.catalog.add(record);
    this.logger.info('snapshot started', { snapshot: record.id, source: sourceVolumeId, type: record.type });
    return this.progress(place, record, secrets, call);
  }

  /** Runs (or joins) the snapshot's job for as long as the call allows; the record as it then is. */
  private async progress(
    place: Place,
    record: SnapshotRecord,
    secrets: Record<string, string>,
    call: CallContext | undefined,
  ): Promise<SnapshotRecord> {
    if (record.state === 'ready') return record;
    const bounded = call && Number.isFinite(call.deadline);
    const outcome = await this.jobs.attempt(
      record.id,
      async () => () => this.write(place, record, secrets),
      call,
      bounded ? undefined : UNBOUNDED_WAIT_MS,
    );
    if (outcome.done) return outcome.value;
    return (await place.catalog.get(record.token)) ?? record;
  }

  private async write(place: Place, pending: SnapshotRecord, secrets: Record<string, string>) {
    const cancel = new AbortController();
    this.cancels.set(pending.id, cancel);
    try {
      const { backend, volume } = await this.sourceVolume(pending.sourceVolumeId);
      if (backend !== place.backend)
        throw internal(`snapshot "${pending.id}" is not recorded beside its source`);
      const sourceDir = await backend.shareDirectory(volume);
      await place.catalog.clearScratch(pending.token);
      const job = { catalog: place.catalog, backend: place.backend, secrets, signal: cancel.signal };
      let written: SnapshotRecord;
      if (pending.type === 'btrfs') {
        const record = await this.restamp(place.catalog, pending);
        written = await btrfsStore.write({ ...job, record, sourceDir });
      } else {
        written = await this.fromCut(place, pending, sourceDir, (record, dir) =>
          STORES[pending.type].write({ ...job, record, sourceDir: dir }),
        );
      }
      if (cancel.signal.aborted) throw aborted('snapshot was deleted while it was written');
      await place.catalog.put(written);
      this.logger.info('snapshot ready', {
        snapshot: written.id,
        bytes: written.archive?.bytes,
        dataBytes: written.archive?.dataBytes,
      });
      return written;
    } catch (err) {
      this.logger.warn('snapshot failed', { snapshot: pending.id, error: (err as Error).message });
      throw err;
    } finally {
      this.cancels.delete(pending.id);
    }
  }

  /** The creation time is when reading starts: a job started again after a crash reads afresh. */
  private async restamp(catalog: SnapshotCatalog, record: SnapshotRecord): Promise<SnapshotRecord> {
    const stamped = { ...record, createdAt: new Date().toISOString() };
    await catalog.put(stamped);
    return stamped;
  }

  /**
   * Archives are read from a point-in-time cut where the volume can be snapshotted natively (btrfs):
   * writers go on undisturbed and the archive shows one instant. The cut survives a crash, so a job
   * started again archives the same instant. Elsewhere the live directory is read.
   */
  private async fromCut<T>(
    place: Place,
    pending: SnapshotRecord,
    sourceDir: string,
    archive: (record: SnapshotRecord, dir: string) => Promise<T>,
  ): Promise<T> {
    const native = place.backend.nativeSnapshots;
    if (!native || !(await native.supports(sourceDir))) {
      return archive(await this.restamp(place.catalog, pending), sourceDir);
    }
    const cut = place.catalog.tmpPath(`cut-${pending.token}`);
    let record = pending;
    if (!(await exists(cut))) {
      record = await this.restamp(place.catalog, pending);
      await native.create(sourceDir, cut);
    }
    const result = await archive(record, cut);
    await native.remove(cut);
    return result;
  }

  /** Removes the snapshot's data and record; never touches the source volume. Unknown ids are fine. */
  async delete(id: string, secrets: Record<string, string>): Promise<void> {
    const ref = parseSnapshotId(id);
    if (!ref) return;
    const place = await this.place(ref.instance);
    if (!place) {
      throw failedPrecondition(
        `snapshot "${id}": backend instance "${ref.instance}" is not configured on this driver`,
      );
    }
    const record = await place.catalog.get(ref.token);
    if (!record || record.id !== id) return;
    await this.stopJob(id);
    await STORES[record.type].remove({ record, catalog: place.catalog, secrets }, place.backend);
    await place.catalog.clearScratch(record.token);
    const cut = place.catalog.tmpPath(`cut-${record.token}`);
    if ((await exists(cut)) && place.backend.nativeSnapshots) await place.backend.nativeSnapshots.remove(cut);
    await place.catalog.remove(record);
    this.jobs.forget(id);
    this.logger.info('snapshot deleted', { snapshot: id });
  }

  /** A job still writing is cancelled (its tools killed) and waited for, so that nothing it writes survives. */
  private async stopJob(id: string): Promise<void> {
    if (this.jobs.state(id) !== 'running') return;
    this.cancels.get(id)?.abort();
    await this.jobs.settled(id);
  }

  async list(query: SnapshotQuery): Promise<{ records: SnapshotRecord[]; nextToken: string }> {
    if (query.snapshotId) return { records: await this.listOne(query), nextToken: '' };
    let backends = this.backends.all();
    if (query.sourceVolumeId) {
      const instance = safeVolumeInstance(query.sourceVolumeId);
      backends = backends.filter((b) => b.instance === instance);
    }
    let start = 0;
    let after: string | undefined;
    if (query.startingToken) {
      const position = decodeToken(query.startingToken);
      start = backends.findIndex((b) => b.instance === position.instance);
      if (start < 0)
        throw aborted(`starting_token "${query.startingToken}" names an unknown backend instance`);
      after = position.token;
    }
    const limit = query.maxEntries > 0 ? query.maxEntries : Number.MAX_SAFE_INTEGER;
    const found: (Place & { record: SnapshotRecord })[] = [];
    const matches = (r: SnapshotRecord) => !query.sourceVolumeId || r.sourceVolumeId === query.sourceVolumeId;
    for (let i = start; i < backends.length && found.length <= limit; i++) {
      const place = { backend: backends[i]!, catalog: await this.catalog(backends[i]!) };
      const records = await place.catalog.list(
        i === start ? after : undefined,
        limit + 1 - found.length,
        matches,
      );
      found.push(...records.map((record) => ({ ...place, record })));
    }
    const page = found.slice(0, limit);
    for (const entry of page) this.resume(entry, entry.record, query.secrets);
    const last = page[page.length - 1];
    const nextToken =
      found.length > limit && last ? encodeToken(last.backend.instance, last.record.token) : '';
    return { records: page.map((e) => e.record), nextToken };
  }

  private async listOne(query: SnapshotQuery): Promise<SnapshotRecord[]> {
    const ref = parseSnapshotId(query.snapshotId);
    const place = ref && (await this.place(ref.instance));
    const record = place && (await place.catalog.get(ref.token));
    if (!place || !record || record.id !== query.snapshotId) return [];
    if (query.sourceVolumeId && record.sourceVolumeId !== query.sourceVolumeId) return [];
    this.resume(place, record, query.secrets);
    return [record];
  }

  /**
   * A pending snapshot with no job in this process was interrupted by a restart (or failed, and nobody
   * asked since): start its job again in the background. S3 jobs need the credentials of a call.
   */
  private resume(place: Place, record: SnapshotRecord, secrets: Record<string, string>): void {
    if (record.state === 'ready' || this.jobs.state(record.id) === 'running') return;
    if (record.type === 's3' && !secrets.accessKeyId) return;
    const failure = this.jobs.forget(record.id);
    if (failure)
      this.logger.warn('snapshot retried', { snapshot: record.id, error: (failure as Error).message });
    void this.jobs
      .attempt(record.id, async () => () => this.write(place, record, secrets), undefined, 0)
      .catch(() => undefined);
  }

  /** For CreateVolume from a snapshot: NOT_FOUND unless it exists; UNAVAILABLE while it is still written. */
  async contentOf(id: string, secrets: Record<string, string>): Promise<ResolvedContent> {
    const ref = parseSnapshotId(id);
    if (!ref) throw notFound(`snapshot "${id}" does not exist`);
    const place = await this.place(ref.instance);
    let record = place && (await place.catalog.get(ref.token));
    if (!record && ref.type === 's3' && secrets.accessKeyId) {
      // The backend that recorded it is gone (or is a new one): the bucket has the manifest.
      const location = {
        bucket: ref.bucket,
        prefix: ref.prefix,
        endpoint: undefined,
        region: secrets.region || 'us-east-1',
        forcePathStyle: Boolean(secrets.endpoint),
      };
      record = await readManifest(location, ref.token, secrets);
    }
    if (!record || record.id !== id) throw notFound(`snapshot "${id}" does not exist`);
    if (record.state !== 'ready')
      throw unavailable(`snapshot "${id}" is still being written; retry when it is ready`);
    const filling = await STORES[record.type].filling({ record, catalog: place?.catalog, secrets });
    return { sizeBytes: record.sizeBytes, filling };
  }
}

function safeVolumeInstance(id: string): string | undefined {
  try {
    return parseVolumeId(id)?.instance;
  } catch {
    return undefined;
  }
}

function encodeToken(instance: string, token: string): string {
  return LIST_TOKEN_PREFIX + Buffer.from(`${instance}/${token}`).toString('base64url');
}

function decodeToken(token: string): { instance: string; token: string } {
  const text = token.startsWith(LIST_TOKEN_PREFIX)
    ? Buffer.from(token.slice(LIST_TOKEN_PREFIX.length), 'base64url').toString()
    : '';
  const match = /^([a-z0-9-]{1,32})\/([0-9a-f]{24})$/.exec(text);
  if (!match) throw aborted(`starting_token "${token}" was not issued by this driver`);
  return { instance: match[1]!, token: match[2]! };
}
