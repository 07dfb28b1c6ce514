import { createHash, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { S3Location } from './params.js';
import type { SnapshotType } from './snapshot-id.js';
import type { Compression } from './stream.js';

const mkdir = promisify(fs.mkdir);
const readFile = promisify(fs.readFile);
const readdir = promisify(fs.readdir);
const readlink = promisify(fs.readlink);
const rename = promisify(fs.rename);
const rm = promisify(fs.rm);
const symlink = promisify(fs.symlink);
const unlink = promisify(fs.unlink);
const writeFile = promisify(fs.writeFile);

/** What is known about one snapshot; kept on the backend so that ListSnapshots survives restarts. */
export interface SnapshotRecord {
  version: 1;
  id: string;
  token: string;
  name: string;
  sourceVolumeId: string;
  type: SnapshotType;
  /** When the snapshot was cut (for archives of a live directory: when reading began). */
  createdAt: string;
  /** Restore size: the source's capacity, or the data size for a source without one. */
  sizeBytes: number;
  /** pending while it is written; ready once complete and verified. */
  state: 'pending' | 'ready';
  compression?: Compression;
  s3?: S3Location;
  /**
   * Archives: the stored object (file name in data/, or S3 key) with its size and checksum: the sha256
   * of the object, or for a compressed archive in data/ the checksum its format carries at its end.
   */
  archive?: { name: string; bytes: number; sha256?: string; formatChecksum?: string; dataBytes: number };
}

const isErrno = (err: unknown, code: string) => (err as NodeJS.ErrnoException | undefined)?.code === code;
const nameKey = (name: string) => createHash('sha256').update(name).digest('hex');

/**
 * The snapshots of one backend instance, in `.sharedvolume/snapshots/`: one record per snapshot,
 * a name index (symlink name -> token), the data (archives, native snapshots) and scratch space.
 * Records are replaced in one rename, so a reader sees a whole record or none.
 */
export class SnapshotCatalog {
  private ready: Promise<void> | undefined;

  constructor(readonly dir: string) {}

  private async layout(): Promise<void> {
    this.ready ??= Promise.all(
      ['records', 'names', 'data', 'tmp'].map((sub) => mkdir(join(this.dir, sub), { recursive: true })),
    ).then(() => undefined);
    await this.ready.catch((err) => {
      this.ready = undefined;
      throw err;
    });
  }

  dataPath(name: string): string {
    return join(this.dir, 'data', name);
  }

  tmpPath(name: string): string {
    return join(this.dir, 'tmp', name);
  }

  /** Removes the scratch files a write of this snapshot left (partial archives, upload spool). */
  async clearScratch(token: string): Promise<void> {
    await this.layout();
    const tmp = join(this.dir, 'tmp');
    for (const entry of await readdir(tmp)) {
      if (entry.startsWith(`${token}.`)) await rm(join(tmp, entry), { force: true });
    }
  }

  private recordFile(token: string): string {
    return join(this.dir, 'records', `${token}.json`);
  }

  async get(token: string): Promise<SnapshotRecord | undefined> {
    await this.layout();
    let text: string;
    try {
      text = await readFile(this.recordFile(token), 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
    try {
      return JSON.parse(text) as SnapshotRecord;
    } catch {
      return undefined;
    }
  }

  async findByName(name: string): Promise<SnapshotRecord | undefined> {
    await this.layout();
    let token: string;
    try {
      token = await readlink(join(this.dir, 'names', nameKey(name)));
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
    const record = await this.get(token);
    return record?.name === name ? record : undefined;
  }

  /**
   * Points the name at the token, then writes the record. A crash in between leaves a name pointing
   * at no record, which reads as absent and the next add for that name replaces; never a record that
   * no name finds.
   */
  async add(record: SnapshotRecord): Promise<void> {
    await this.layout();
    const link = join(this.dir, 'names', nameKey(record.name));
    await unlink(link).catch((err) => (isErrno(err, 'ENOENT') ? undefined : Promise.reject(err)));
    await symlink(record.token, link);
    await this.put(record);
  }

  async put(record: SnapshotRecord): Promise<void> {
    await this.layout();
    const tmp = join(this.dir, 'tmp', `record-${randomUUID()}`);
    await writeFile(tmp, JSON.stringify(record));
    await rename(tmp, this.recordFile(record.token));
  }

  async remove(record: SnapshotRecord): Promise<void> {
    await this.layout();
    const link = join(this.dir, 'names', nameKey(record.name));
    try {
      if ((await readlink(link)) === record.token) await unlink(link);
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
    await unlink(this.recordFile(record.token)).catch((err) =>
      isErrno(err, 'ENOENT') ? undefined : Promise.reject(err),
    );
  }

  /** Records in token order, after `after`: a stable order for paging. */
  async list(after: string | undefined, limit: number, filter?: (r: SnapshotRecord) => boolean) {
    await this.layout();
    const tokens = (await readdir(join(this.dir, 'records')))
      .filter((f) => f.endsWith('.json'))
      .map((f) => f.slice(0, -'.json'.length))
      .sort()
      .filter((t) => after === undefined || t > after);
    const out: SnapshotRecord[] = [];
    for (const token of tokens) {
      if (out.length >= limit) break;
      const record = await this.get(token);
      if (record && (!filter || filter(record))) out.push(record);
    }
    return out;
  }
}
