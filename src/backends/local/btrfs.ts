import * as fs from 'node:fs';
import { promisify } from 'node:util';
import { execProgram, runProgram } from '../../mount/exec.js';

const lstat = promisify(fs.lstat);
const statfs = promisify(fs.statfs);

/** statfs f_type of btrfs. */
const BTRFS_SUPER_MAGIC = 0x9123683e;
/** The root directory of every btrfs subvolume has this inode number; no other directory does. */
const SUBVOLUME_ROOT_INODE = 256;

export async function isBtrfs(path: string): Promise<boolean> {
  return (await statfs(path)).type === BTRFS_SUPER_MAGIC;
}

export async function isSubvolume(path: string): Promise<boolean> {
  const [fsStats, stats] = await Promise.all([statfs(path), lstat(path)]);
  return fsStats.type === BTRFS_SUPER_MAGIC && stats.isDirectory() && stats.ino === SUBVOLUME_ROOT_INODE;
}

/** True when `path` is on btrfs and quota (qgroups) is enabled on that file system. */
export async function hasBtrfsQuota(path: string): Promise<boolean> {
  if (!(await isBtrfs(path))) return false;
  const result = await execProgram('btrfs', ['qgroup', 'show', '--raw', path]);
  return result.exitCode === 0;
}

export interface QgroupUsage {
  referencedBytes: number;
  /** The referenced-bytes limit; undefined when the subvolume has none. */
  limitBytes: number | undefined;
}

/**
 * Parses `btrfs qgroup show -ref --raw PATH`: the level-0 row is the subvolume's own qgroup, with
 * columns qgroupid, referenced, exclusive, max referenced, max exclusive (then the path).
 */
export function parseQgroupShow(output: string): QgroupUsage | undefined {
  for (const line of output.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (!/^0\/\d+$/.test(fields[0] ?? '') || fields.length < 5) continue;
    const referenced = Number(fields[1]);
    const limit = fields[3] === 'none' ? undefined : Number(fields[3]);
    if (!Number.isFinite(referenced) || (limit !== undefined && !Number.isFinite(limit))) return undefined;
    return { referencedBytes: referenced, limitBytes: limit };
  }
  return undefined;
}

/** The btrfs-progs calls the local backend needs: subvolumes, read-only snapshots and qgroup limits. */
export const btrfs = {
  async createSubvolume(path: string): Promise<void> {
    await runProgram('btrfs', ['subvolume', 'create', path]);
  },

  async deleteSubvolume(path: string): Promise<void> {
    await runProgram('btrfs', ['subvolume', 'delete', path]);
  },

  /** A snapshot of `source` at `target` (which must not exist): writable for clones, read-only for backups. */
  async snapshot(source: string, target: string, readOnly: boolean): Promise<void> {
    await runProgram('btrfs', ['subvolume', 'snapshot', ...(readOnly ? ['-r'] : []), source, target]);
  },

  /** Sets (or, with 0, removes) the limit on the bytes the subvolume at `path` may reference. */
  async setLimit(path: string, bytes: number): Promise<void> {
    await runProgram('btrfs', ['qgroup', 'limit', bytes > 0 ? String(bytes) : 'none', path]);
  },

  /** Usage of the subvolume whose root is `path` (`-f`: only the qgroup of that subvolume). */
  async usage(path: string): Promise<QgroupUsage | undefined> {
    return parseQgroupShow(await runProgram('btrfs', ['qgroup', 'show', '-ref', '--raw', path]));
  },

  /** Drops the qgroups of deleted subvolumes once btrfs has cleaned them up; best effort. */
  async clearStaleQgroups(path: string): Promise<void> {
    await execProgram('btrfs', ['qgroup', 'clear-stale', path]);
  },
};
