import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import assert from 'node:assert/strict';

const run = promisify(execFile);

export interface MountLine {
  mountPoint: string;
  /** Per-mount options (ro, noexec, ...). */
  options: string[];
  fsType: string;
}

const unescapeOctal = (field: string) =>
  field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));

/**
 * Reads /proc/self/mountinfo with a parser of the suite's own, so that a bug in the driver's parser
 * cannot hide a leaked mount from the tests.
 */
export async function mountTable(): Promise<MountLine[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const fields = line.split(' ');
      const separator = fields.indexOf('-', 6);
      return {
        mountPoint: unescapeOctal(fields[4]!),
        options: fields[5]!.split(','),
        fsType: fields[separator + 1] ?? '',
      };
    });
}

/** Every mount stacked exactly at `path`, bottom first. */
export async function mountsAt(path: string): Promise<MountLine[]> {
  return (await mountTable()).filter((m) => m.mountPoint === path);
}

/** Mount points at `dir` or below it. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return (await mountTable()).map((m) => m.mountPoint).filter((p) => p === dir || p.startsWith(prefix));
}

export async function assertNoMountsUnder(dir: string, after: string): Promise<void> {
  assert.deepEqual(await mountsUnder(dir), [], `mounts left under ${dir} after ${after}`);
}

/** The options of the topmost mount at `path`; fails when nothing is mounted there. */
export async function mountOptionsAt(path: string): Promise<string[]> {
  const stack = await mountsAt(path);
  assert.ok(stack.length > 0, `nothing is mounted at ${path}`);
  return stack[stack.length - 1]!.options;
}

/**
 * Unmounts everything at or below `dir`, deepest first, lazily when a plain unmount fails. Cleanup
 * for hooks: it never throws for a mount that vanished meanwhile, and gives up after a bounded number of rounds.
 */
export async function unmountUnder(dir: string): Promise<void> {
  for (let round = 0; round < 32; round++) {
    const points = (await mountsUnder(dir)).sort((a, b) => b.length - a.length);
    if (points.length === 0) return;
    for (const point of points) {
      await run('umount', [point]).catch(() => run('umount', ['-l', point]).catch(() => undefined));
    }
  }
  const left = await mountsUnder(dir);
  if (left.length > 0) throw new Error(`could not unmount ${left.join(', ')}`);
}
