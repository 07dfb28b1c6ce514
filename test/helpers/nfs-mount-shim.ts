import { chmod, mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Ganesha } from './ganesha.js';

/**
 * The mount(8) stand-in the NFS tests put first on the driver's PATH. It only stands in for the kernel
 * NFS client, which these machines lack: it records each invocation and mounts the export directory in
 * place of `-t nfs` (see the script for how), while the NFS server itself is a real nfs-ganesha.
 */
export const NFS_MOUNT_SHIM = fileURLToPath(
  new URL('../../../test/fixtures/nfs-mount-shim/mount', import.meta.url),
);

/** Environment for a driver process whose mounts go through the shim, logging to `logFile`. */
export async function mountShimEnv(server: Ganesha, logFile: string): Promise<Record<string, string>> {
  await chmod(NFS_MOUNT_SHIM, 0o755);
  // Beside the export: the overlay work dirs must be on the export's file system.
  const scratch = join(dirname(server.exportPath), 'mount-shim');
  await mkdir(scratch, { recursive: true });
  return {
    PATH: `${dirname(NFS_MOUNT_SHIM)}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`,
    SV_MOUNT_SHIM_LOG: logFile,
    // NFSv3 clients name the export by its real path, NFSv4 clients by its pseudo path.
    SV_MOUNT_SHIM_EXPORTS: `${server.exportPath}=${server.exportPath} ${server.pseudoPath}=${server.exportPath}`,
    SV_MOUNT_SHIM_SCRATCH: scratch,
  };
}

/** Every mount invocation the shim saw, as argv arrays, oldest first. */
export async function readMountLog(logFile: string): Promise<string[][]> {
  const text = await readFile(logFile, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return '';
    throw err;
  });
  return text
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => line.split('\t'));
}

/** Only the NFS mounts, the invocations the kernel NFS client would have served. */
export async function readNfsMounts(logFile: string): Promise<string[][]> {
  return (await readMountLog(logFile)).filter(
    (argv) => argv[0] === '-t' && (argv[1] === 'nfs' || argv[1] === 'nfs4'),
  );
}
