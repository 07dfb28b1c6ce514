import { createHash, randomUUID } from 'node:crypto';
import {
  chmod,
  link,
  mkdir,
  readFile,
  readdir,
  rename,
  rm,
  rmdir,
  statfs,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { dirname, join, basename } from 'node:path';
import { alreadyExists } from '../rpc/errors.js';
import type { Capacity, CreateShareInput, VolumeRecord } from './backend.js';

/** Where the share root is reachable on this host, mounted with the given options if need be. */
export type RootProvider = (mountOptions: string[]) => Promise<string>;

/** Backend-specific steps around the generic directory lifecycle (quotas, for example). */
export interface ShareHooks {
  afterCreate?(path: string, record: VolumeRecord): Promise<void>;
  beforeDelete?(path: string, record: VolumeRecord): Promise<void>;
  capacity?(root: string): Promise<Capacity | undefined>;
}

const META = '.sharedvolume';
const key = (value: string) => createHash('sha256').update(value).digest('hex');

function isErrno(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === code;
}

/**
 * One directory per volume under a share root, with per-volume records kept beside the volumes in
 * `.sharedvolume/` (never inside a volume, where pods would see them). Every step is atomic
 * (link, rename) so a crash leaves either a whole volume or something the next call completes or undoes.
 */
export class DirectoryShares {
  private readonly prepared = new Map<string, Promise<void>>();
  private readonly purges = new Set<Promise<void>>();

  constructor(
    private readonly root: RootProvider,
    private readonly hooks: ShareHooks = {},
  ) {}

  private async layout(mountOptions: string[] = []): Promise<string> {
    const root = await this.root(mountOptions);
    let ready = this.prepared.get(root);
    if (!ready) {
      ready = Promise.all(
        ['records', 'names', 'trash', 'tmp'].map((dir) => mkdir(join(root, META, dir), { recursive: true })),
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

  private nameFile(root: string, name: string) {
    return join(root, META, 'names', key(name));
  }

  private async writeAtomic(root: string, file: string, content: string, exclusive: boolean): Promise<void> {
    const tmp = join(root, META, 'tmp', randomUUID());
    await writeFile(tmp, content);
    try {
      if (exclusive) await link(tmp, file);
      else await rename(tmp, file);
    } finally {
      if (exclusive) await unlink(tmp).catch(() => undefined);
    }
  }

  private async readRecordFile(file: string): Promise<VolumeRecord | undefined> {
    try {
      return JSON.parse(await readFile(file, 'utf8')) as VolumeRecord;
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
  }

  async getRecord(path: string): Promise<VolumeRecord | undefined> {
    return this.readRecordFile(this.recordFile(await this.layout(), path));
  }

  async findByName(name: string): Promise<VolumeRecord | undefined> {
    const root = await this.layout();
    let path: string;
    try {
      path = await readFile(this.nameFile(root, name), 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
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
   * index. Any failure before the commit undoes what this call made.
   */
  async create(input: CreateShareInput): Promise<VolumeRecord> {
    const root = await this.layout(input.share.mountOptions);
    const recordFile = this.recordFile(root, input.path);
    const record: VolumeRecord = {
      version: 1,
      name: input.name,
      path: input.path,
      capacityBytes: input.capacityBytes,
      parameters: input.parameters,
      onDelete: input.share.onDelete,
      mountOptions: input.share.mountOptions,
      createdAt: new Date().toISOString(),
    };
    const resumed = await this.claim(root, recordFile, record);
    const dir = join(root, input.path);
    let madeDir = false;
    try {
      madeDir = await this.makeDirectory(dir, resumed);
      if (input.share.mountPermissions !== undefined) await chmod(dir, input.share.mountPermissions);
      await this.hooks.afterCreate?.(input.path, record);
      await this.writeAtomic(root, this.nameFile(root, input.name), input.path, false);
      return resumed ?? record;
    } catch (err) {
      if (madeDir || resumed) await rm(dir, { recursive: true, force: true });
      await this.removeEmptyParents(root, dirname(input.path));
      await unlink(recordFile).catch(() => undefined);
      throw err;
    }
  }

  /** Returns the existing record when a previous attempt for the same name crashed midway. */
  private async claim(root: string, file: string, record: VolumeRecord): Promise<VolumeRecord | undefined> {
    try {
      await this.writeAtomic(root, file, JSON.stringify(record), true);
      return undefined;
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw err;
    }
    const existing = await this.readRecordFile(file);
    if (existing && existing.name === record.name) return existing;
    throw alreadyExists(`directory "${record.path}" already belongs to volume "${existing?.name ?? '?'}"`);
  }

  private async makeDirectory(dir: string, resumed: VolumeRecord | undefined): Promise<boolean> {
    await mkdir(dirname(dir), { recursive: true });
    try {
      await mkdir(dir);
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

  /** Applies the volume's onDelete policy. Returns false if no such volume exists. */
  async delete(path: string): Promise<boolean> {
    const record = await this.getRecord(path);
    if (!record) return false;
    const root = await this.layout(record.mountOptions);
    const dir = join(root, path);
    await this.hooks.beforeDelete?.(path, record);
    let trashed: string | undefined;
    if (record.onDelete === 'delete') {
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
    const file = this.nameFile(root, record.name);
    try {
      if ((await readFile(file, 'utf8')) === record.path) await unlink(file);
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
  }

  private purgeInBackground(path: string): void {
    const purge = rm(path, { recursive: true, force: true }).catch(() => undefined);
    this.purges.add(purge);
    void purge.finally(() => this.purges.delete(purge));
  }

  private async purgeTrash(root: string): Promise<void> {
    const trash = join(root, META, 'trash');
    for (const entry of await readdir(trash)) this.purgeInBackground(join(trash, entry));
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

  async capacity(): Promise<Capacity> {
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

/** The Backend methods that a directory-per-volume backend delegates to its DirectoryShares. */
export function directoryBackendMethods(shares: DirectoryShares) {
  return {
    capacity: () => shares.capacity(),
    createShare: (input: CreateShareInput) => shares.create(input),
    deleteShare: (path: string) => shares.delete(path),
    getRecord: (path: string) => shares.getRecord(path),
    findByName: (name: string) => shares.findByName(name),
    listRecords: (after: string | undefined, limit: number) => shares.list(after, limit),
    shareExists: (path: string) => shares.exists(path),
  };
}
