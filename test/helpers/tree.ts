import { createHash } from 'node:crypto';
import {
  chmod,
  lchown,
  lstat,
  lutimes,
  mkdir,
  readdir,
  readFile,
  readlink,
  symlink,
  link,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';

/** One entry of a tree as the comparison sees it: everything a copy or restore must preserve. */
export interface TreeEntry {
  type: 'file' | 'dir' | 'symlink';
  mode: string;
  uid: number;
  gid: number;
  /** Nanoseconds since the epoch, as a string (bigint precision). */
  mtime: string;
  size?: number;
  sha256?: string;
  target?: string;
  /** For hard-linked files: the first path of the link group. */
  linkedTo?: string;
}

/**
 * Reads a tree into path -> entry, never following symlinks. The root itself is included as "." so
 * that its mode, owner and mtime are compared too.
 */
export async function describeTree(root: string): Promise<Record<string, TreeEntry>> {
  const out: Record<string, TreeEntry> = {};
  const inodes = new Map<bigint, string>();
  async function visit(rel: string): Promise<void> {
    const path = rel === '.' ? root : join(root, rel);
    const stats = await lstat(path, { bigint: true });
    const base = {
      mode: (Number(stats.mode) & 0o7777).toString(8),
      uid: Number(stats.uid),
      gid: Number(stats.gid),
      mtime: String(stats.mtimeNs),
    };
    if (stats.isSymbolicLink()) {
      out[rel] = { type: 'symlink', ...base, target: await readlink(path) };
    } else if (stats.isDirectory()) {
      out[rel] = { type: 'dir', ...base };
      for (const name of (await readdir(path)).sort()) await visit(rel === '.' ? name : `${rel}/${name}`);
    } else {
      const first = stats.nlink > 1n ? inodes.get(stats.ino) : undefined;
      if (stats.nlink > 1n && !first) inodes.set(stats.ino, rel);
      const sha256 = createHash('sha256')
        .update(await readFile(path))
        .digest('hex');
      out[rel] = {
        type: 'file',
        ...base,
        size: Number(stats.size),
        sha256,
        ...(first ? { linkedTo: first } : {}),
      };
    }
  }
  await visit('.');
  return out;
}

/** A deterministic pseudo-random generator, so that trees are the same on every run. */
function random(seed: number) {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 0x100000000;
  };
}

export interface TreeShape {
  files: number;
  /** Largest file, in bytes; sizes are spread between 0 and this. */
  maxFileBytes?: number;
  seed?: number;
}

/**
 * Builds a tree that exercises what copies and archives get wrong: nested and empty directories,
 * files of many sizes (empty ones too), modes including setgid and sticky bits, foreign owners,
 * relative, absolute and dangling symlinks, hard links, and mtimes with nanoseconds set last.
 */
export async function buildTree(root: string, shape: TreeShape): Promise<void> {
  const next = random(shape.seed ?? 42);
  const maxBytes = shape.maxFileBytes ?? 64 * 1024;
  const dirs = ['.'];
  await mkdir(root, { recursive: true });
  for (let i = 0; i < Math.max(4, Math.floor(shape.files / 40)); i++) {
    const parent = dirs[Math.floor(next() * dirs.length)]!;
    const dir = parent === '.' ? `d${i}` : `${parent}/d${i}`;
    await mkdir(join(root, dir));
    dirs.push(dir);
  }
  const files: string[] = [];
  for (let i = 0; i < shape.files; i++) {
    const dir = dirs[Math.floor(next() * dirs.length)]!;
    const file = dir === '.' ? `f${i}` : `${dir}/f${i}`;
    const size = i % 10 === 0 ? 0 : Math.floor(next() ** 3 * maxBytes);
    const body = Buffer.alloc(size);
    for (let b = 0; b + 4 <= size; b += 64) body.writeUInt32LE(Math.floor(next() * 0xffffffff), b);
    await writeFile(join(root, file), body);
    await chmod(join(root, file), [0o644, 0o600, 0o755, 0o640, 0o444][i % 5]!);
    if (i % 7 === 0) await lchown(join(root, file), 1000 + (i % 3), 2000 + (i % 4));
    files.push(file);
  }
  await mkdir(join(root, 'empty/nested-empty'), { recursive: true });
  await mkdir(join(root, 'shared-dir'));
  await chmod(join(root, 'shared-dir'), 0o2775);
  await mkdir(join(root, 'sticky'));
  await chmod(join(root, 'sticky'), 0o1777);
  await lchown(join(root, 'shared-dir'), 1500, 2500);
  await symlink(files[1] ?? 'f1', join(root, 'link-relative'));
  await symlink('/etc/hostname', join(root, 'link-absolute'));
  await symlink('does/not/exist', join(root, 'link-dangling'));
  await symlink('d0', join(root, 'link-to-dir'));
  await link(join(root, files[2] ?? 'f2'), join(root, 'hardlink-a'));
  await link(join(root, files[2] ?? 'f2'), join(root, 'hardlink-b'));
  await lchown(join(root, 'link-dangling'), 1234, 4321);
  // Times last, deepest first, so that creating entries does not move a directory's mtime again.
  const all = Object.keys(await describeTree(root)).sort((a, b) => b.split('/').length - a.split('/').length);
  let t = 1_500_000_000;
  for (const rel of all) {
    const when = t++ + 0.123456789;
    await lutimes(rel === '.' ? root : join(root, rel), when, when);
  }
}
