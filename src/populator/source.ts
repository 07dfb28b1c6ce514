import type { SourceCredentials } from './credentials.js';
import type { Publication, PublishResult } from './publish.js';
import type { SourceSpec } from './spec.js';
import type { Manifest, ObjectState } from './state.js';

/** What a running sync reports; `total*` appear once the source knows them. */
export interface SyncProgress {
  phase: 'checking' | 'downloading' | 'publishing';
  files: number;
  bytes: number;
  totalFiles?: number;
  totalBytes?: number;
}

/** What syncOnce hands a source. */
export interface SourceContext {
  spec: SourceSpec;
  credentials: SourceCredentials | undefined;
  /** Private working directory of the source inside the state directory (git repositories, downloads). */
  workDir: string;
  /**
   * The manifest of what is published now, when it can be trusted (same source identity, and no
   * crashed sync left the volume in an unknown state); undefined means rebuild everything.
   */
  previous: Manifest | undefined;
  signal: AbortSignal;
  progress(update: Partial<SyncProgress>): void;
  /**
   * Opens the publication; call it only once something changed. `incremental`: the new tree starts
   * from the published one, so unchanged entries are declared with `keep()`.
   */
  openPublication(label: string, incremental: boolean): Promise<Publication>;
}

export interface SourceOutcome {
  revision: string;
  changed: boolean;
  objects: Record<string, ObjectState>;
  meta: Record<string, string>;
  published?: PublishResult;
}

export type Source = (ctx: SourceContext) => Promise<SourceOutcome>;

/** The unchanged outcome: same revision, same objects. */
export function unchanged(previous: Manifest, revision = previous.revision ?? ''): SourceOutcome {
  return { revision, changed: false, objects: previous.objects, meta: previous.meta };
}
