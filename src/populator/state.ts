import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { SyncErrorReason } from './errors.js';
import { syncError } from './errors.js';

/**
 * Sync state of one volume, kept in a directory the caller chooses beside the volume (for example
 * `<root>/.sharedvolume/sync/<key>/`), never inside it. It survives restarts: the schedule is rebuilt
 * from `status.json`. Files:
 *   status.json    SyncStatus (small, rewritten at every sync)
 *   manifest.json  per-object state (rewritten only when something changed)
 *   lock           the running sync's owner
 *   git/, tmp/     the git source's bare repositories; downloads in flight
 */

export interface SyncStatus {
  sourceType: string;
  /** Git commit, `sha256:<hex>` of an archive, or the SHA-256 of an S3 listing's keys, ETags and sizes. */
  revision?: string;
  lastAttempt?: string;
  lastSuccess?: string;
  /** When the published content last changed. */
  lastChange?: string;
  lastError?: { reason: SyncErrorReason; permanent: boolean; message: string; at: string };
  consecutiveFailures: number;
  /** Bytes and files written by the last successful sync. */
  bytes: number;
  files: number;
  /** Size of the published tree. */
  totalBytes: number;
  totalFiles: number;
  /** Set while a sync may be changing the volume; a leftover one means that sync crashed. */
  inProgress?: { since: string; pid: number; host: string };
  /** Publish mode symlink: version directories to keep (current first). */
  versions?: string[];
}

export interface ObjectState {
  /** ETag of an S3 object or git blob id. */
  id: string;
  size: number;
  mode?: number;
}

export interface Manifest {
  identity: string;
  revision?: string;
  objects: Record<string, ObjectState>;
  /** Source-specific values: HTTP ETag and Last-Modified. */
  meta: Record<string, string>;
}

const STATUS = 'status.json';
const MANIFEST = 'manifest.json';

export const emptyStatus = (sourceType: string): SyncStatus => ({
  sourceType,
  consecutiveFailures: 0,
  bytes: 0,
  files: 0,
  totalBytes: 0,
  totalFiles: 0,
});

/** The status of a volume's syncs, or undefined if it never synced. */
export async function readSyncStatus(stateDir: string): Promise<SyncStatus | undefined> {
  return readJson<SyncStatus>(join(stateDir, STATUS));
}

export async function writeSyncStatus(stateDir: string, value: SyncStatus): Promise<void> {
  await writeJsonAtomic(join(stateDir, STATUS), value);
}

export async function readManifest(stateDir: string): Promise<Manifest | undefined> {
  return readJson<Manifest>(join(stateDir, MANIFEST));
}

export async function writeManifest(stateDir: string, value: Manifest): Promise<void> {
  await writeJsonAtomic(join(stateDir, MANIFEST), value);
}

async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    // A torn file cannot happen (writes are atomic); an unreadable one is treated as no state.
    if (err instanceof SyntaxError) return undefined;
    throw err;
  }
}

/** Write to a temp file in the same directory, fsync, rename: readers see the old or the new file. */
export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  const tmp = `${path}.tmp-${randomBytes(4).toString('hex')}`;
  const file = await open(tmp, 'wx', 0o600);
  try {
    await file.writeFile(JSON.stringify(value));
    await file.sync();
  } finally {
    await file.close();
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}

interface LockOwner {
  pid: number;
  host: string;
  since: string;
}

/**
 * Takes the state directory's lock so that two syncs of one volume never overlap, in this process
 * or another. A lock whose owner died on this host, or that is older than `staleAfterMs`, is taken
 * over. Returns the release function.
 */
export async function lockStateDir(stateDir: string, staleAfterMs: number): Promise<() => Promise<void>> {
  await mkdir(stateDir, { recursive: true });
  const path = join(stateDir, 'lock');
  const me: LockOwner = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const file = await open(path, 'wx', 0o600);
      await file.writeFile(JSON.stringify(me));
      await file.close();
      return () => rm(path, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      if (!(await isStale(path, staleAfterMs))) break;
      await rm(path, { force: true });
    }
  }
  const owner = await readJson<LockOwner>(path);
  throw syncError(
    'busy',
    `another sync of this volume is running (pid ${owner?.pid ?? '?'} on ${owner?.host ?? '?'})`,
  );
}

async function isStale(path: string, staleAfterMs: number): Promise<boolean> {
  const owner = await readJson<LockOwner>(path);
  if (!owner) return true;
  if (owner.host === hostname() && !processAlive(owner.pid)) return true;
  const age = Date.now() - (await stat(path)).mtimeMs;
  return age > staleAfterMs;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
