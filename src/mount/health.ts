import { execProgram } from './exec.js';

export interface FsStats {
  totalBytes: number;
  availableBytes: number;
  usedBytes: number;
  totalInodes: number;
  freeInodes: number;
  usedInodes: number;
}

export type PathHealth =
  | { state: 'ok'; stats: FsStats }
  | { state: 'missing'; message: string }
  | { state: 'stale'; message: string };

/**
 * statfs(2) in a child process, so that a hung server (NFS hard mount, wedged FUSE daemon) costs us
 * at most `timeoutMs` instead of a libuv thread blocked forever.
 */
export async function checkPath(path: string, timeoutMs = 5000): Promise<PathHealth> {
  const result = await execProgram('stat', ['-f', '-c', '%S %b %a %f %c %d', '--', path], timeoutMs);
  if (result.timedOut) return { state: 'stale', message: `no answer from ${path} within ${timeoutMs} ms` };
  if (result.exitCode !== 0) {
    const message = result.stderr.trim() || `stat exited with ${result.exitCode}`;
    if (/No such file or directory/.test(message)) return { state: 'missing', message };
    return { state: 'stale', message };
  }
  return { state: 'ok', stats: parseStatfs(result.stdout) };
}

export function parseStatfs(output: string): FsStats {
  const [blockSize, blocks, available, free, inodes, freeInodes] = output.trim().split(/\s+/).map(Number);
  if (
    [blockSize, blocks, available, free, inodes, freeInodes].some((n) => n === undefined || Number.isNaN(n))
  ) {
    throw new Error(`unexpected statfs output: ${output}`);
  }
  return {
    totalBytes: blocks! * blockSize!,
    availableBytes: available! * blockSize!,
    usedBytes: (blocks! - free!) * blockSize!,
    totalInodes: inodes!,
    freeInodes: freeInodes!,
    usedInodes: inodes! - freeInodes!,
  };
}
