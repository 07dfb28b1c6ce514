import { mkdir, rmdir } from 'node:fs/promises';
import { runProgram } from './exec.js';
import { mountAt, readMountTable } from './mountinfo.js';

export interface MountSpec {
  source: string;
  /** "bind" for a bind mount of a local directory; otherwise the filesystem type passed to mount -t. */
  fsType: string;
  options: string[];
  /** A file the mount helper logs to (already among the options): read to explain a failed mount. */
  logFile?: string;
}

/** Mount flags that apply to a bind mount through a remount; the rest belong to the share mount. */
const VFS_FLAGS = new Set([
  'ro',
  'rw',
  'noexec',
  'exec',
  'nosuid',
  'suid',
  'nodev',
  'dev',
  'noatime',
  'atime',
  'relatime',
  'norelatime',
  'nodiratime',
  'diratime',
  'strictatime',
]);

export function vfsFlags(flags: string[]): string[] {
  return flags.filter((flag) => VFS_FLAGS.has(flag));
}

/** The exact argv for mount(8); exported so tests can pin the invocation for filesystems we cannot mount. */
export function mountArgs(spec: MountSpec, target: string): string[] {
  if (spec.fsType === 'bind') return ['--bind', spec.source, target];
  const args = ['-t', spec.fsType];
  if (spec.options.length > 0) args.push('-o', spec.options.join(','));
  args.push(spec.source, target);
  return args;
}

export async function isMountPoint(path: string): Promise<boolean> {
  return mountAt(await readMountTable(), path) !== undefined;
}

/**
 * Mounts `spec` at `target`, then applies bind-level flags (ro, noexec, ...) with a remount.
 * If the remount fails the first mount is undone, so a failed call never leaves a mount behind.
 */
export async function mountWithFlags(spec: MountSpec, target: string, remountFlags: string[]): Promise<void> {
  await runProgram('mount', mountArgs(spec, target));
  if (remountFlags.length === 0) return;
  try {
    await runProgram('mount', ['-o', ['remount', 'bind', ...remountFlags].join(','), target]);
  } catch (err) {
    await unmountAll(target);
    throw err;
  }
}

/** Unmounts every mount stacked at `target`; lazily if a plain unmount fails (stale FUSE or NFS). */
export async function unmountAll(target: string): Promise<void> {
  for (let i = 0; i < 16 && (await isMountPoint(target)); i++) {
    try {
      await runProgram('umount', [target]);
    } catch {
      await runProgram('umount', ['-l', target]);
    }
  }
}

export async function ensureDir(path: string): Promise<void> {
  await mkdir(path, { recursive: true });
}

/** Removes an empty mount-point directory; absent is fine. */
export async function removeMountPoint(path: string): Promise<void> {
  try {
    await rmdir(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
