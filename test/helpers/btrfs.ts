import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { unmountUnder } from './mount-cleanup.js';

const run = promisify(execFile);

export interface BtrfsImage {
  /** Where the file system is mounted. */
  mountPoint: string;
  loopDevice: string;
  /** Unmounts everything under the temp dir, detaches the loop device and removes the image. */
  remove(): Promise<void>;
}

/** Whether this machine can make a loop-backed btrfs (root, loop devices, btrfs-progs). */
export async function canMakeBtrfs(): Promise<boolean> {
  try {
    await run('mkfs.btrfs', ['--version']);
    await run('losetup', ['--find']);
    return process.getuid?.() === 0;
  } catch {
    return false;
  }
}

/**
 * A sparse image file formatted as btrfs, attached to a loop device and mounted in a temp dir, with
 * quota (qgroups) enabled unless asked otherwise. remove() undoes each step that was done, even after
 * a failure half-way.
 */
export async function makeBtrfsImage(
  options: { sizeMiB?: number; quota?: boolean } = {},
): Promise<BtrfsImage> {
  const dir = await mkdtemp(join(tmpdir(), 'sv-btrfs-'));
  const image = join(dir, 'image');
  const mountPoint = join(dir, 'mnt');
  let loopDevice = '';
  const remove = async () => {
    await unmountUnder(dir);
    if (loopDevice) await run('losetup', ['-d', loopDevice]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await run('truncate', ['-s', `${options.sizeMiB ?? 512}M`, image]);
    await run('mkfs.btrfs', ['-q', image]);
    loopDevice = (await run('losetup', ['--find', '--show', image])).stdout.trim();
    await mkdir(mountPoint);
    await run('mount', ['-t', 'btrfs', loopDevice, mountPoint]);
    if (options.quota !== false) await run('btrfs', ['quota', 'enable', mountPoint]);
    return { mountPoint, loopDevice, remove };
  } catch (err) {
    await remove();
    throw err;
  }
}

/** The qgroup limit on the referenced bytes of the subvolume at `path` (undefined: none). */
export async function qgroupLimit(path: string): Promise<number | undefined> {
  const { stdout } = await run('btrfs', ['qgroup', 'show', '-ref', '--raw', path]);
  const row = stdout
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .find((fields) => /^0\/\d+$/.test(fields[0] ?? ''));
  if (!row) throw new Error(`no qgroup for ${path}: ${stdout}`);
  return row[3] === 'none' ? undefined : Number(row[3]);
}
