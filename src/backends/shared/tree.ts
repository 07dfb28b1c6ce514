import * as fs from 'node:fs';
import { promisify } from 'node:util';
import { runProgram } from '../../mount/exec.js';

const rm = promisify(fs.rm);
const rmdir = promisify(fs.rmdir);

/** Clones and restores of large volumes run for as long as the data takes; the RPC deadline does not bound them. */
const COPY_TIMEOUT_MS = 24 * 3600_000;

/**
 * Makes `target` a copy of the directory tree at `source`: contents, modes, owners, timestamps,
 * symlinks, hard links, sparse files and xattrs (`cp -a`). `target` may be missing or an empty
 * directory. Where the file system can share extents (btrfs, XFS), files are reflinked, not copied.
 */
export async function copyTree(source: string, target: string): Promise<void> {
  await runProgram('cp', ['-a', '--reflink=auto', '-T', '--', source, target], COPY_TIMEOUT_MS);
}

/** Removes a tree if it exists. Most deleted volumes are empty: one rmdir, before the recursive walk. */
export async function removeTree(path: string): Promise<void> {
  try {
    return await rmdir(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'ENOTDIR') throw err;
  }
  await rm(path, { recursive: true, force: true });
}
