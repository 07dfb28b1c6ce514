import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface ScratchFileSystem {
  /** Where the benchmark makes its directories. */
  parent: string;
  release(): Promise<void>;
}

/**
 * Where a benchmark puts its files: `BENCH_ROOT` if set, else a fresh ext4 file system (mkfs defaults:
 * with a journal, as on a node) on a loop device, removed afterwards. Figures then depend neither on
 * the host's file system nor on what else it deleted lately: ext4 without a journal (this VM's root)
 * skips every inode freed in the last minute, one by one, each time it allocates one, so there the
 * cost of making files grows with every file any process deleted recently. Without root or
 * mkfs.ext4, the temp directory is used.
 */
export async function scratchFileSystem(imageBytes: number): Promise<ScratchFileSystem> {
  const chosen = process.env.BENCH_ROOT;
  if (chosen) return { parent: chosen, release: async () => undefined };
  const holder = await mkdtemp(join(tmpdir(), 'sv-bench-fs-'));
  const image = join(holder, 'ext4.img');
  const mountpoint = join(holder, 'mnt');
  let device: string;
  try {
    await writeFile(image, '');
    await truncate(image, imageBytes);
    await run('mkfs.ext4', ['-q', '-F', image]);
    await mkdir(mountpoint);
    // Direct I/O to the image: its pages are not cached a second time by the host's file system.
    device = (await run('losetup', ['--find', '--show', '--direct-io=on', image])).stdout.trim();
  } catch (err) {
    await rm(holder, { recursive: true, force: true });
    console.log(`(no scratch ext4 file system: ${(err as Error).message.split('\n')[0]}; using ${tmpdir()})`);
    return { parent: tmpdir(), release: async () => undefined };
  }
  try {
    // noinit_itable: no background zeroing of inode tables competing with what is measured.
    await run('mount', ['-o', 'noinit_itable', device, mountpoint]);
  } catch (err) {
    await run('losetup', ['--detach', device]);
    await rm(holder, { recursive: true, force: true });
    throw err;
  }
  return {
    parent: mountpoint,
    release: async () => {
      await run('umount', [mountpoint]);
      await run('losetup', ['--detach', device]);
      await rm(holder, { recursive: true, force: true });
    },
  };
}
