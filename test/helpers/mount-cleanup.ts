import { execa } from 'execa';
import { readMountTable } from '../../src/mount/mountinfo.js';

/** Mount points at or below `dir`, deepest first. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const prefix = dir.replace(/\/+$/, '');
  return (await readMountTable())
    .map((entry) => entry.mountPoint)
    .filter((point) => point === prefix || point.startsWith(`${prefix}/`))
    .sort((a, b) => b.length - a.length);
}

/**
 * Unmounts everything at or below `dir`, so that a failed test never leaves a mount behind and a later
 * recursive delete cannot reach through a bind mount into the data it shows.
 */
export async function unmountUnder(dir: string): Promise<void> {
  for (let round = 0; round < 8; round++) {
    const points = await mountsUnder(dir);
    if (points.length === 0) return;
    for (const point of points) {
      const plain = await execa('umount', [point], { reject: false, stdin: 'ignore' });
      if (plain.exitCode !== 0) await execa('umount', ['-l', point], { reject: false, stdin: 'ignore' });
    }
  }
  throw new Error(`mounts remain under ${dir}: ${(await mountsUnder(dir)).join(', ')}`);
}
