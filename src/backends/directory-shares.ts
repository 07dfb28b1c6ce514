import { hash, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import { promisify } from 'node:util';
import { dirname, join, basename } from 'node:path';
import { alreadyExists, notFound } from '../rpc/errors.js';
import type { Capacity, CreateShareInput, DeleteOptions, Filling, VolumeRecord } from './backend.js';
import { copyTree, removeTree } from './shared/tree.js';

/** Where the share root is reachable on this host, mounted with the given options if need be. */
export type RootProvider = (mountOptions: string[]) => Promise<string>;

/** Backend-specific steps around the generic directory lifecycle (quotas, for example). */
export interface ShareHooks {
  afterCreate?(path: string, record: VolumeRecord): Promise<void>;
  beforeDelete?(path: string, record: VolumeRecord): Promise<void>;
  capacity?(root: string): Promise<Capacity | undefined>;
  /** Makes a volume directory (default: mkdir); fails with EEXIST when the path is taken. */
  makeDirectory?(dir: string): Promise<void>;
  /** Makes `target` (missing) a copy of the tree at `source` (default: cp -a, reflinked where possible). */
  copyTree?(source: string, target: string): Promise<void>;
  /** Raises the enforced limit to the record's new capacity. */
  expand?(path: string, record: VolumeRecord): Promise<void>;
  /** Removes a volume directory for good, if it exists (default: rm -rf). */
  purge?(dir: string): Promise<void>;
}

// Callback-style fs, promisified: on this hot path fs/promises' FileHandle bookkeeping costs 2-3x the CPU.
const chmod = promisify(fs.chmod);
const link = promisify(fs.link);
const lstat = promisify(fs.lstat);
const mkdir = promisify(fs.mkdir);
const readFile = promisify(fs.readFile);
const readdir = promisify(fs.readdir);
const readlink = promisify(fs.readlink);
const rename = promisify(fs.rename);
const rmdir = promisify(fs.rmdir);
const statfs = promisify(fs.statfs);
const symlink = promisify(fs.symlink);
const unlink = promisify(fs.unlink);
const writeFile = promisify(fs.writeFile);

const META = '.sharedvolume';
// One-shot hash: no Hash object per call (this runs two or three times per CreateVolume).
const key = (value: string) => hash('sha256', value, 'hex');

function isErrno(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === code;
}

/**
 * One directory per volume under a share root, with per-volume records kept beside the volumes in
 * `.sharedvolume/` (never inside a volume, where pods would see them). Every step is atomic
 * (exclusive create, hard link, rename) so a crash leaves either a whole volume or something the next call completes or undoes.
 */
export class DirectoryShares {
  private readonly prepared = new Map<string, Promise<void>>();
  private readonly purges = new Set<Promise<void>>();
  private capacityCache: { at: number; value: Promise<Capacity> } | undefined;

  constructor(
    private readonly root: RootProvider,
    private readonly hooks: ShareHooks = {},
  ) {}

  private async layout(mountOptions: string[] = []): Promise<string> {
    const root = await this.root(mountOptions);
    let ready = this.prepared.get(root);
    if (!ready) {
      ready = Promise.all(
        ['records', 'names', 'trash', 'tmp', 'staging'].map((dir) =>
          mkdir(join(root, META, dir), { recursive: true }),
        ),
      ).then(() => this.purgeTrash(root));
      this.prepared.set(root, ready);
      ready.catch(() => this.prepared.delete(root));
    }
    await ready;
    return root;
  }

  private recordFile(root: string, path: string) {
    return join(root, META, 'records', `${key(path)}.json`);
  }

  /** The name index: a hard link to the record the create committed (no inode of its own). */
  private nameFile(root: string, name: string) {
    return join(root, META, 'names', key(name));
  }

  /** The path a name was committed to: in the linked record, whose path never changes. */
  private async namedPath(root: string, name: string): Promise<string | undefined> {
    return (await this.readRecordFile(this.nameFile(root, name)))?.path;
  }

  /** Replaces a record in one rename, so readers see the old or the new one, never a mix. */
  private async replaceRecord(root: string, file: string, record: VolumeRecord): Promise<void> {
    const tmp = join(root, META, 'tmp', randomUUID());
    await writeRecord(tmp, JSON.stringify(record));
    await rename(tmp, file);
  }

  /** A record cut short by a crash (a large one, kept in a file) reads as absent: its create never committed. */
  private async readRecordFile(file: string): Promise<VolumeRecord | undefined> {
    const text = await readRecordText(file);
    if (text === undefined) return undefined;
    try {
      return JSON.parse(text) as VolumeRecord;
    } catch {
      return undefined;
    }
  }

  async getRecord(path: string): Promise<VolumeRecord | undefined> {
    return this.readRecordFile(this.recordFile(await this.layout(), path));
  }

  async findByName(name: string): Promise<VolumeRecord | undefined> {
    const root = await this.layout();
    const path = await this.namedPath(root, name);
    if (path === undefined) return undefined;
    // The record, not the index: an expansion replaces the record file and leaves the link behind.
    const record = await this.readRecordFile(this.recordFile(root, path));
    return record?.name === name ? record : undefined;
  }

  async exists(path: string): Promise<boolean> {
    try {
      await statfs(join(await this.layout(), path));
      return true;
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return false;
      throw err;
    }
  }

  /**
   * Claims the path with an exclusive record, makes the directory, then commits by writing the name
   * index. Any failure before the commit undoes what this call made. A name already committed is
   * answered with its volume, untouched: callers need not look the name up first.
   */
  async create(input: CreateShareInput): Promise<VolumeRecord> {
    const root = await this.layout(input.share.mountOptions);
    const recordFile = this.recordFile(root, input.path);
    const record = newRecord(input);
    const resumed = await this.claim(root, recordFile, record);
    if (resumed && (await this.namedPath(root, input.name)) === input.path) return resumed;
    const dir = join(root, input.path);
    let madeDir = false;
    try {
      madeDir = await this.makeDirectory(dir, input.path, resumed);
      if (input.share.mountPermissions !== undefined) await chmod(dir, input.share.mountPermissions);
      await this.hooks.afterCreate?.(input.path, record);
      const owner = await this.commitName(root, input.name, input.path);
      if (!owner) return resumed ?? record;
      await this.undoCreate(root, input.path, madeDir || resumed !== undefined);
      return owner;
    } catch (err) {
      await this.undoCreate(root, input.path, madeDir || resumed !== undefined);
      throw err;
    }
  }

  /** Removes what a create made before its commit: the directory (if it made it), empty parents, the claim. */
  private async undoCreate(root: string, path: string, removeDirectory: boolean): Promise<void> {
    if (removeDirectory) await this.removeDirectory(join(root, path));
    await this.removeEmptyParents(root, dirname(path));
    await unlink(this.recordFile(root, path)).catch(() => undefined);
  }

  /**
   * Creates a volume with content (clone, restore). The content goes into a staging directory first;
   * only a complete copy is claimed, renamed into place and committed, so no failure or crash leaves
   * a half-filled volume under the path. Staging leftovers of a crash are purged at the next start.
   */
  async createFilled(input: CreateShareInput, filling: Filling): Promise<VolumeRecord> {
    const existing = await this.findByName(input.name);
    if (existing) return existing;
    const root = await this.layout(input.share.mountOptions);
    const staging = join(root, META, 'staging', key(input.name));
    await this.removeDirectory(staging);
    try {
      if (filling.kind === 'copy') {
        await (this.hooks.copyTree
          ? this.hooks.copyTree(filling.from, staging)
          : copyTree(filling.from, staging));
      } else {
        await this.makeOneDirectory(staging);
        await filling.write(staging);
      }
      if (input.share.mountPermissions !== undefined) await chmod(staging, input.share.mountPermissions);
      return await this.commitFilled(root, input, staging);
    } finally {
      await this.removeDirectory(staging);
    }
  }

  private async commitFilled(root: string, input: CreateShareInput, staging: string): Promise<VolumeRecord> {
    const recordFile = this.recordFile(root, input.path);
    const record = newRecord(input);
    const resumed = await this.claim(root, recordFile, record);
    const dir = join(root, input.path);
    let moved = false;
    try {
      if (dirname(input.path) !== '.') await mkdir(dirname(dir), { recursive: true });
      if (!(await pathExists(dir))) {
        await rename(staging, dir);
        moved = true;
      } else if (!resumed) {
        throw alreadyExists(
          `directory "${basename(dir)}" already exists on the backend and is not a volume of this driver`,
        );
      }
      // else an earlier attempt moved its complete copy into place and stopped before the commit.
      await this.hooks.afterCreate?.(input.path, resumed ?? record);
      const owner = await this.commitName(root, input.name, input.path);
      if (!owner) return resumed ?? record;
      await this.undoCreate(root, input.path, moved || resumed !== undefined);
      return owner;
    } catch (err) {
      await this.undoCreate(root, input.path, moved || resumed !== undefined);
      throw err;
    }
  }

  private async makeOneDirectory(dir: string): Promise<void> {
    await (this.hooks.makeDirectory ? this.hooks.makeDirectory(dir) : mkdir(dir));
  }

  private removeDirectory(dir: string): Promise<void> {
    return this.hooks.purge ? this.hooks.purge(dir) : removeTree(dir);
  }

  /**
   * Raises the recorded capacity. The hook raises the enforced limit first, so that a crash in between
   * leaves a limit at least as high as the record and a retry converges. A volume created without a
   * capacity has no limit, which no expansion needs to raise.
   */
  async expand(path: string, capacityBytes: number): Promise<VolumeRecord> {
    const record = await this.getRecord(path);
    if (!record) throw notFound(`volume "${path}" does not exist`);
    if (record.capacityBytes === 0 || capacityBytes <= record.capacityBytes) return record;
    const root = await this.layout(record.mountOptions);
    const expanded: VolumeRecord = { ...record, capacityBytes };
    await this.hooks.expand?.(path, expanded);
    await this.replaceRecord(root, this.recordFile(root, path), expanded);
    return expanded;
  }

  /** The volume's directory, reached with the mount options it was created with. */
  async directory(record: VolumeRecord): Promise<string> {
    return join(await this.layout(record.mountOptions), record.path);
  }

  /** `.sharedvolume/` itself: beside the volumes and inside none, for the driver's own data. */
  async metadataDirectory(): Promise<string> {
    return join(await this.layout(), META);
  }

  /**
   * Claims the path with an exclusive create. Returns the existing record when a previous attempt for
   * the same name crashed midway; takes over a record a crash left unreadable.
   */
  private async claim(root: string, file: string, record: VolumeRecord): Promise<VolumeRecord | undefined> {
    try {
      await writeRecord(file, JSON.stringify(record));
      return undefined;
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw err;
    }
    const existing = await this.readRecordFile(file);
    if (!existing) {
      await this.replaceRecord(root, file, record);
      return undefined;
    }
    if (existing.name === record.name) return existing;
    throw alreadyExists(`directory "${record.path}" already belongs to volume "${existing.name}"`);
  }

  /**
   * The commit point of a create: a hard link from the name to the record, made in one syscall.
   * Returns the volume that already holds the name at another path, if one does; a link left by a
   * volume that is gone is replaced.
   */
  private async commitName(root: string, name: string, path: string): Promise<VolumeRecord | undefined> {
    const file = this.nameFile(root, name);
    const recordFile = this.recordFile(root, path);
    try {
      await link(recordFile, file);
      return undefined;
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw err;
    }
    if ((await this.namedPath(root, name)) === path) return undefined;
    const owner = await this.findByName(name);
    if (owner) return owner;
    await unlink(file);
    await link(recordFile, file);
    return undefined;
  }

  private async makeDirectory(
    dir: string,
    path: string,
    resumed: VolumeRecord | undefined,
  ): Promise<boolean> {
    if (dirname(path) !== '.') await mkdir(dirname(dir), { recursive: true });
    try {
      await this.makeOneDirectory(dir);
      return true;
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw err;
      if (resumed) return false;
      throw alreadyExists(
        `directory "${basename(dir)}" already exists on the backend and is not a volume of this driver`,
      );
    }
  }

  private async removeEmptyParents(root: string, relDir: string): Promise<void> {
    for (let dir = relDir; dir !== '.' && dir !== '/'; dir = dirname(dir)) {
      try {
        await rmdir(join(root, dir));
      } catch {
        return;
      }
    }
  }

  /** Applies the volume's onDelete policy (or discards it). Returns false if no such volume exists. */
  async delete(path: string, options: DeleteOptions = {}): Promise<boolean> {
    const record = await this.getRecord(path);
    if (!record) return false;
    await options.beforeDelete?.(record);
    const root = await this.layout(record.mountOptions);
    const dir = join(root, path);
    await this.hooks.beforeDelete?.(path, record);
    let trashed: string | undefined;
    if (options.discard || record.onDelete === 'delete') {
      trashed = join(root, META, 'trash', `${key(path)}-${Date.now()}`);
      await rename(dir, trashed).catch((err) => (isErrno(err, 'ENOENT') ? undefined : Promise.reject(err)));
    } else if (record.onDelete === 'archive') {
      await this.archive(dir);
    }
    await this.unlinkNameIfOurs(root, record);
    await unlink(this.recordFile(root, path)).catch((err) =>
      isErrno(err, 'ENOENT') ? undefined : Promise.reject(err),
    );
    if (trashed) this.purgeInBackground(trashed);
    return true;
  }

  private async archive(dir: string): Promise<void> {
    const target = join(dirname(dir), `archived-${basename(dir)}`);
    for (const candidate of [target, `${target}-${Date.now()}`]) {
      try {
        await mkdir(candidate);
      } catch (err) {
        if (isErrno(err, 'EEXIST')) continue;
        throw err;
      }
      try {
        await rename(dir, candidate);
      } catch (err) {
        await rmdir(candidate).catch(() => undefined);
        if (isErrno(err, 'ENOENT')) return;
        throw err;
      }
      return;
    }
    throw alreadyExists(`cannot archive ${basename(dir)}: archive names are taken`);
  }

  private async unlinkNameIfOurs(root: string, record: VolumeRecord): Promise<void> {
    if ((await this.namedPath(root, record.name)) === record.path) {
      await unlink(this.nameFile(root, record.name)).catch((err) =>
        isErrno(err, 'ENOENT') ? undefined : Promise.reject(err),
      );
    }
  }

  private purgeInBackground(path: string): void {
    const purge = this.removeDirectory(path).catch(() => undefined);
    this.purges.add(purge);
    void purge.finally(() => this.purges.delete(purge));
  }

  /** Purges deleted volumes and the staging directories of fills a crash interrupted. */
  private async purgeTrash(root: string): Promise<void> {
    for (const dir of ['trash', 'staging']) {
      const parent = join(root, META, dir);
      for (const entry of await readdir(parent)) this.purgeInBackground(join(parent, entry));
    }
  }

  async list(after: string | undefined, limit: number): Promise<VolumeRecord[]> {
    const root = await this.layout();
    const dir = join(root, META, 'records');
    const keys = (await readdir(dir))
      .filter((f) => f.endsWith('.json'))
      .sort()
      .filter((f) => after === undefined || f > `${key(after)}.json`);
    const records: VolumeRecord[] = [];
    for (const file of keys) {
      if (records.length >= limit) break;
      const record = await this.readRecordFile(join(dir, file));
      if (record) records.push(record);
    }
    return records;
  }

  /** Capacity, re-read at most once a second: CreateVolume checks it on every call. */
  capacity(): Promise<Capacity> {
    const now = Date.now();
    if (!this.capacityCache || now - this.capacityCache.at > 1000) {
      const value = this.readCapacity();
      this.capacityCache = { at: now, value };
      value.catch(() => (this.capacityCache = undefined));
    }
    return this.capacityCache.value;
  }

  private async readCapacity(): Promise<Capacity> {
    const root = await this.layout();
    const fromHook = await this.hooks.capacity?.(root);
    if (fromHook) return fromHook;
    const stats = await statfs(root);
    return {
      totalBytes: stats.blocks * stats.bsize,
      availableBytes: stats.bavail * stats.bsize,
      enforced: false,
    };
  }

  async close(): Promise<void> {
    await Promise.all([...this.purges]);
  }
}

function newRecord(input: CreateShareInput): VolumeRecord {
  return {
    version: 1,
    name: input.name,
    path: input.path,
    capacityBytes: input.capacityBytes,
    parameters: input.parameters,
    onDelete: input.share.onDelete,
    mountOptions: input.share.mountOptions,
    createdAt: new Date().toISOString(),
    ...(input.contentSource ? { contentSource: input.contentSource } : {}),
    ...(input.volumeContext ? { volumeContext: input.volumeContext } : {}),
  };
}

/**
 * Records are symlink targets: one syscall writes or reads one, exclusively and whole (a file takes
 * four round trips to the thread pool and can be seen half-written). Records too long for a link
 * target, and records of earlier versions, are files.
 */
const MAX_LINK_RECORD_BYTES = 4000;

/** Creates a record at `file`; EEXIST when one is there. */
async function writeRecord(file: string, text: string): Promise<void> {
  if (Buffer.byteLength(text) <= MAX_LINK_RECORD_BYTES) await symlink(text, file);
  else await writeFile(file, text, { flag: 'wx' });
}

async function readRecordText(file: string): Promise<string | undefined> {
  try {
    return await readlink(file);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    if (!isErrno(err, 'EINVAL')) throw err;
  }
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}

async function pathExists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
}

/** The Backend methods that a directory-per-volume backend delegates to its DirectoryShares. */
export function directoryBackendMethods(shares: DirectoryShares) {
  return {
    capacity: () => shares.capacity(),
    createShare: (input: CreateShareInput) => shares.create(input),
    createFilledShare: (input: CreateShareInput, filling: Filling) => shares.createFilled(input, filling),
    expandShare: (path: string, capacityBytes: number) => shares.expand(path, capacityBytes),
    shareDirectory: (record: VolumeRecord) => shares.directory(record),
    metadataDirectory: () => shares.metadataDirectory(),
    deleteShare: (path: string, options?: DeleteOptions) => shares.delete(path, options),
    getRecord: (path: string) => shares.getRecord(path),
    findByName: (name: string) => shares.findByName(name),
    listRecords: (after: string | undefined, limit: number) => shares.list(after, limit),
    shareExists: (path: string) => shares.exists(path),
  };
}
