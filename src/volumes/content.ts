import type { ContentSource, Filling } from '../backends/backend.js';
import type { BackendRegistry } from '../backends/registry.js';
import { invalidArgument, notFound } from '../rpc/errors.js';
import { parseVolumeId } from './volume-id.js';

/** What a new volume's content comes from, resolved: how to fill it and the least capacity it needs. */
export interface ResolvedContent {
  /** The source's capacity (a volume) or restore size (a snapshot): a new volume may not be smaller. */
  sizeBytes: number;
  filling: Filling;
}

/** The snapshot side of restores, provided by src/snapshots. */
export interface SnapshotContent {
  /** NOT_FOUND unless the snapshot exists and is ready to use. */
  contentOf(snapshotId: string, secrets: Record<string, string>): Promise<ResolvedContent>;
}

/**
 * Resolves CreateVolume's volume_content_source. Everything is checked here, before any work starts,
 * so that a missing source is answered NOT_FOUND with nothing made on any backend.
 */
export class ContentSources {
  constructor(
    private readonly backends: BackendRegistry,
    private readonly snapshots: SnapshotContent | undefined,
  ) {}

  async resolve(source: ContentSource, secrets: Record<string, string>): Promise<ResolvedContent> {
    if (source.kind === 'snapshot') {
      if (!this.snapshots) throw invalidArgument('this driver does not restore snapshots');
      return this.snapshots.contentOf(source.id, secrets);
    }
    const missing = () => notFound(`source volume "${source.id}" does not exist`);
    const ref = parseVolumeId(source.id);
    const backend = ref && this.backends.get(ref.instance);
    const record = backend && (await backend.getRecord(ref.path));
    if (!backend || !record) throw missing();
    const from = await backend.shareDirectory(record);
    if (!(await backend.shareExists(record.path))) throw missing();
    return { sizeBytes: record.capacityBytes, filling: { kind: 'copy', from } };
  }
}
