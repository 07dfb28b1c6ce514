import { setMaxListeners } from 'node:events';
import { mkdir, readlink, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { scrubSecrets, type SourceCredentials } from './credentials.js';
import { SyncError, toSyncError } from './errors.js';
import { Publication } from './publish.js';
import type { Source, SourceContext, SyncProgress } from './source.js';
import { syncGit } from './sources/git.js';
import { syncHttp } from './sources/http.js';
import { syncS3 } from './sources/s3.js';
import { sourceIdentity, type SourceSpec } from './spec.js';
import {
  emptyStatus,
  lockStateDir,
  readManifest,
  readSyncStatus,
  writeManifest,
  writeSyncStatus,
  type Manifest,
  type SyncStatus,
} from './state.js';

export interface SyncOptions {
  /** A parsed spec, from parseSourceParameters or parseSourceSpec. */
  spec: SourceSpec;
  /** From the Secret of `secretRef`, read by the caller just before the sync. */
  credentials?: SourceCredentials;
  /**
   * Reads the credentials once the sync has started (used instead of `credentials`), so that a
   * missing or unreadable Secret is recorded in the status like any other failure.
   */
  loadCredentials?: () => Promise<SourceCredentials | undefined>;
  /** The volume's directory, as the controller sees it. */
  volumeDir: string;
  /** The volume's sync state directory beside it, e.g. `<root>/.sharedvolume/sync/<key>`. */
  stateDir: string;
  signal?: AbortSignal;
  onProgress?: (progress: SyncProgress) => void;
}

export interface SyncResult {
  revision: string;
  /** False when the source had nothing new: nothing was downloaded or written. */
  changed: boolean;
  /** Bytes and entries written by this sync. */
  bytes: number;
  files: number;
  /** The published tree. */
  totalBytes: number;
  totalFiles: number;
}

const SOURCES: Record<SourceSpec['type'], Source> = { git: syncGit, http: syncHttp, s3: syncS3 };

/**
 * Brings the volume up to date with its source, once. Never damages the last good content: the new
 * content is assembled privately and only then made visible (see publish.ts). Throws SyncError:
 * `permanent` ones (auth, not found, bad ref, unsafe or oversized source) need a user's fix.
 * Records the outcome in `<stateDir>/status.json` either way.
 */
export async function syncOnce(options: SyncOptions): Promise<SyncResult> {
  const { spec } = options;
  const timeout = AbortSignal.timeout(spec.syncTimeout);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  // Every concurrent download and child process listens to it.
  setMaxListeners(200, signal);
  await mkdir(options.stateDir, { recursive: true, mode: 0o700 });
  const unlock = await lockStateDir(options.stateDir, spec.syncTimeout + 60_000);
  try {
    return await syncLocked(spec, options, signal);
  } finally {
    await unlock();
  }
}

async function syncLocked(spec: SourceSpec, options: SyncOptions, signal: AbortSignal): Promise<SyncResult> {
  const { stateDir, volumeDir } = options;
  let credentials = options.credentials;
  const status = (await readSyncStatus(stateDir)) ?? emptyStatus(spec.type);
  const manifest = await readManifest(stateDir);
  const identity = sourceIdentity(spec);
  const crashed = status.inProgress !== undefined;
  const trusted =
    manifest?.identity === identity && (await previousTreeIntact(volumeDir, spec, crashed))
      ? manifest
      : undefined;

  const attempt = new Date().toISOString();
  await writeSyncStatus(stateDir, {
    ...status,
    sourceType: spec.type,
    lastAttempt: attempt,
    inProgress: { since: attempt, pid: process.pid, host: hostname() },
  });

  let committing = false;
  const progress: SyncProgress = { phase: 'checking', files: 0, bytes: 0 };
  const report = (update: Partial<SyncProgress>) => {
    Object.assign(progress, update);
    options.onProgress?.({ ...progress });
  };
  const ctx: SourceContext = {
    spec,
    credentials: undefined,
    workDir: join(stateDir, spec.type),
    previous: trusted,
    signal,
    progress: report,
    openPublication: async (label, incremental) => {
      await mkdir(volumeDir, { recursive: true });
      const pub = await Publication.open(
        {
          volumeDir,
          publish: spec.publish,
          syncMode: spec.syncMode,
          limits: spec.limits,
          keepVersions: status.versions,
          stagingDir: join(stateDir, 'staging'),
          label,
          onWrite: (files, bytes) => report({ phase: 'downloading', files, bytes }),
          onVisible: () => (committing = true),
        },
        incremental || spec.syncMode === 'additive',
      );
      return pub;
    },
  };

  try {
    if (options.loadCredentials) credentials = await options.loadCredentials();
    ctx.credentials = credentials;
    await mkdir(ctx.workDir, { recursive: true });
    const outcome = await SOURCES[spec.type](ctx);
    const next: Manifest = {
      identity,
      revision: outcome.revision,
      objects: outcome.objects,
      meta: outcome.meta,
    };
    if (outcome.changed || !sameManifest(manifest, next)) await writeManifest(stateDir, next);
    const published = outcome.published;
    const done: SyncStatus = {
      ...status,
      sourceType: spec.type,
      revision: outcome.revision,
      lastAttempt: attempt,
      lastSuccess: new Date().toISOString(),
      lastChange: outcome.changed ? new Date().toISOString() : status.lastChange,
      lastError: undefined,
      consecutiveFailures: 0,
      bytes: published?.bytes ?? 0,
      files: published?.files ?? 0,
      totalBytes: published?.totalBytes ?? status.totalBytes,
      totalFiles: published?.totalFiles ?? status.totalFiles,
      inProgress: undefined,
      versions: published?.versions ?? status.versions,
    };
    await writeSyncStatus(stateDir, done);
    return {
      revision: outcome.revision,
      changed: outcome.changed,
      bytes: done.bytes,
      files: done.files,
      totalBytes: done.totalBytes,
      totalFiles: done.totalFiles,
    };
  } catch (err) {
    const failure = scrubbed(toSyncError(err, signal), credentials);
    await writeSyncStatus(stateDir, {
      ...status,
      sourceType: spec.type,
      lastAttempt: attempt,
      lastError: {
        reason: failure.reason,
        permanent: failure.permanent,
        message: failure.message,
        at: attempt,
      },
      consecutiveFailures: status.consecutiveFailures + 1,
      // A commit that failed half-way (files mode) leaves the volume in an unknown state.
      inProgress:
        committing && spec.publish === 'files'
          ? { since: attempt, pid: process.pid, host: hostname() }
          : undefined,
    }).catch(() => undefined);
    throw failure;
  }
}

/**
 * Can unchanged entries be kept? In files mode not after a crash (which files were replaced is
 * unknown); in symlink mode only if `current` still points at a version directory.
 */
async function previousTreeIntact(volumeDir: string, spec: SourceSpec, crashed: boolean): Promise<boolean> {
  try {
    if (spec.publish === 'files') return !crashed && (await stat(volumeDir)).isDirectory();
    const target = await readlink(join(volumeDir, 'current'));
    return (await stat(join(volumeDir, target))).isDirectory();
  } catch {
    return false;
  }
}

function sameManifest(a: Manifest | undefined, b: Manifest): boolean {
  if (!a || a.identity !== b.identity || a.revision !== b.revision) return false;
  if (JSON.stringify(a.meta) !== JSON.stringify(b.meta)) return false;
  return a.objects === b.objects || JSON.stringify(a.objects) === JSON.stringify(b.objects);
}

function scrubbed(err: SyncError, credentials: SourceCredentials | undefined): SyncError {
  const message = scrubSecrets(err.message, credentials);
  return message === err.message ? err : new SyncError(err.reason, message);
}
