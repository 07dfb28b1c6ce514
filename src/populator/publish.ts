import { randomBytes } from 'node:crypto';
import { createReadStream, writeFile as fsWriteFile, type Dirent } from 'node:fs';
import { promisify } from 'node:util';
import {
  lstat,
  mkdir,
  open,
  readdir,
  readlink,
  rename,
  rm,
  symlink,
  unlink,
  writeFile,
  type FileHandle,
} from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { syncError } from './errors.js';
import { linkStaysInside, parentsOf, printable, safeRelativePath, STAGING_DIR } from './paths.js';

/**
 * Publishes a source's tree into the volume so that readers never see a partial file, and a failed
 * sync leaves the last good content as it was.
 *
 * Sources write into a private tree first, in the staging directory the caller gives (beside the
 * volume, in its sync state directory), or inside the volume (`.sv-staging`) when a rename from
 * there into the volume is not possible (another mount). Readers never see a partial file either way.
 * - `files`: on commit every staged entry is renamed over its final path: each file is replaced
 *   whole, and new directories appear whole. Mirror deletions happen only after everything else
 *   succeeded.
 * - `symlink`: the private tree is a new version, seeded with hard links of the current version
 *   when the sync is incremental. On commit it is renamed to `<volume>/.versions/<name>`, then the
 *   `current` symlink is replaced by a rename of a temporary symlink, so readers see the old tree or
 *   the new one, never a mix.
 *
 * Nothing is ever written through a symlink: parents are checked with lstat and replaced when they
 * are not real directories, files are created with O_EXCL, and symlinks from the source are created
 * last, after their targets were checked to stay inside the tree.
 */

export type PublishMode = 'files' | 'symlink';
export type SyncMode = 'mirror' | 'additive';

export interface PublicationOptions {
  volumeDir: string;
  publish: PublishMode;
  syncMode: SyncMode;
  limits: { maxBytes?: number | undefined; maxFiles: number };
  /** Private directory for the tree being built, on the volume's file system (emptied here). */
  stagingDir?: string;
  /** Names of version directories that must survive (symlink mode), from the last status. */
  keepVersions?: string[];
  /** Short text for the version directory name, such as a commit id. */
  label?: string;
  onWrite?: (files: number, bytes: number) => void;
  /** Called when commit starts changing what readers see (after every check passed). */
  onVisible?: () => void;
}

export interface PublishResult {
  /** Entries and bytes written by this sync. */
  files: number;
  bytes: number;
  /** The published tree as the source defines it. */
  totalFiles: number;
  totalBytes: number;
  /** symlink mode: version directories kept, current first. */
  versions?: string[];
}

type Kind = 'file' | 'link' | 'dir';

const VERSIONS_DIR = '.versions';
const CURRENT = 'current';
const FILE_MODE = 0o644;
const EXEC_MODE = 0o755;
const WRITE_BATCH = 1024 * 1024;

/** Where readers find the published tree: the volume itself, or `<volume>/current`. */
export function publishedRoot(volumeDir: string, publish: PublishMode): string {
  return publish === 'symlink' ? join(volumeDir, CURRENT) : volumeDir;
}

export class Publication {
  private readonly desired = new Map<string, { kind: Kind; size: number }>();
  private readonly links = new Map<string, string>();
  private readonly dirs = new Map<string, Promise<void>>();
  private totalFiles = 0;
  private totalBytes = 0;
  private writtenFiles = 0;
  private writtenBytes = 0;
  private closed = false;

  private constructor(
    private readonly options: PublicationOptions,
    /** Where sources write. */
    readonly root: string,
    /** symlink mode: the name of the new version. */
    private readonly version: string | undefined,
    /** symlink mode: the version `current` pointed to when the sync began. */
    private readonly previousVersion: string | undefined,
    /** True when the tree holds the previous content, so unchanged entries can be kept. */
    readonly hasPrevious: boolean,
  ) {}

  /**
   * Prepares the private tree. In symlink mode with `seedFromCurrent` (incremental syncs and
   * additive mode), the new version starts as hard links of the current one.
   */
  static async open(options: PublicationOptions, seedFromCurrent: boolean): Promise<Publication> {
    const { volumeDir } = options;
    await mkdir(volumeDir, { recursive: true });
    const area = await stagingArea(options);
    if (options.publish === 'files') {
      await mkdir(area, { mode: 0o755 });
      return new Publication(options, area, undefined, undefined, true);
    }
    await mkdir(join(volumeDir, VERSIONS_DIR), { recursive: true, mode: 0o755 });
    const current = await currentVersion(volumeDir);
    await removeStaleVersions(volumeDir, [...(options.keepVersions ?? []), ...(current ? [current] : [])]);
    const seed = seedFromCurrent && current !== undefined;
    if (seed) await cloneWithHardLinks(join(volumeDir, VERSIONS_DIR, current), area);
    else await mkdir(area, { mode: 0o755 });
    return new Publication(options, area, versionName(options.label), current, seed);
  }

  get versionName(): string | undefined {
    return this.version;
  }

  /** Writes one file of the new tree and returns its size. `mode` only matters for its executable bits. */
  async writeFile(
    name: string,
    body: Uint8Array | AsyncIterable<Uint8Array>,
    mode = FILE_MODE,
  ): Promise<number> {
    const rel = this.claim(name, 'file');
    this.links.delete(rel);
    const size = body instanceof Uint8Array ? body.byteLength : 0;
    this.account(rel, 'file', size);
    await this.ensureParents(rel);
    const path = join(this.root, rel);
    const fileMode = mode & 0o111 ? EXEC_MODE : FILE_MODE;
    const written =
      body instanceof Uint8Array
        ? await writeBuffer(path, body, fileMode)
        : await this.writeStream(rel, path, body, fileMode);
    this.writtenFiles++;
    this.writtenBytes += written;
    this.options.onWrite?.(this.writtenFiles, this.writtenBytes);
    return written;
  }

  private async writeStream(
    rel: string,
    path: string,
    body: AsyncIterable<Uint8Array>,
    mode: number,
  ): Promise<number> {
    const file = await createExclusive(path, mode);
    let written = 0;
    try {
      // Network chunks are small (16 KiB): one writev per MiB saves most of the system calls.
      let batch: Uint8Array[] = [];
      let batchBytes = 0;
      for await (const chunk of body) {
        written += chunk.byteLength;
        this.checkBytes(this.totalBytes + written);
        batch.push(chunk);
        batchBytes += chunk.byteLength;
        if (batchBytes >= WRITE_BATCH) {
          await writeAll(file, batch);
          batch = [];
          batchBytes = 0;
        }
      }
      await writeAll(file, batch);
    } finally {
      await file.close();
    }
    this.totalBytes += written;
    this.desired.get(rel)!.size = written;
    return written;
  }

  /** A hard link of an archive: a copy of a file written earlier in this sync. */
  async copyEntry(name: string, fromName: string): Promise<void> {
    const from = safeRelativePath(fromName, 'hard link target');
    if (this.desired.get(from)?.kind !== 'file') {
      throw syncError(
        'invalid',
        `hard link "${printable(name)}" refused: "${printable(from)}" is not an earlier file of the archive`,
      );
    }
    const path = join(this.root, from);
    await this.writeFile(
      name,
      createReadStream(path, { highWaterMark: WRITE_BATCH }),
      (await lstat(path)).mode,
    );
  }

  /** Declares a symlink of the new tree; it is checked and created at commit. */
  addSymlink(name: string, target: string): void {
    const rel = this.claim(name, 'link');
    this.account(rel, 'link', 0);
    this.links.set(rel, target);
  }

  async addDirectory(name: string): Promise<void> {
    const rel = this.claim(name, 'dir');
    this.desired.set(rel, { kind: 'dir', size: 0 });
    await this.ensureDir(rel);
  }

  /** Declares an entry already published and unchanged (needs `hasPrevious`). */
  keep(name: string, kind: 'file' | 'link', size: number): void {
    const rel = this.claim(name, kind);
    this.account(rel, kind, size);
  }

  /** Makes the new tree visible. On failure the publication is aborted. */
  async commit(): Promise<PublishResult> {
    this.assertOpen();
    try {
      await this.checkLinks();
      await this.createLinks();
      const result: PublishResult = {
        files: this.writtenFiles + this.links.size,
        bytes: this.writtenBytes,
        totalFiles: this.totalFiles,
        totalBytes: this.totalBytes,
      };
      this.options.onVisible?.();
      if (this.options.publish === 'files') await this.commitFiles();
      else result.versions = await this.commitVersion();
      this.closed = true;
      return result;
    } catch (err) {
      await this.abort();
      throw err;
    }
  }

  /** Throws the private tree away; the published content is untouched. */
  async abort(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await rm(this.root, { recursive: true, force: true });
    if (this.version)
      await rm(join(this.options.volumeDir, VERSIONS_DIR, this.version), { recursive: true, force: true });
  }

  /** Validates a name, and refuses a name that is both a file and a directory in one tree. */
  private claim(name: string, kind: Kind): string {
    this.assertOpen();
    const rel = safeRelativePath(name);
    if (this.options.publish === 'files' && rel.split('/')[0] === STAGING_DIR) {
      throw syncError('invalid', `entry "${printable(rel)}" uses a name reserved by the populator`);
    }
    const existing = this.desired.get(rel);
    if (existing && (existing.kind === 'dir') !== (kind === 'dir')) throw conflict(rel);
    for (const parent of parentsOf(rel)) {
      const entry = this.desired.get(parent);
      if (entry && entry.kind !== 'dir') throw conflict(parent, rel);
    }
    return rel;
  }

  private account(rel: string, kind: 'file' | 'link', size: number): void {
    const previous = this.desired.get(rel);
    if (previous) this.totalBytes -= previous.size;
    else this.totalFiles++;
    if (this.totalFiles > this.options.limits.maxFiles) {
      throw syncError(
        'limit',
        `the source has more than ${this.options.limits.maxFiles} entries (limits.maxFiles); nothing was published`,
      );
    }
    this.checkBytes(this.totalBytes + size);
    this.totalBytes += size;
    this.desired.set(rel, { kind, size });
  }

  private checkBytes(total: number): void {
    const max = this.options.limits.maxBytes;
    if (max !== undefined && total > max) {
      throw syncError(
        'limit',
        `the source holds more than ${max} bytes (limits.maxBytes); nothing was published`,
      );
    }
  }

  private async ensureParents(rel: string): Promise<void> {
    const parents = parentsOf(rel);
    if (parents.length > 0) await this.ensureDir(parents[parents.length - 1]!);
  }

  /** Creates a directory of the private tree, replacing a file or symlink (seeded) in its way. */
  private ensureDir(rel: string): Promise<void> {
    let pending = this.dirs.get(rel);
    if (!pending) {
      const parents = parentsOf(rel);
      const parent = parents.length > 0 ? this.ensureDir(parents[parents.length - 1]!) : Promise.resolve();
      pending = parent.then(() => makeRealDirectory(join(this.root, rel)));
      this.dirs.set(rel, pending);
    }
    return pending;
  }

  /** Every symlink of the final tree must resolve inside it, following the tree's other links. */
  private async checkLinks(): Promise<void> {
    const readLink = async (rel: string): Promise<string | undefined> => {
      const pending = this.links.get(rel);
      if (pending !== undefined) return pending;
      const entry = this.desired.get(rel);
      if (this.options.syncMode === 'mirror' && !entry) return undefined;
      if (entry && entry.kind !== 'link') return undefined;
      return readLinkIfAny(join(this.options.publish === 'files' ? this.options.volumeDir : this.root, rel));
    };
    for (const [rel, entry] of this.desired) {
      if (entry.kind !== 'link') continue;
      const target = this.links.get(rel) ?? (await readLink(rel));
      if (target === undefined) continue;
      if (!(await linkStaysInside(rel, target, readLink))) {
        throw syncError(
          'unsafe',
          `symlink "${printable(rel)}" -> "${printable(target)}" refused: it points outside the volume`,
        );
      }
    }
  }

  private async createLinks(): Promise<void> {
    for (const [rel, target] of this.links) {
      await this.ensureParents(rel);
      const path = join(this.root, rel);
      await rm(path, { recursive: true, force: true });
      await symlink(target, path);
    }
  }

  private async commitFiles(): Promise<void> {
    const { volumeDir, syncMode } = this.options;
    await mergeInto(this.root, volumeDir);
    await rm(this.root, { recursive: true, force: true });
    if (syncMode === 'mirror') await pruneTree(volumeDir, '', this.desired, desiredDirs(this.desired));
  }

  private async commitVersion(): Promise<string[]> {
    const { volumeDir, syncMode } = this.options;
    if (syncMode === 'mirror') await pruneTree(this.root, '', this.desired, desiredDirs(this.desired));
    const name = this.version!;
    const final = join(volumeDir, VERSIONS_DIR, name);
    if (this.root !== final) await rename(this.root, final);
    await swapCurrent(volumeDir, `${VERSIONS_DIR}/${name}`);
    const keep = [
      name,
      ...(this.previousVersion && this.previousVersion !== name ? [this.previousVersion] : []),
    ];
    await removeStaleVersions(volumeDir, keep);
    if (syncMode === 'mirror') await removeStrayTopLevel(volumeDir);
    return keep;
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('publication already committed or aborted');
  }
}

function conflict(a: string, b?: string): Error {
  const what = b ? `"${printable(a)}" and "${printable(b)}"` : `"${printable(a)}"`;
  return syncError('invalid', `entries ${what} conflict: one name cannot be both a file and a directory`);
}

/** writev until every byte is on its way (a short write is legal, if rare, for regular files). */
async function writeAll(file: FileHandle, chunks: Uint8Array[]): Promise<void> {
  const pending = chunks.filter((c) => c.byteLength > 0);
  while (pending.length > 0) {
    let { bytesWritten } = await file.writev(pending);
    while (pending.length > 0 && bytesWritten >= pending[0]!.byteLength)
      bytesWritten -= pending.shift()!.byteLength;
    if (bytesWritten > 0) pending[0] = pending[0]!.subarray(bytesWritten);
  }
}

const writeFileCallback = promisify(fsWriteFile);

/**
 * A whole small file in one call. The callback API costs less main-thread time per file than a
 * FileHandle (which matters at thousands of small objects); O_EXCL as everywhere.
 */
async function writeBuffer(path: string, body: Uint8Array, mode: number): Promise<number> {
  try {
    await writeFileCallback(path, body, { flag: 'wx', mode });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    // A duplicate entry, or a seeded hard link: never write into an existing inode.
    await rm(path, { recursive: true, force: true });
    await writeFileCallback(path, body, { flag: 'wx', mode });
  }
  return body.byteLength;
}

async function createExclusive(path: string, mode: number) {
  try {
    return await open(path, 'wx', mode);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    // A duplicate entry, or a seeded hard link: never write into an existing inode.
    await rm(path, { recursive: true, force: true });
    return open(path, 'wx', mode);
  }
}

async function makeRealDirectory(path: string): Promise<void> {
  try {
    await mkdir(path, { mode: 0o755 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    if ((await lstat(path)).isDirectory()) return;
    await rm(path, { force: true });
    await mkdir(path, { mode: 0o755 });
  }
}

async function readLinkIfAny(path: string): Promise<string | undefined> {
  try {
    return await readlink(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EINVAL' || code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

async function lstatOrUndefined(path: string) {
  try {
    return await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Moves the staged tree over the volume. A directory that is new moves in one rename; an existing
 * one is merged entry by entry; a file or symlink replaces its old version in one rename.
 */
async function mergeInto(from: string, to: string): Promise<void> {
  const entries = await readdir(from, { withFileTypes: true });
  await runLimited(entries, 16, async (entry: Dirent) => {
    const source = join(from, entry.name);
    const target = join(to, entry.name);
    const existing = await lstatOrUndefined(target);
    if (entry.isDirectory()) {
      if (existing?.isDirectory()) return mergeInto(source, target);
      if (existing) await rm(target, { force: true });
      return rename(source, target);
    }
    if (existing?.isDirectory()) await rm(target, { recursive: true, force: true });
    await rename(source, target);
  });
}

function desiredDirs(desired: Map<string, { kind: Kind }>): Set<string> {
  const dirs = new Set<string>();
  for (const [rel, { kind }] of desired) {
    if (kind === 'dir') dirs.add(rel);
    for (const parent of parentsOf(rel)) dirs.add(parent);
  }
  return dirs;
}

/** Mirror: removes every entry of the tree that the source does not have (or has as another kind). */
async function pruneTree(
  dir: string,
  prefix: string,
  desired: Map<string, { kind: Kind }>,
  dirs: Set<string>,
): Promise<void> {
  const entries = await readdir(join(dir, prefix), { withFileTypes: true });
  await runLimited(entries, 16, async (entry: Dirent) => {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    const path = join(dir, rel);
    if (entry.isDirectory()) {
      if (dirs.has(rel)) return pruneTree(dir, rel, desired, dirs);
      return rm(path, { recursive: true, force: true });
    }
    const kind = desired.get(rel)?.kind;
    const wanted = entry.isSymbolicLink() ? kind === 'link' : kind === 'file';
    if (!wanted) await rm(path, { force: true });
  });
}

async function currentVersion(volumeDir: string): Promise<string | undefined> {
  const target = await readLinkIfAny(join(volumeDir, CURRENT));
  const prefix = `${VERSIONS_DIR}/`;
  if (!target?.startsWith(prefix)) return undefined;
  const name = target.slice(prefix.length);
  const stat = await lstatOrUndefined(join(volumeDir, VERSIONS_DIR, name));
  return stat?.isDirectory() ? name : undefined;
}

/** Leftovers of crashed syncs and versions no reader needs any more. */
async function removeStaleVersions(volumeDir: string, keep: string[]): Promise<void> {
  const dir = join(volumeDir, VERSIONS_DIR);
  for (const name of await readdir(dir)) {
    if (!keep.includes(name)) await rm(join(dir, name), { recursive: true, force: true });
  }
  for (const name of await readdir(volumeDir)) {
    if (name.startsWith('.current-tmp-')) await rm(join(volumeDir, name), { force: true });
  }
}

/** After switching from files to symlink mode, the old top-level files are not part of the mirror. */
async function removeStrayTopLevel(volumeDir: string): Promise<void> {
  for (const name of await readdir(volumeDir)) {
    if (name !== CURRENT && name !== VERSIONS_DIR)
      await rm(join(volumeDir, name), { recursive: true, force: true });
  }
}

/** rename(2) of a new symlink over `current`: atomic for every reader. */
async function swapCurrent(volumeDir: string, target: string): Promise<void> {
  const tmp = join(volumeDir, `.current-tmp-${randomBytes(6).toString('hex')}`);
  await symlink(target, tmp);
  const current = join(volumeDir, CURRENT);
  try {
    const existing = await lstatOrUndefined(current);
    if (existing?.isDirectory()) await rm(current, { recursive: true, force: true });
    await rename(tmp, current);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}

/**
 * The private tree's directory: in the caller's staging directory when a rename from there into the
 * volume works (same mount), else inside the volume. Leftovers of a crashed sync are removed.
 */
async function stagingArea(options: PublicationOptions): Promise<string> {
  const inVolume = join(options.volumeDir, STAGING_DIR);
  await rm(inVolume, { recursive: true, force: true });
  if (options.stagingDir) {
    await rm(options.stagingDir, { recursive: true, force: true });
    await mkdir(options.stagingDir, { recursive: true, mode: 0o700 });
    if (await canRenameInto(options.stagingDir, options.volumeDir)) return join(options.stagingDir, 'tree');
  }
  return inVolume;
}

async function canRenameInto(from: string, to: string): Promise<boolean> {
  const token = randomBytes(6).toString('hex');
  const probe = join(from, `.probe-${token}`);
  const target = join(to, `.sv-probe-${token}`);
  await writeFile(probe, '');
  try {
    await rename(probe, target);
    await unlink(target);
    return true;
  } catch (err) {
    await unlink(probe).catch(() => undefined);
    if ((err as NodeJS.ErrnoException).code === 'EXDEV') return false;
    throw err;
  }
}

function versionName(label: string | undefined): string {
  const clean = (label ?? '').replace(/[^A-Za-z0-9]/g, '').slice(0, 12);
  return `${Date.now().toString(36)}-${randomBytes(3).toString('hex')}${clean ? `-${clean}` : ''}`;
}

/** `cp -al`: directories copied, files hard-linked (shared inodes are never written in place). */
async function cloneWithHardLinks(from: string, to: string): Promise<void> {
  try {
    await execa('cp', ['-al', '--', from, to]);
  } catch {
    await rm(to, { recursive: true, force: true });
    await execa('cp', ['-a', '--', from, to]);
  }
}

/** Runs `task` over `items` with at most `limit` in flight; the first failure wins. */
export async function runLimited<T>(items: readonly T[], limit: number, task: (item: T) => Promise<unknown>) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await task(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
